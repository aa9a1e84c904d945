"""Fairness: does one customer, or a crowd, or a backlog, slow everyone else down?

`python -m bench [--db URL] fairness --modes quiet one forty backlog [--telegram webhook]`

Fifty customers chat at their usual pace (each writes every few seconds; SATE answers at
once) while, from the second second:
- quiet:   nothing else (the baseline);
- one:     one customer pushes 1,000 messages in 10 seconds;
- forty:   40 customers write 30 messages each, all at once;
- backlog: 100,000 rows were queued (for 10,000 customers) before the bridge started.

Measured for the fifty only, message by message: from the update offered by the Bot API
server to SATE's answer reaching sendMessage, less the time the sandbox took to answer;
and, apart, how long each waited in Telegram's queue (offered -> first handed out by
getUpdates). `floor` runs the same load on a bare python-telegram-bot echo bot.
The bridge runs as shipped: Telegram's limits on (PTB's limiter for the bot, per-chat
pacing) against a Bot API server that enforces them (bench.telegram_limits). It runs in a
process of its own (bench.relay_peer), as in production, where the platform and the helpdesk
are elsewhere: in the bench's process, the stand-ins' work for the flood would take the
bridge's CPU. With one_process, all share this process (the figures before session 16).
"""
from __future__ import annotations

import asyncio
import json
import secrets
import time
from contextlib import asynccontextmanager

from adapters.telegram import TelegramAdapter
from bench.relay import Timed, TimedSandbox, TimedTelegram, peer, percentiles
from bench.telegram_limits import TOKEN, LimitedTelegram, shipped_settings, until
from bridge.app import Bridge
from bridge.store import Store, upgrade
from bridge.store.models import utcnow

MODES = ("quiet", "one", "forty", "backlog")
BOT_ID = TOKEN.split(":")[0]
NORMAL_FIRST = 10_000  # user ids: the fifty
FLOOD_FIRST = 50_000   # the flooders
BACKLOG_FIRST = 100_000


class TimedLimitedTelegram(Timed, LimitedTelegram):
    pass


async def run(db_url: str, mode: str, customers: int = 50, seconds: float = 20,
              every: float = 5.0, backlog: int = 100_000, receiving: str = "polling",
              one_process: bool = False) -> dict:
    """receiving: how the bridge gets Telegram's updates, "polling" or "webhook"."""
    sandbox, telegram = TimedSandbox(), TimedLimitedTelegram(TOKEN)
    await sandbox.start(port=0)
    await telegram.start()
    try:
        if mode == "backlog":
            await _queue_backlog(db_url, backlog, backlog // 10)
        async with _shipped_bridge(sandbox, telegram, db_url, receiving, one_process):
            # with a backlog, the fifty are new customers: no warm-up
            await _load(telegram, mode, customers, seconds, every, warm=mode != "backlog")
    finally:
        await telegram.stop()
        await sandbox.stop()
    trip = [(telegram.answered[m] - t - (sandbox.replied[m] - sandbox.arrived[m])) * 1000
            for m, t in telegram.offered.items()
            if m in sandbox.replied and m in sandbox.arrived]
    inbound = [(sandbox.arrived[m] - t) * 1000 for m, t in telegram.offered.items()
               if m in sandbox.arrived]
    outbound = [(telegram.answered[m] - sandbox.replied[m]) * 1000
                for m in telegram.offered if m in sandbox.replied]
    p50, p99 = percentiles(trip)
    return {"mode": mode, "messages": len(trip), "p50": p50, "p99": p99, "max": max(trip),
            "inbound_p99": percentiles(inbound)[1], "outbound_p99": percentiles(outbound)[1],
            "queued_p99": _queued_p99(telegram), "refused_429": telegram.refused}


async def floor(mode: str, customers: int = 50, seconds: float = 20,
                every: float = 5.0) -> dict:
    """The same load on a bare python-telegram-bot echo bot (bench.relay_peer echo, no
    storage, no helpdesk, no limits of its own, Telegram's not enforced): how long the
    fifty's updates wait in Telegram's queue behind the flood when the bot does nothing
    but read them, and their trip to the echo."""
    if mode == "backlog":
        raise ValueError("the backlog is the bridge's own: no floor to compare with")
    telegram = TimedTelegram(TOKEN)
    await telegram.start()
    try:
        async with peer("echo", "--telegram", telegram.url):
            await _load(telegram, mode, customers, seconds, every, warm=True)
    finally:
        await telegram.stop()
    trip = [(telegram.answered[m] - t) * 1000 for m, t in telegram.offered.items()]
    p50, p99 = percentiles(trip)
    return {"mode": mode, "messages": len(trip), "p50": p50, "p99": p99, "max": max(trip),
            "queued_p99": _queued_p99(telegram)}


def _queued_p99(telegram: Timed) -> float | None:
    """p99 of the fifty's wait in Telegram's queue: offered -> first fetched (getUpdates;
    None by webhook)."""
    waits = [(telegram.fetched[m] - t) * 1000 for m, t in telegram.offered.items()
             if m in telegram.fetched]
    return percentiles(waits)[1] if waits else None


@asynccontextmanager
async def _shipped_bridge(sandbox: TimedSandbox, telegram: TimedLimitedTelegram, db_url: str,
                          receiving: str, one_process: bool):
    """The bridge as shipped, connected to the helpdesk, for the duration of the block."""
    if one_process:
        settings = shipped_settings(sandbox.url, telegram.url, db_url, receiving)
        async with Bridge(settings, [TelegramAdapter(settings.adapters["telegram"])]) as bridge:
            await bridge.relay.link.wait_connected(30)
            yield
        return
    async with peer("shipped", "--telegram", telegram.url, "--helpdesk", sandbox.url,
                    "--db", db_url, "--receiving", receiving):
        await until(lambda: sandbox.connects > 0, 60)
        yield


async def _load(telegram: Timed, mode: str, customers: int, seconds: float, every: float,
                warm: bool) -> None:
    """The fifty chat while the mode's flood runs, until each of them has its answer;
    warm: each of the fifty writes once first (not measured)."""
    if warm:
        for n in range(customers):
            telegram.offer(NORMAL_FIRST + n, f"m#w{n:011d}")
        await until(lambda: sum(1 for m in telegram.answered if "#w" in m) >= customers, 120)
    telegram.offered.clear()
    flood = asyncio.create_task(_flood(telegram, mode))
    await _chat(telegram, customers, seconds, every)
    await until(lambda: all(m in telegram.answered for m in telegram.offered), 300)
    flood.cancel()


async def _chat(telegram: Timed, customers: int, seconds: float,
                every: float) -> None:
    """Each of the fifty writes every `every` seconds, staggered, for `seconds`."""
    started, n = time.perf_counter(), 0
    total = int(seconds / every * customers)
    for n in range(total):
        delay = started + n * every / customers - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        telegram.offer(NORMAL_FIRST + n % customers, f"m#{n:012d}")


async def _flood(telegram: Timed, mode: str) -> None:
    await asyncio.sleep(1)
    if mode == "one":
        for n in range(1000):
            telegram.say(FLOOD_FIRST, f"flood {n}")
            await asyncio.sleep(0.01)
    elif mode == "forty":
        for n in range(30):
            for who in range(40):
                telegram.say(FLOOD_FIRST + who, f"flood {n}")


async def _queue_backlog(db_url: str, rows: int, customers: int) -> None:
    """`rows` messages queued for `customers` customers, as an outage would leave them."""
    store = Store.from_url(db_url)
    await upgrade(store.engine)
    now = store._db.from_time(utcnow())
    try:
        async with store._db.transaction() as transaction:
            for n in range(customers):
                user, number = str(BACKLOG_FIRST + n), BACKLOG_FIRST + n
                await transaction.run(
                    "INSERT INTO customers (id, platform, account, user_id, chat_id, "
                    "session_id, active_conversation_id, unreachable, created_at) "
                    "VALUES (?, 'telegram', ?, ?, ?, ?, ?, ?, ?)", number, BOT_ID, user, user,
                    secrets.token_hex(16), number, False, now)
                await transaction.run(
                    "INSERT INTO conversations (id, customer_id, number, state, handler, "
                    "created_at) VALUES (?, ?, 1, 'opening', 'sate', ?)", number, number, now)
            body = json.dumps({"text": "sent during the outage", "attachment": None})
            for n in range(rows):
                await transaction.run(
                    "INSERT INTO to_helpdesk (customer_id, conversation_id, kind, body, "
                    "dedupe_key, status, attempts, created_at) "
                    "VALUES (?, ?, 'message', ?, ?, 'queued', 0, ?)",
                    BACKLOG_FIRST + n % customers, BACKLOG_FIRST + n % customers, body,
                    f"backlog:{n}", now)
    finally:
        await store.close()

