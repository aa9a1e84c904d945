"""Serving a test's aiohttp app on this machine."""
from __future__ import annotations

import socket

from aiohttp import web


async def serve(app: web.Application, host: str = "127.0.0.1") -> tuple[web.AppRunner, int]:
    """Start app on a free port of host: its runner (cleanup() stops it) and the port."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


def free_port() -> int:
    """A port free on this machine now, for a server that must know its URL before it
    listens (a public_url in its config)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
