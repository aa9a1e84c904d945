"""A burst against a Bot API server that enforces Telegram's limits.

The server (testing/fake_telegram.py plus token buckets) allows about 30 messages a second
per bot and, per chat, a burst of 3 then one a second, as Telegram's FAQ describes ("avoid
more than one message per second in a single chat; short bursts may be allowed"); beyond
that it answers 429 with retry_after, as Telegram does. The bridge runs as shipped: PTB's
AIORateLimiter for the bot, the adapter's per-chat pacing.

Setup (not measured): every customer writes once and gets SATE's answer. Then agents send
`messages` replies spread over the customers' conversations, all at the same instant.
"""
from __future__ import annotations

import asyncio
import math
import time
from contextlib import AsyncExitStack

from aiohttp import web

from adapters.telegram import TelegramAdapter
from bridge.app import Bridge
from bridge.config import load_settings
from bridge.registry import adapter_schemas
from bridge.sandbox import DEFAULT_API_KEY, SandboxHelpdesk
from bridge.shards import SHARDS
from testing.fake_telegram import FakeTelegram
from testing.local import free_port

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SENDING = {"sendMessage", "sendPhoto", "sendDocument", "editMessageText",
           "editMessageReplyMarkup"}


class Bucket:
    def __init__(self, capacity: float, per_second: float) -> None:
        self.capacity, self.per_second = capacity, per_second
        self.tokens, self.at = capacity, time.monotonic()

    def take(self) -> float:
        """0 if a message may go now (and counts it); else seconds until one may."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.per_second)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.per_second


class LimitedTelegram(FakeTelegram):
    def __init__(self, token: str, per_bot: float = 30, chat_burst: int = 3) -> None:
        super().__init__(token)
        self.bot_bucket = Bucket(per_bot, per_bot)
        self.chat_burst = chat_burst
        self.chat_buckets: dict[int, Bucket] = {}
        self.refused = 0
        self.sent_at: list[float] = []

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if method in SENDING:
            params = await self._params(request)
            chat = int(params.get("chat_id", 0))
            bucket = self.chat_buckets.setdefault(chat, Bucket(self.chat_burst, 1.0))
            wait = max(self.bot_bucket.take(), bucket.take())
            if wait:
                self.refused += 1
                return self._error(429, f"Too Many Requests: retry after {math.ceil(wait)}",
                                   retry_after=math.ceil(wait))
            self.sent_at.append(time.perf_counter())
        return await super()._handle(request)

    async def _params(self, request: web.Request) -> dict:
        # read once, here and in the base class: keep what was read
        if "params" not in request:
            request["params"] = await FakeTelegram._params(request)
        return request["params"]


def shipped_settings(helpdesk_url: str, telegram_url: str, db_url: str,
                     mode: str = "polling"):
    """The bridge's settings as shipped (Telegram's limits on), on the local servers;
    mode: how updates arrive (webhook: on a port of its own, as the public URL)."""
    port = free_port() if mode == "webhook" else 0
    return load_settings({
        "helpdesk": {"url": helpdesk_url, "api_key": DEFAULT_API_KEY, "connections": 8,
                     "request_timeout": 30},
        "storage": {"url": db_url},
        "http": {"listen": f"127.0.0.1:{port}",
                 "public_url": f"http://127.0.0.1:{port}" if port else ""},
        "telegram": {"token": TOKEN, "api_url": telegram_url, "poll_timeout": 1,
                     "mode": mode},
    }, env={}, adapter_schemas=adapter_schemas())


async def burst(db_url: str, customers: int, messages: int, daemons: int = 1) -> dict:
    """daemons: several Bridges on one PostgreSQL database (in this process), sharing the
    customers and Telegram's limit for the bot."""
    sandbox, telegram = SandboxHelpdesk(), LimitedTelegram(TOKEN)
    await sandbox.start(port=0)
    await telegram.start()
    settings = shipped_settings(sandbox.url, telegram.url, db_url)
    try:
        async with AsyncExitStack() as stack:
            bridges = [await stack.enter_async_context(
                Bridge(settings, [TelegramAdapter(settings.adapters["telegram"])]))
                for _ in range(daemons)]
            for bridge in bridges:
                await bridge.relay.link.wait_connected(30)
            if daemons > 1:  # each works its share of the customers
                share = -(-SHARDS // daemons)
                await until(lambda: sum(len(b.shards.held) for b in bridges) == SHARDS
                             and all(len(b.shards.held) <= share for b in bridges), 60)
            for n in range(customers):
                telegram.say(20_000 + n, f"hello {n}")
            await until(lambda: len(sandbox.conversations) >= customers and all(
                any("You said" in m.get("text", "") for m in telegram.sent_to(20_000 + n))
                for n in range(customers)), 600)
            setup_refused = telegram.refused
            telegram.refused = 0
            tickets = list(sandbox.conversations)
            mark = len(telegram.sent_at)
            started = time.perf_counter()
            await asyncio.gather(*(sandbox.agent_reply(tickets[n % len(tickets)], f"burst {n}")
                                   for n in range(messages)))

            def delivered() -> int:
                return sum(1 for chat in telegram.sent.values() for m in chat.values()
                           if m.get("text", "").startswith("Agent: burst "))

            await until(lambda: delivered() >= messages, 600)
            elapsed = time.perf_counter() - started
            sent = telegram.sent_at[mark:]
            peak = max(sum(1 for t in sent if s <= t < s + 1) for s in sent) if sent else 0
            return {"customers": customers, "messages": messages, "delivered": delivered(),
                    "seconds": elapsed, "rate": delivered() / elapsed, "peak_1s": peak,
                    "refused_429": telegram.refused, "setup_429": setup_refused}
    finally:
        await telegram.stop()
        await sandbox.stop()


async def until(predicate, timeout: float) -> None:
    """Until predicate() holds; TimeoutError (the run did not complete) after timeout."""
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("the run did not complete")
        await asyncio.sleep(0.05)
