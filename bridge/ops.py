"""/readyz and /metrics: what an operator's probes and Prometheus read."""
from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bridge.http import HttpServer
from bridge.relay import Relay
from bridge.store.models import seconds_since


def mount(http: HttpServer, relay: Relay) -> None:
    async def readyz(_request: web.Request) -> web.Response:
        problems = []
        link = relay.link
        if not link.connected:
            problems.append(f"helpdesk: {link.failure}" if link.failure
                            else "helpdesk: not connected")
        try:
            await relay.store.ping()
        except Exception as error:  # the reason, never the URL (it may hold a password)
            problems.append(f"database: {type(error).__name__}")
        if problems:
            return web.Response(status=503, text="\n".join(problems) + "\n")
        return web.Response(text="ready\n")

    async def metrics(_request: web.Request) -> web.Response:
        m = relay.metrics
        stats = await relay.store.stats()
        for direction in ("to_helpdesk", "to_customer"):
            count, oldest = stats[direction]
            m.queue_depth.labels(direction).set(count)
            m.oldest.labels(direction).set(seconds_since(oldest) if oldest else 0)
        m.customers.set(stats["customers"])
        m.open_conversations.set(stats["open_conversations"])
        m.reconnects.set(relay.link.reconnects)
        m.disconnected.set(relay.link.seconds_disconnected)
        m.malformed.set(relay.link.malformed)
        m.tasks.set(len(asyncio.all_tasks()))
        m.db_connections.set(relay.store.connections_open())
        return web.Response(body=m.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    http.route("GET", "/readyz", readyz)
    http.route("GET", "/metrics", metrics)
