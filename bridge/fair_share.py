"""A platform's sending budget, for the whole bot and per chat (Telegram: about 30 messages
a second, and per chat a burst of 3 then one a second), shared fairly between chats.

A plain rate limiter serves whoever asked first. Then a crowd of busy chats, each always
asking again, keeps a quiet customer's answer waiting behind all of them (the review
measured 7 s for everyone else while 40 accounts flooded). Here, each time the bot may send
one more message, the turn goes, among the chats whose own limit allows one now, to:
1. a customer with nothing else waiting (a fresh message) before one working through a
   queue of their own (a flood, or rows queued during an outage);
2. then the chat served least recently.
Every chat still gets its turns, and a quiet customer waits for at most a few. Both
limits are kept in one place so that a message, once granted, goes at once: a per-chat
wait after the bot's turn would bunch messages up past the bot's limit.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import time

from aiolimiter import AsyncLimiter
from cachetools import LRUCache

from bridge.pacing import Pacer

REMEMBERED = 10_000  # chats whose last turn is kept (the least recent forgotten first)
RECHECK = 0.05  # seconds between looks while every waiting chat is at its own limit


class FairShare:
    def __init__(self, rate: float, chat_burst: int = 3, chat_every: float = 1.0) -> None:
        self._budget = AsyncLimiter(rate, 1)
        self._chats = Pacer(chat_burst, chat_burst * chat_every)  # each chat's own limit
        self._served: LRUCache[str, float] = LRUCache(REMEMBERED)
        self._waiting: list[tuple[bool, float, int, str, asyncio.Future]] = []
        self._order = itertools.count()
        self._granting: asyncio.Task | None = None
        self._arrived = asyncio.Event()  # a new waiter: perhaps one whose chat may send now

    def set_rate(self, rate: float) -> None:
        """A new bot-wide rate (several daemons share a bot): at least one a second, so
        that nobody waits for ever."""
        self._budget = AsyncLimiter(max(1.0, rate), 1)

    def crowded(self) -> bool:
        """Messages wait for a turn now."""
        return bool(self._waiting)

    async def turn(self, chat: str, busy: bool = False) -> None:
        """Returns when one message may go to chat, now. busy: the customer has more
        waiting (they go after those who have not)."""
        if not self._waiting and self._budget.has_capacity() and self._chats.ready(chat):
            # nobody waits and both limits allow it: no hop through the granting task
            await self._take(chat)
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (busy, self._served.get(chat, 0.0),
                                       next(self._order), chat, future))
        self._arrived.set()
        if self._granting is None or self._granting.done():
            self._granting = asyncio.create_task(self._grant(), name="fair-share")
        await future

    async def _grant(self) -> None:
        while self._waiting:
            await self._budget.acquire()
            self._arrived.clear()
            while self._waiting and not await self._grant_one():
                # the bot's turn is kept for the first that may use it: a chat whose own
                # limit allows one again, or a new waiter
                try:
                    await asyncio.wait_for(self._arrived.wait(), RECHECK)
                except asyncio.TimeoutError:
                    pass
                self._arrived.clear()

    async def _grant_one(self) -> bool:
        """Give the turn to the first waiter in order whose chat may have one now."""
        passed_over = []
        granted = False
        while self._waiting and not granted:
            waiter = heapq.heappop(self._waiting)
            *_, chat, future = waiter
            if future.done():  # cancelled meanwhile
                continue
            if self._chats.ready(chat):
                await self._chats.wait(chat)  # at once: it is ready
                self._served[chat] = time.monotonic()
                future.set_result(None)
                granted = True
            else:
                passed_over.append(waiter)
        for waiter in passed_over:
            heapq.heappush(self._waiting, waiter)
        return granted

    async def _take(self, chat: str) -> None:
        """A turn that both limits allow now (neither waits)."""
        await self._budget.acquire()
        await self._chats.wait(chat)
        self._served[chat] = time.monotonic()
