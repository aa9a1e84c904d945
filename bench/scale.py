"""Scale: one conversation per simulated customer, opened at the same instant against the
sandbox helpdesk (in this process, through the console adapter); then the sandbox drops
every connection and the time until every conversation room is joined again is taken."""
from __future__ import annotations

import asyncio
import time

from adapters.console import ConsoleAdapter
from bridge.app import Bridge
from bridge.config import load_settings
from bridge.sandbox import DEFAULT_API_KEY, SandboxHelpdesk


class CountingSandbox(SandboxHelpdesk):
    """Notes when each connection attempt arrives (refused or not), for the storm check."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[float] = []

    async def _on_connect(self, sid: str, environ: dict, auth=None) -> None:
        self.attempts.append(time.perf_counter())
        await super()._on_connect(sid, environ, auth)


def peak_per_second(moments: list[float]) -> int:
    """The most moments in any one-second window."""
    moments, peak, start = sorted(moments), 0, 0
    for end, moment in enumerate(moments):
        while moment - moments[start] >= 1.0:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


async def scale(customers: int, connections: int, db_url: str) -> dict:
    sandbox = CountingSandbox()
    await sandbox.start(port=0)
    settings = load_settings({
        "helpdesk": {"url": sandbox.url, "api_key": DEFAULT_API_KEY, "connections": connections,
                     "request_timeout": 60},
        "storage": {"url": db_url}, "http": {"listen": "127.0.0.1:0"}}, env={})
    console = ConsoleAdapter()
    try:
        async with Bridge(settings, [console]) as bridge:
            await bridge.relay.link.wait_connected(30)
            before = rss_mb()
            started = time.perf_counter()
            names = [f"c{n}" for n in range(customers)]
            await asyncio.gather(*(console.say(name, f"hello {name}") for name in names))
            await asyncio.gather(*(console.expect(name, "You said", timeout=600) for name in names))
            opened = time.perf_counter() - started
            after = rss_mb()
            connects_before = sandbox.connects
            seen = len(sandbox.requests)
            started = time.perf_counter()
            await sandbox.drop_connections()
            # done when every conversation's room was asked for again; read incrementally
            # (a scan of all rooms every few ms cost more than the re-join at 10,000)
            joined: set[str] = set()
            while len(joined) < customers:
                await asyncio.sleep(0.005)
                new, seen = sandbox.requests[seen:], len(sandbox.requests)
                joined.update(data["ticket_chat_id"] for name, data in new
                              if name == "enter_support" and isinstance(data, dict))
            rejoined = time.perf_counter() - started
            attempts = [t for t in sandbox.attempts if t >= started]
            return {"customers": customers, "open_s": opened, "opens_per_s": customers / opened,
                    "rss_total_mb": after, "kb_per_customer": (after - before) * 1024 / customers,
                    "rejoin_s": rejoined, "reconnects": sandbox.connects - connects_before,
                    "peak_attempts_1s": peak_per_second(attempts)}
    finally:
        await sandbox.stop()
