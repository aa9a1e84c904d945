"""/readyz and /metrics: what an operator's probes and Prometheus read."""
from __future__ import annotations

import asyncio
from typing import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bridge.http import HttpServer
from bridge.metrics import Metrics
from bridge.relay import Relay
from bridge.shards import SHARDS, Shards
from bridge.store import Store
from bridge.store.models import seconds_since


def mount(http: HttpServer, store: Store, metrics: Metrics,
          relay: Callable[[], Relay | None], shards: Shards | None) -> None:
    """relay: once the daemon has started; shards: None with one daemon per database."""
    async def readyz(_request: web.Request) -> web.Response:
        problems = []
        try:
            await store.ping()
        except Exception as error:  # the reason, never the URL (it may hold a password)
            problems.append(f"database: {type(error).__name__}")
        working = relay()
        standing_by = shards is not None and not shards.held
        if shards is not None and shards.held and not shards.valid:
            problems.append("leases: not renewed in time; paused")
        if working is None:
            problems.append("starting")
        elif not working.link.connected and not standing_by:
            problems.append(f"helpdesk: {working.link.failure}" if working.link.failure
                            else "helpdesk: not connected")
        if problems:
            return web.Response(status=503, text="\n".join(problems) + "\n")
        if standing_by:
            # It stores what it receives for the others (bridge/forwarding.py), so a load
            # balancer may send it webhooks, and a rolling deploy may go on.
            return web.Response(text="ready, standing by: the other daemons work every "
                                     "shard of this database's customers\n")
        if shards is not None:
            return web.Response(text=f"ready, working {len(shards.held)} of {SHARDS} "
                                     "shards of the customers\n")
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
        working = relay()
        if working is not None:
            m.reconnects.set(working.link.reconnects)
            m.disconnected.set(working.link.seconds_disconnected)
            m.malformed.set(working.link.malformed)
        if shards is not None:
            m.shards_held.set(len(shards.owned()))
            m.lease_renewals.set(shards.renewals)
            m.lease_losses.set(shards.losses)
            m.takeovers.set(shards.takeovers)
            while shards.takeover_seconds:
                m.takeover_seconds.observe(shards.takeover_seconds.popleft())
        m.tasks.set(len(asyncio.all_tasks()))
        m.db_connections.set(store.connections_open())
        return web.Response(body=m.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    http.route("GET", "/readyz", readyz)
    http.route("GET", "/metrics", render)
