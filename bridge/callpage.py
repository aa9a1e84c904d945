"""The voice-call page: a customer's "Join the call" link opens it in the browser.

The LiveKit token comes in the URL fragment (`/call#room=…&token=…&end=…`), which browsers
never send to a server, so it is in no request line and no log. The page loads
livekit-client (the pinned CDN file with its SRI hash, or `[calls] sdk_url`), joins the
room on `[calls] livekit_url`, and follows the call here: "End call" posts `end` (a signed,
expiring reference to the conversation, not the token) and the bridge sends
close_call_support; when the helpdesk ends the call (close_call_support, sate_left_call),
the page's next look at /call/state ends it in the browser too.
"""
from __future__ import annotations

import html
import json
from importlib.resources import files
from typing import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from bridge.http import HttpServer

PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _policy(livekit_url: str, sdk_url: str) -> str:
    """What the page may load and talk to: its own script and the SDK, the LiveKit server
    (WebSocket, and HTTPS for its region look-up), the bridge; nothing may frame it."""
    livekit = _origin(livekit_url)
    livekit_http = livekit.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
    return "; ".join([
        "default-src 'none'", f"script-src 'self' {_origin(sdk_url)}".rstrip(),
        "style-src 'unsafe-inline'", f"connect-src 'self' {livekit} {livekit_http}",
        "media-src 'self' blob: mediastream:", "img-src 'self' data:", "base-uri 'none'",
        "form-action 'none'", "frame-ancestors 'none'"])


class CallPage:
    def __init__(self, http: HttpServer, livekit_url: str, sdk: tuple[str, str],
                 end_call: Callable[[int, str], Awaitable[bool]],
                 call_state: Callable[[int, str], Awaitable[str | None]]) -> None:
        self.http = http
        self.livekit_url = livekit_url
        self.sdk_url, self.sdk_integrity = sdk
        self._end_call = end_call
        self._call_state = call_state
        self._page_headers = {**PAGE_HEADERS, "Content-Security-Policy": _policy(
            livekit_url, self.sdk_url)}
        static = files("bridge") / "static"
        self._page = (static / "call.html").read_text()
        self._script = (static / "call.js").read_text()

    def mount(self) -> None:
        self.http.route("GET", "/call", self._serve_page)
        self.http.route("GET", "/call/app.js", self._serve_script)
        self.http.route("POST", "/call/end", self._on_end)
        self.http.route("POST", "/call/state", self._on_state)

    async def _serve_page(self, _request: web.Request) -> web.Response:
        integrity = f' integrity="{html.escape(self.sdk_integrity)}"' if self.sdk_integrity else ""
        config = json.dumps({"livekitUrl": self.livekit_url}).replace("<", "\\u003c")
        page = (self._page.replace("{{sdk_url}}", html.escape(self.sdk_url))
                .replace("{{sdk_integrity}}", integrity).replace("{{config}}", config))
        return web.Response(text=page, content_type="text/html", headers=self._page_headers)

    async def _serve_script(self, _request: web.Request) -> web.Response:
        return web.Response(text=self._script, content_type="text/javascript",
                            headers=PAGE_HEADERS)

    async def _call(self, request: web.Request) -> tuple[int, str] | None:
        """(conversation id, call key) of a genuine `end` reference posted as JSON. A form or
        text/plain post is refused: a page elsewhere could send one cross-site without a
        preflight."""
        if request.content_type != "application/json":
            return None
        try:
            body = await request.json()
        except ValueError:
            return None
        sealed = body.get("end") if isinstance(body, dict) else None
        value = self.http.unseal(sealed) if isinstance(sealed, str) else None
        conversation_id, _, key = (value or "").partition("-")
        return (int(conversation_id), key) if conversation_id.isdigit() and key else None

    async def _on_end(self, request: web.Request) -> web.Response:
        call = await self._call(request)
        if call is None:
            return web.json_response({"error": "this call link is not valid or has expired"},
                                     status=403)
        if not await self._end_call(*call):
            return web.json_response({"error": "no such call"}, status=404)
        return web.json_response({"state": "closed"}, status=202)

    async def _on_state(self, request: web.Request) -> web.Response:
        call = await self._call(request)
        if call is None:
            return web.json_response({"error": "this call link is not valid or has expired"},
                                     status=403)
        return web.json_response({"state": await self._call_state(*call) or "live"})
