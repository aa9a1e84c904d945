"""Per-chat pacing: chat platforms allow about one message a second per chat, sustained,
with short bursts (a split reply, a prompt right after a reply) accepted."""
from __future__ import annotations

from aiolimiter import AsyncLimiter
from cachetools import LRUCache


class ChatPacer:
    def __init__(self, burst: int = 3, per_seconds: float | None = None,
                 remember: int = 10_000) -> None:
        self.burst = burst
        self.per_seconds = per_seconds if per_seconds is not None else float(burst)
        # chats kept; the least recently used is forgotten first
        self._limits: LRUCache[str, AsyncLimiter] = LRUCache(remember)

    async def wait(self, chat: str) -> None:
        """Returns when one more message may go to chat."""
        limiter = self._limits.get(chat)
        if limiter is None:
            limiter = self._limits[chat] = AsyncLimiter(self.burst, self.per_seconds)
        await limiter.acquire()
