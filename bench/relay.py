"""Relay speed through Telegram, and its floors.

Customers write through a local Bot API server (testing/fake_telegram.py, polled by the
bridge as Telegram would be); the sandbox helpdesk answers every message at once (SATE);
the answer goes back through sendMessage. The bridge (and the echo bot, for its floor)
runs in a process of its own (bench/relay_peer.py), as it would in production, where the
Bot API and the helpdesk are elsewhere; `apart=False` runs all of it in this one loop.

Measured per message, every timestamp taken here, on the local servers:
- inbound:  update offered by the Bot API server -> the helpdesk has the message;
- outbound: the helpdesk emits SATE's answer -> sendMessage reaches the Bot API server.
The floors, on the same servers:
- a bare python-telegram-bot echo bot (Application + Updater + MessageHandler):
  update offered -> its echo reaches sendMessage;
- a bare python-socketio client: `support` emitted -> acknowledged (one round trip).
"Added by the bridge" is inbound + outbound minus (PTB echo + Socket.IO round trip): what
the bridge costs beyond the two transports it sits between. Both the bridge and the echo
bot get one warm-up message per customer first (not measured).

Telegram's own limits (30/s per bot, ~1/s per chat) are switched off here, on the bridge
and the echo bot alike: they are measured by bench.telegram_limits.
"""
from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from contextlib import AsyncExitStack, asynccontextmanager

from bench.relay_peer import TOKEN, echo_bot, unlimited_bridge
from bridge.sandbox import DEFAULT_API_KEY, NAMESPACE, SandboxHelpdesk
from testing.fake_telegram import FakeTelegram


class Timed:
    """For a Bot API stand-in: remembers when each marked text was offered, first fetched
    (getUpdates) and answered (sendMessage)."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.offered: dict[str, float] = {}
        self.fetched: dict[str, float] = {}  # first handed out by getUpdates
        self.answered: dict[str, float] = {}

    def offer(self, user_id: int, marker: str) -> None:
        self.offered[marker] = time.perf_counter()
        self.say(user_id, marker)

    async def _api_getUpdates(self, params: dict) -> list[dict]:
        updates = await super()._api_getUpdates(params)
        now = time.perf_counter()
        for update in updates:
            marker = _marker(str(update.get("message", {}).get("text", "")))
            if marker:
                self.fetched.setdefault(marker, now)
        return updates

    async def _api_sendMessage(self, params: dict):
        marker = _marker(str(params.get("text", "")))
        if marker:
            self.answered.setdefault(marker, time.perf_counter())
        return await super()._api_sendMessage(params)


class TimedTelegram(Timed, FakeTelegram):
    pass


class TimedSandbox(SandboxHelpdesk):
    def __init__(self) -> None:
        super().__init__()
        self.arrived: dict[str, float] = {}
        self.replied: dict[str, float] = {}

    async def _on_support(self, sid: str, data: dict):
        marker = _marker(str(data.get("message", "")))
        if marker:
            self.arrived.setdefault(marker, time.perf_counter())
        return await super()._on_support(sid, data)

    async def _sate_says(self, conversation, text: str, **flags: bool) -> None:
        marker = _marker(text)
        if marker:
            self.replied.setdefault(marker, time.perf_counter())
        await super()._sate_says(conversation, text, **flags)


class SplitTelegram:
    """Local Bot API servers, one per independent bridge, seen by the bench as one: customer
    n writes through server n % len(servers), and every server counts into the same
    dicts."""

    def __init__(self, count: int) -> None:
        self.servers = [TimedTelegram(TOKEN) for _ in range(count)]
        first = self.servers[0]
        self.offered, self.answered, self.sent = first.offered, first.answered, first.sent
        for server in self.servers[1:]:
            server.offered, server.answered, server.sent = \
                self.offered, self.answered, self.sent

    def offer(self, user_id: int, marker: str) -> None:
        self.servers[user_id % len(self.servers)].offer(user_id, marker)

    async def start(self) -> None:
        for server in self.servers:
            await server.start()

    async def stop(self) -> None:
        for server in self.servers:
            await server.stop()


def _marker(text: str) -> str | None:
    start = text.find("m#")
    return text[start:start + 14] if start >= 0 else None


def percentiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0] if values else 0.0), (values[0] if values else 0.0)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return statistics.median(values), cuts[98]


async def _offer_load(telegram: TimedTelegram, customers: int, rate: float, total: int) -> None:
    """`total` messages at `rate` per second, round-robin over the customers."""
    started = time.perf_counter()
    for n in range(total):
        delay = started + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        telegram.offer(10_000 + n % customers, f"m#{n:012d}")


async def _wait_all(done: dict, total: int, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while len(done) < total and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)


@asynccontextmanager
async def peer(*args: str):
    """bench/relay_peer.py in a process of its own, for the duration of the block."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.relay_peer", *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), 30)


@asynccontextmanager
async def _bridge(telegram_url: str, helpdesk_url: str, db_url: str, apart: bool):
    """Yields the process id of the bridge's own process (None in this one)."""
    if apart:
        async with peer("bridge", "--telegram", telegram_url, "--helpdesk", helpdesk_url,
                         "--db", db_url) as process:
            yield process.pid
        return
    async with unlimited_bridge(telegram_url, helpdesk_url, db_url):
        yield None


@asynccontextmanager
async def _echo_bot(telegram_url: str, apart: bool):
    if apart:
        async with peer("echo", "--telegram", telegram_url) as process:
            yield process.pid
        return
    async with echo_bot(telegram_url):
        yield None


async def _measure(telegram: TimedTelegram, customers: int, rate: float, total: int,
                   pids: list[int | None]) -> tuple[float, float | None]:
    """Warm up (each customer's first message, not measured), then offer the load and wait
    for every answer: the seconds it took, and the CPU time the peer processes spent per
    message meanwhile, all together (ms; None when it runs in this process, or without
    /proc)."""
    for n in range(customers):
        telegram.offer(10_000 + n, f"w#{n:012d}")
    await _wait_all_warm(telegram, customers)
    telegram.offered.clear()
    started, cpu_before = time.perf_counter(), _cpu_sum(pids)
    await _offer_load(telegram, customers, rate, total)
    await _wait_all(telegram.answered, total, timeout=120)
    cpu_after = _cpu_sum(pids)
    cpu_ms = None if cpu_before is None or cpu_after is None else \
        (cpu_after - cpu_before) * 1000 / max(1, len(telegram.answered))
    return time.perf_counter() - started, cpu_ms


async def _idle(pids: list[int | None], timeout: float = 30) -> None:
    """Until each process spends under 20 ms of CPU in half a second."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        before = [_cpu_seconds(pid) or 0 for pid in pids]
        await asyncio.sleep(0.5)
        if all((_cpu_seconds(pid) or 0) - then < 0.02 for pid, then in zip(pids, before)):
            return


def _cpu_sum(pids: list[int | None]) -> float | None:
    seconds = [_cpu_seconds(pid) for pid in pids]
    return None if None in seconds else sum(seconds)


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process, all its threads (Linux's /proc)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()
    except (OSError, TypeError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bridge_run(db_url: str, customers: int, rate: float, total: int,
                     apart: bool = True, daemons: int = 1) -> dict:
    """daemons: with more than one (PostgreSQL), they share the customers (the first polls
    Telegram and stores the others' updates for them); the CPU per message is theirs all
    together."""
    sandbox, telegram = TimedSandbox(), TimedTelegram(TOKEN)
    await sandbox.start(port=0)
    await telegram.start()
    try:
        async with AsyncExitStack() as stack:
            pids = [await stack.enter_async_context(
                _bridge(telegram.url, sandbox.url, db_url, apart))]
            await asyncio.sleep(2 if daemons > 1 else 0)  # the first takes shard 0: it polls
            for _ in range(daemons - 1):
                pids.append(await stack.enter_async_context(
                    _bridge(telegram.url, sandbox.url, db_url, apart)))
            await _idle(pids[1:])  # their start (imports, TLS contexts) is not the relay's
            elapsed, cpu_ms = await _measure(telegram, customers, rate, total, pids)
    finally:
        await telegram.stop()
        await sandbox.stop()
    return _figures(sandbox, telegram, elapsed, cpu_ms)


async def split_run(db_urls: list[str], customers: int, rate: float, total: int) -> dict:
    """Independent bridges, each with a bot and a database of its own, sharing the load
    (customer n on bridge n % len(db_urls)): what splitting the work over that many
    processes costs with no coordination at all, beside which the cost of the daemons'
    coordination (bridge_run with as many daemons) can be read."""
    sandbox, telegram = TimedSandbox(), SplitTelegram(len(db_urls))
    await sandbox.start(port=0)
    await telegram.start()
    try:
        async with AsyncExitStack() as stack:
            pids = [await stack.enter_async_context(_bridge(server.url, sandbox.url, url, True))
                    for server, url in zip(telegram.servers, db_urls)]
            await _idle(pids)
            elapsed, cpu_ms = await _measure(telegram, customers, rate, total, pids)
    finally:
        await telegram.stop()
        await sandbox.stop()
    return _figures(sandbox, telegram, elapsed, cpu_ms)


def _figures(sandbox: TimedSandbox, telegram: TimedTelegram | SplitTelegram, elapsed: float,
             cpu_ms: float | None) -> dict:
    inbound = [(sandbox.arrived[m] - t) * 1000 for m, t in telegram.offered.items()
               if m in sandbox.arrived]
    outbound = [(telegram.answered[m] - sandbox.replied[m]) * 1000 for m in telegram.answered
                if m in sandbox.replied]
    # the whole trip less the time the sandbox took to answer (not the bridge's)
    trip = [(telegram.answered[m] - t - (sandbox.replied[m] - sandbox.arrived[m])) * 1000
            for m, t in telegram.offered.items()
            if m in telegram.answered and m in sandbox.replied and m in sandbox.arrived]
    return {"delivered": len(telegram.answered), "rate": len(telegram.answered) / elapsed,
            "inbound": percentiles(inbound), "outbound": percentiles(outbound),
            "trip": percentiles(trip), "cpu_ms": cpu_ms}


async def _wait_all_warm(telegram: TimedTelegram, customers: int) -> None:
    deadline = time.perf_counter() + 120
    while time.perf_counter() < deadline:
        warmed = sum(1 for chat in telegram.sent.values()
                     if any("w#" in m.get("text", "") for m in chat.values()))
        if warmed >= customers:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"warm-up: {warmed} of {customers} customers answered in 120 s")


async def echo_floor(customers: int, rate: float, total: int, apart: bool = True) -> dict:
    """The same load against a bare python-telegram-bot echo bot."""
    telegram = TimedTelegram(TOKEN)
    await telegram.start()
    try:
        async with _echo_bot(telegram.url, apart) as pid:
            elapsed, cpu_ms = await _measure(telegram, customers, rate, total, [pid])
    finally:
        await telegram.stop()
    trip = [(telegram.answered[m] - t) * 1000 for m, t in telegram.offered.items()
            if m in telegram.answered]
    return {"delivered": len(telegram.answered), "rate": len(telegram.answered) / elapsed,
            "trip": percentiles(trip), "cpu_ms": cpu_ms}


async def socketio_floor(total: int) -> dict:
    """One bare python-socketio client: `support` round trips on the sandbox."""
    import socketio

    sandbox = SandboxHelpdesk()
    sandbox.behaviour.respond_via = "ack"  # a request answered by its acknowledgement
    await sandbox.start(port=0)
    client = socketio.AsyncClient()
    await client.connect(f"{sandbox.url}?token_source=api&token={DEFAULT_API_KEY}",
                         namespaces=[NAMESPACE], transports=["websocket"])
    trips = []
    try:
        await client.call("support", {"session_id": "floor", "message": "hi"},
                          namespace=NAMESPACE, timeout=10)
        ticket = next(iter(sandbox.conversations))
        for n in range(total):
            payload = {"session_id": "floor", "message": f"n{n}"}
            if ticket:
                payload["ticket_chat_id"] = ticket
            started = time.perf_counter()
            await client.call("support", payload, namespace=NAMESPACE, timeout=10)
            trips.append((time.perf_counter() - started) * 1000)
    finally:
        await client.disconnect()
        await sandbox.stop()
    return {"trip": percentiles(trips)}
