"""Logging set-up with a redactor that no secret gets past.

The redactor is installed as the log *record factory*, not as a handler filter: every record
of every logger (ours, engineio's, aiohttp's) is cleaned when it is created, so even handlers
added later (pytest's caplog, an embedding application's own) never see a secret.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from urllib.parse import quote, quote_plus

REDACTED = "***"
_secrets: set[str] = set()
_installed = False


def add_secrets(values: list[str]) -> None:
    """Register secret values; any log record containing one is rewritten with *** instead."""
    for value in values:
        if value and len(value) >= 4:
            # the form it has in a URL too (the helpdesk key travels in the query string)
            _secrets.update({value, quote(value, safe=""), quote_plus(value)})
    _install_once()


def _install_once() -> None:
    global _installed
    if not _installed:
        _install_factory()
        _installed = True


# Call tokens (LiveKit's are JWTs) pass through the bridge in events, Bot API parameters
# and Slack requests, which the libraries log at DEBUG: no configured value to look for.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


# Secrets a platform hands out at run time, known by their shape: (a cheap marker that
# every one contains, the pattern). Registered by the adapter (add_secret_shape).
_shapes: list[tuple[str, re.Pattern]] = [("eyJ", _JWT)]


def add_secret_shape(marker: str, pattern: str) -> None:
    """Redact whatever matches `pattern` (a token a platform issues while the bridge runs,
    such as each Slack workspace's bot token); `marker` is a substring every match has."""
    if all(shape.pattern != pattern for _marker, shape in _shapes):
        _shapes.append((marker, re.compile(pattern)))
    _install_once()


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for marker, shape in _shapes:
        if marker in text:
            text = shape.sub(REDACTED, text)
    return text


def _install_factory() -> None:
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string in some library: keep what we can
            message = str(record.msg)
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info:
            text = "".join(traceback.format_exception(*record.exc_info))
            record.exc_text = redact(text).rstrip("\n")
            record.exc_info = None
        return record

    logging.setLogRecordFactory(factory)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("session_id", "ticket_chat_id"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_text:
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """Human-readable lines; a line about a customer ends with its opaque ids."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{key}={getattr(record, key)}" for key in ("session_id", "ticket_chat_id")
                       if hasattr(record, key))
        return f"{line} [{ids}]" if ids else line


def setup_logging(level: str = "INFO", fmt: str = "text", secrets: list[str] | None = None) -> None:
    add_secrets(secrets or [])
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The Socket.IO transport narrates every drop ("Server sent close packet"); the link
    # logs what matters (reconnects and how long they took), so only DEBUG shows these.
    for name in ("engineio.client", "socketio.client"):
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else logging.ERROR)
    # PTB's rate limiter logs a 429 as an ERROR with a traceback; the adapter hands it to
    # the core, which waits retry_after and logs that as a retry.
    logging.getLogger("telegram.ext.AIORateLimiter").setLevel(
        logging.DEBUG if level == "DEBUG" else logging.CRITICAL)
