# helpdesk-bridge: a small image that runs the daemon as an unprivileged user.
#   docker build -t helpdesk-bridge .
#   docker run -v ./bridge.toml:/etc/helpdesk-bridge/bridge.toml:ro --env-file bridge.env \
#              -p 8080:8080 helpdesk-bridge
# In the container, set [http] listen = "0.0.0.0:8080" so the port can be published.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge bridge
COPY adapters adapters
COPY migrations migrations
RUN python -m venv /opt/helpdesk-bridge \
 && /opt/helpdesk-bridge/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/helpdesk-bridge \
        helpdesk-bridge
COPY --from=build /opt/helpdesk-bridge /opt/helpdesk-bridge
ENV PATH=/opt/helpdesk-bridge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER helpdesk-bridge
# The default SQLite database (bridge.db) lives here: mount a volume to keep it.
WORKDIR /var/lib/helpdesk-bridge
VOLUME ["/var/lib/helpdesk-bridge"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["helpdesk-bridge"]
CMD ["run", "--config", "/etc/helpdesk-bridge/bridge.toml"]
