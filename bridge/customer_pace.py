"""One customer's messages reach the helpdesk at most `[limits] messages_per_minute` (with a
short burst): beyond that they stay queued, in order, and go at that pace, and the customer
is told once that they will arrive shortly. A script or an angry customer then cannot crowd
out everyone else (docs/customers.md, "Fair to every customer")."""
from __future__ import annotations

from aiolimiter import AsyncLimiter
from cachetools import LRUCache

REMEMBERED = 10_000  # customers whose pace is kept (the least recent forgotten first)
BURST_SECONDS = 10   # the burst: this many seconds' worth of the pace at once


class CustomerPace:
    def __init__(self, per_minute: float) -> None:
        """per_minute: 0, no limit."""
        self.per_minute = per_minute
        self._limits: LRUCache[int, AsyncLimiter] = LRUCache(REMEMBERED)

    def _limit(self, customer_id: int) -> AsyncLimiter:
        limit = self._limits.get(customer_id)
        if limit is None:
            burst = max(1.0, self.per_minute * BURST_SECONDS / 60)
            limit = self._limits[customer_id] = AsyncLimiter(burst, BURST_SECONDS)
        return limit

    def would_wait(self, customer_id: int) -> bool:
        """The customer's next message would wait for the pace."""
        return bool(self.per_minute) and not self._limit(customer_id).has_capacity()

    async def wait(self, customer_id: int) -> None:
        """Returns when the customer's next message may go."""
        if self.per_minute:
            await self._limit(customer_id).acquire()
