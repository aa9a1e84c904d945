"""The sandbox helpdesk, watched: when clients connected, and which conversation rooms have
been entered since the last dropped connection. bench.scale times a re-join of 10,000
rooms with it, in a process of its own (`python -m testing.observed_sandbox --port N`)."""
from __future__ import annotations

import argparse
import asyncio
import time
from collections import deque
from typing import Any

from aiohttp import web

from bridge.sandbox import NAMESPACE, SandboxHelpdesk


class ObservedSandbox(SandboxHelpdesk):
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.connect_attempts: deque[float] = deque(maxlen=10_000)  # time.time() of each
        self.entered_since_drop: set[str] = set()

    async def drop_connections(self) -> None:
        self.entered_since_drop = set()
        await super().drop_connections()

    async def _on_connect(self, sid: str, environ: dict, auth: Any = None) -> None:
        self.connect_attempts.append(time.time())
        await super()._on_connect(sid, environ, auth)

    async def _on_enter_support(self, sid: str, data: dict):
        answer = await super()._on_enter_support(sid, data)
        if data.get("ticket_chat_id") in self.conversations:
            self.entered_since_drop.add(data["ticket_chat_id"])
        return answer

    def _serve(self, app: web.Application) -> None:
        super()._serve(app)
        app.router.add_get("/sandbox/rooms", self._rooms)
        app.router.add_get("/sandbox/rejoined", self._rejoined)

    async def _rooms(self, _request: web.Request) -> web.Response:
        """Counts every room's members: read once after a re-join, not polled (poll
        /sandbox/rejoined for that)."""
        joined = self.sio.manager.rooms.get(NAMESPACE, {})
        return web.json_response({
            "conversation_rooms_joined": sum(1 for room, members in joined.items()
                                             if members and room in self.conversations),
            "connect_attempts": list(self.connect_attempts)})

    async def _rejoined(self, _request: web.Request) -> web.Response:
        """Conversation rooms entered since the last drop: cheap enough to poll every
        20 ms while 10,000 are re-joined (/sandbox/rooms counts every room's members,
        and polling it took a fifth of the sandbox's CPU in that window)."""
        return web.json_response({"conversation_rooms": len(self.entered_since_drop)})


async def _serve_forever(port: int) -> None:
    sandbox = ObservedSandbox(history=10_000)
    await sandbox.start(port=port)
    try:
        await asyncio.Event().wait()
    finally:
        await sandbox.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    try:
        asyncio.run(_serve_forever(parser.parse_args().port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
