"""Per-chat pacing: chat platforms allow about one message a second per chat, sustained,
with short bursts (a split reply, a prompt right after a reply) accepted."""
from __future__ import annotations

from collections import OrderedDict

from aiolimiter import AsyncLimiter


class ChatPacer:
    def __init__(self, burst: int = 3, per_seconds: float | None = None,
                 remember: int = 10_000) -> None:
        self.burst = burst
        self.per_seconds = per_seconds if per_seconds is not None else float(burst)
        self.remember = remember  # chats kept; the least recently used is forgotten first
        self._limits: OrderedDict[str, AsyncLimiter] = OrderedDict()

    async def wait(self, chat: str) -> None:
        """Returns when one more message may go to chat."""
        limiter = self._limits.pop(chat, None) or AsyncLimiter(self.burst, self.per_seconds)
        self._limits[chat] = limiter  # most recently used last
        if len(self._limits) > self.remember:
            self._limits.popitem(last=False)
        await limiter.acquire()
