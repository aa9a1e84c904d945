"""The daemon's one HTTP server ([http] listen): health now, and whatever the adapters
mount (webhooks). Routes can be added while it runs, so an adapter that starts after the
server (and must be reachable before it calls setWebhook) can still mount its own."""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from typing import Awaitable, Callable
from urllib.parse import quote, unquote

from aiohttp import web

LINK_DAYS = 7  # how long a signed file link works

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpServer:
    def __init__(self, listen: str, public_url: str = "", signing_key: bytes = b"") -> None:
        host, _, port = listen.rpartition(":")
        self.host = host.strip("[]") or "127.0.0.1"
        self.port = int(port)
        self.public_url = public_url.rstrip("/")
        self._routes: dict[tuple[str, str], Handler] = {("GET", "/healthz"): self._healthz}
        self._prefixes: dict[tuple[str, str], Handler] = {}
        self._runner: web.AppRunner | None = None
        self._signing_key = signing_key or secrets.token_bytes(32)
        # path -> True once the customer who sent that file was forgotten (bridge/store)
        self.file_revoked: Callable[[str], Awaitable[bool]] | None = None

    def route(self, method: str, path: str, handler: Handler, prefix: bool = False) -> None:
        """Serve path (or, with prefix, every path under it) with handler."""
        (self._prefixes if prefix else self._routes)[(method.upper(), path)] = handler

    # --- signed, expiring links (customer files the helpdesk may fetch) ---------------

    def serve_files(self, prefix: str,
                    fetch: Callable[[web.Request, str], Awaitable[web.StreamResponse]]) -> None:
        """Serve prefix + <file id> to holders of a file_link(); fetch(request, file_id)
        answers (bridge/files.py has the headers and the streaming)."""
        async def serve(request: web.Request) -> web.StreamResponse:
            if not self.verify(request):
                return web.Response(status=403, text="link expired or not valid")
            if self.file_revoked is not None and await self.file_revoked(request.path):
                return web.Response(status=410, text="this file is no longer available")
            return await fetch(request, unquote(request.path[len(prefix):]))
        self.route("GET", prefix, serve, prefix=True)

    def file_link(self, prefix: str, file_id: str) -> str | None:
        """A signed, expiring link to a file served by serve_files(prefix, ...)."""
        return self.signed_url(prefix + quote(file_id, safe=""))

    def signed_url(self, path: str, ttl: float = LINK_DAYS * 24 * 3600) -> str | None:
        """A link to path on public_url that works until ttl seconds from now; None when
        the bridge has no public URL."""
        if not self.public_url:
            return None
        expires = int(time.time() + ttl)
        return f"{self.public_url}{path}?exp={expires}&sig={self._signature(path, expires)}"

    def verify(self, request: web.Request) -> bool:
        try:
            expires = int(request.query.get("exp", ""))
        except ValueError:
            return False
        expected = self._signature(request.path, expires)
        return expires >= time.time() and hmac.compare_digest(
            request.query.get("sig", "").encode(), expected.encode())

    def seal(self, value: str, ttl: float) -> str:
        """value, signed and expiring: `value.expires.signature` (value without dots)."""
        expires = int(time.time() + ttl)
        return f"{value}.{expires}.{self._signature(value, expires)}"

    def unseal(self, sealed: str) -> str | None:
        """The value of a seal() that is genuine and not expired; None otherwise."""
        value, _, rest = sealed.partition(".")
        expires, _, signature = rest.partition(".")
        if not expires.isdigit() or int(expires) < time.time():
            return None
        expected = self._signature(value, int(expires))
        return value if hmac.compare_digest(signature.encode(), expected.encode()) else None

    def _signature(self, path: str, expires: int) -> str:
        digest = hmac.new(self._signing_key, f"{path}\n{expires}".encode(), hashlib.sha256)
        return digest.hexdigest()[:32]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=2 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # No access log: webhook URLs and query strings are nobody's business.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        log.info("http server on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        handler = self._routes.get((request.method, request.path))
        if handler is None:
            handler = next((h for (method, prefix), h in self._prefixes.items()
                            if method == request.method and request.path.startswith(prefix)),
                           None)
        if handler is None:
            raise web.HTTPNotFound()
        return await handler(request)

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok\n")
