"""/readyz and /metrics: what an operator's probes and Prometheus read."""
from __future__ import annotations

import asyncio
from typing import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bridge.http import HttpServer
from bridge.leadership import Leadership
from bridge.metrics import Metrics
from bridge.relay import Relay
from bridge.store import Store
from bridge.store.models import seconds_since


def mount(http: HttpServer, store: Store, metrics: Metrics,
          working: Callable[[], Relay | None], leadership: Leadership | None) -> None:
    """working: the relay while this daemon works the customers, else None (standing by)."""
    async def readyz(_request: web.Request) -> web.Response:
        problems = []
        try:
            await store.ping()
        except Exception as error:  # the reason, never the URL (it may hold a password)
            problems.append(f"database: {type(error).__name__}")
        relay = working()
        if relay is not None:
            if leadership is not None and not leadership.leading:
                problems.append("lease: not renewed in time; paused")
            if not relay.link.connected:
                problems.append(f"helpdesk: {relay.link.failure}" if relay.link.failure
                                else "helpdesk: not connected")
        if problems:
            return web.Response(status=503, text="\n".join(problems) + "\n")
        if relay is None:
            # It stores what it receives for the working daemon (bridge/forwarding.py), so
            # a load balancer may send it webhooks, and a rolling deploy may go on.
            return web.Response(text="ready, standing by: another daemon works this "
                                     "database's customers\n")
        return web.Response(text="ready\n")

    async def render(_request: web.Request) -> web.Response:
        m = metrics
        stats = await store.stats()
        for direction in ("to_helpdesk", "to_customer", "forwarded"):
            count, oldest = stats[direction]
            m.queue_depth.labels(direction).set(count)
            m.oldest.labels(direction).set(seconds_since(oldest) if oldest else 0)
        m.customers.set(stats["customers"])
        m.open_conversations.set(stats["open_conversations"])
        relay = working()
        if relay is not None:
            m.reconnects.set(relay.link.reconnects)
            m.disconnected.set(relay.link.seconds_disconnected)
            m.malformed.set(relay.link.malformed)
        if leadership is not None:
            m.leading.set(1 if leadership.leading else 0)
            m.lease_renewals.set(leadership.renewals)
            m.lease_losses.set(leadership.losses)
            m.takeovers.set(leadership.takeovers)
        m.tasks.set(len(asyncio.all_tasks()))
        m.db_connections.set(store.connections_open())
        return web.Response(body=m.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    http.route("GET", "/readyz", readyz)
    http.route("GET", "/metrics", render)
