"""Pacing per key (a chat, a customer): a burst at once, then a steady pace. Chat platforms
allow about one message a second per chat, sustained, with short bursts (a split reply, a
prompt right after a reply) accepted; one customer's messages reach the helpdesk at most
[limits] messages_per_minute."""
from __future__ import annotations

from typing import Hashable

from aiolimiter import AsyncLimiter
from cachetools import LRUCache


class Pacer:
    def __init__(self, burst: float = 3, per_seconds: float | None = None,
                 remember: int = 10_000) -> None:
        """burst at once, then burst per per_seconds (default: one a second)."""
        self.burst = burst
        self.per_seconds = per_seconds if per_seconds is not None else float(burst)
        # keys kept; the least recently used is forgotten first
        self._limits: LRUCache[Hashable, AsyncLimiter] = LRUCache(remember)

    def _limit(self, key: Hashable) -> AsyncLimiter:
        limiter = self._limits.get(key)
        if limiter is None:
            limiter = self._limits[key] = AsyncLimiter(self.burst, self.per_seconds)
        return limiter

    def ready(self, key: Hashable) -> bool:
        """One more may go for key now, without waiting."""
        return self._limit(key).has_capacity()

    async def wait(self, key: Hashable) -> None:
        """Returns when one more may go for key (at once when ready)."""
        await self._limit(key).acquire()
