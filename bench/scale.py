"""Scale: one conversation per simulated customer, all opened at the same instant through
the console adapter; then the helpdesk drops every connection and the time until every
conversation room is joined again is taken.

The sandbox helpdesk runs in its own process (`python -m testing.observed_sandbox`: the
sandbox with the counters this bench reads), as the real one is elsewhere: in this process
it took half the CPU of the re-join (it answers each of the 20,000 room requests) and its
memory was counted as the bridge's. RSS is this process: the
bridge, the console adapter and the harness.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import aiohttp

from bridge.app import Bridge
from bridge.config import load_settings
from bridge.sandbox import DEFAULT_API_KEY
from testing.console import ConsoleHarness
from testing.local import free_port


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_per_second(moments: list[float]) -> int:
    """The most moments in any one-second window."""
    moments, peak, start = sorted(moments), 0, 0
    for end, moment in enumerate(moments):
        while moment - moments[start] >= 1.0:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


async def _sandbox_process() -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "testing.observed_sandbox", "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            await asyncio.sleep(0.1)
    process.kill()
    raise RuntimeError("the sandbox helpdesk did not start")


async def scale(customers: int, connections: int, db_url: str) -> dict:
    sandbox, url = await _sandbox_process()
    settings = load_settings({
        "helpdesk": {"url": url, "api_key": DEFAULT_API_KEY, "connections": connections,
                     "request_timeout": 60},
        "storage": {"url": db_url}, "http": {"listen": "127.0.0.1:0"}}, env={})
    console = ConsoleHarness()
    try:
        async with Bridge(settings, [console]) as bridge, aiohttp.ClientSession() as http:
            await bridge.relay.link.wait_connected(30)
            before = rss_mb()
            started = time.perf_counter()
            names = [f"c{n}" for n in range(customers)]
            await asyncio.gather(*(console.say(name, f"hello {name}") for name in names))
            await asyncio.gather(*(console.expect(name, "You said", timeout=900) for name in names))
            opened = time.perf_counter() - started
            after = rss_mb()
            dropped_at, started = time.time(), time.perf_counter()
            cpu_bridge, cpu_sandbox = cpu_seconds(), cpu_seconds(sandbox.pid)
            async with http.post(f"{url}/sandbox/admin/drop-connections") as answer:
                answer.raise_for_status()
            while True:
                async with http.get(f"{url}/sandbox/rejoined") as answer:
                    if (await answer.json())["conversation_rooms"] >= customers:
                        break
                await asyncio.sleep(0.02)
            rejoined = time.perf_counter() - started
            cpu_bridge, cpu_sandbox = cpu_seconds() - cpu_bridge, \
                cpu_seconds(sandbox.pid) - cpu_sandbox
            async with http.get(f"{url}/sandbox/rooms") as answer:
                rooms = await answer.json()  # entered, and still joined: all of them
            if rooms["conversation_rooms_joined"] < customers:
                raise RuntimeError(f"only {rooms['conversation_rooms_joined']} of {customers} "
                                   "conversation rooms are joined after the re-join")
            attempts = [t for t in rooms["connect_attempts"] if t >= dropped_at]
            return {"customers": customers, "open_s": opened, "opens_per_s": customers / opened,
                    "rss_total_mb": after, "kb_per_customer": (after - before) * 1024 / customers,
                    "rejoin_s": rejoined, "reconnects": len(attempts),
                    "peak_attempts_1s": peak_per_second(attempts),
                    "rejoin_cpu_bridge_s": cpu_bridge, "rejoin_cpu_sandbox_s": cpu_sandbox}
    finally:
        sandbox.terminate()
        sandbox.wait(10)
