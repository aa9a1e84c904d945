"""One customer cannot crowd out the rest: a flood is held to the customer's pace (kept,
in order, told once), a quiet customer's answer goes ahead of a crowd's, and a backlog
found at start is worked a few customers at a time, behind what comes in now.
(bench/fairness.py measures it under load.)"""
from __future__ import annotations

import asyncio
import time

from adapters.telegram import TelegramAdapter
from bridge.app import Bridge
from bridge.config import load_settings
from bridge.drain import BACKLOG, Drainer
from bridge.registry import adapter_schemas
from bridge.sandbox import DEFAULT_API_KEY
from tests.test_telegram import TOKEN, telegram  # noqa: F401 (a fixture)


async def _bridge(telegram, sandbox, database_url, per_minute: float) -> Bridge:  # noqa: F811
    settings = load_settings({
        "helpdesk": {"url": sandbox.url, "api_key": DEFAULT_API_KEY, "request_timeout": 3},
        "storage": {"url": database_url}, "http": {"listen": "127.0.0.1:0"},
        "limits": {"messages_per_minute": per_minute},
        "telegram": {"token": TOKEN, "api_url": telegram.url, "poll_timeout": 1},
    }, env={}, adapter_schemas=adapter_schemas())
    bridge = Bridge(settings, [TelegramAdapter(settings.adapters["telegram"])])
    await bridge.start()
    await bridge.relay.link.wait_connected(10)
    return bridge


async def _until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.05)


async def test_a_flood_is_kept_and_sent_at_the_customers_pace(telegram, sandbox,  # noqa: F811
                                                              database_url):
    bridge = await _bridge(telegram, sandbox, database_url, per_minute=60)  # burst 10, 1/s
    try:
        for n in range(13):
            telegram.say(7001, f"flood {n}")
        await _until(lambda: len(sandbox.received) == 13)
        arrived = [m["message"] for m in sandbox.received]
        assert arrived == [f"flood {n}" for n in range(13)]  # every one, in order
        await telegram.wait_for_text(7001, "reach us shortly", timeout=30)
        await _until(lambda: sum(1 for m in telegram.sent_to(7001)
                                 if "You said" in m.get("text", "")) == 13)
        notices = [m for m in telegram.sent_to(7001) if "reach us shortly" in m.get("text", "")]
        assert len(notices) == 1  # told once
    finally:
        await asyncio.wait_for(bridge.stop(), 20)


async def test_the_pace_holds_messages_back(telegram, sandbox, database_url):  # noqa: F811
    bridge = await _bridge(telegram, sandbox, database_url, per_minute=60)
    try:
        started = time.monotonic()
        for n in range(13):
            telegram.say(7002, f"m {n}")
        await _until(lambda: len(sandbox.received) >= 10)
        burst_done = time.monotonic() - started
        await _until(lambda: len(sandbox.received) == 13)
        assert time.monotonic() - started >= burst_done + 2  # three more, a second apart
    finally:
        await asyncio.wait_for(bridge.stop(), 20)


async def test_a_quiet_customers_answer_goes_ahead_of_a_crowds(telegram, sandbox,  # noqa: F811
                                                               database_url):
    """60 chats keep the bot's ~28/s budget full (each may have one a second); one more
    customer writes. First come, first served, their answer would wait for the turn of
    every chat already waiting (about 60, two seconds' worth); here it goes next."""
    bridge = await _bridge(telegram, sandbox, database_url, per_minute=0)  # the budget alone

    def crowd_answered() -> int:
        return sum(1 for who in range(60) for m in telegram.sent_to(8000 + who)
                   if "You said" in m.get("text", ""))
    try:
        for n in range(6):
            for who in range(60):
                telegram.say(8000 + who, f"crowd {who} {n}")
        await _until(lambda: crowd_answered() >= 120)
        before = crowd_answered()
        telegram.say(9001, "just one question")
        await telegram.wait_for_text(9001, 'You said: "just one question"', timeout=30)
        assert crowd_answered() - before < 20, (before, crowd_answered())
        assert crowd_answered() < 360  # the crowd was still waiting
    finally:
        await asyncio.wait_for(bridge.stop(), 20)


async def test_a_backlog_starts_a_few_at_a_time_behind_what_comes_now():
    running, most, order = set(), 0, []

    async def work(key) -> None:
        nonlocal most
        running.add(key)
        most = max(most, len(running))
        order.append(key)
        await asyncio.sleep(0.01)
        running.discard(key)

    drainer = Drainer(work, "test")
    for key in range(100):
        drainer.kick(key, backlog=True)
    drainer.kick("new")  # written just now
    await _until(lambda: len(order) == 101, timeout=10)
    assert most <= BACKLOG + 1
    assert order.index("new") < 50  # not after the whole backlog
    assert sorted(k for k in order if k != "new") == list(range(100))  # none left behind
