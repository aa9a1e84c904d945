"""Customer rows kept between reads.

Every relayed message reads its customer three or four times (on arrival, in each
direction's queue, for the helpdesk's answer), and a customer row changes rarely: only
through Store methods, which drop it from here. Each read saved is a database round trip
(~1.5 ms through aiosqlite). Correct while one daemon works a customer: with several, the one
holding the customer's shard (bridge/shards.py), which forgets the rows of shards it takes.
"""
from __future__ import annotations

from cachetools import LRUCache

from bridge.store.models import Customer

SIZE = 10_000


class CustomerCache:
    def __init__(self, size: int = SIZE) -> None:
        self._rows: LRUCache[int, Customer] = LRUCache(size)
        self._ids: LRUCache[tuple[str, str, str], int] = LRUCache(size)
        # Bumped by every change: a read that started before a change must not put back
        # the row as it was (it may have read it before the change committed).
        self.generation = 0

    def get(self, customer_id: int) -> Customer | None:
        return self._rows.get(customer_id)

    def id_of(self, platform: str, account: str, user_id: str) -> int | None:
        return self._ids.get((platform, account, user_id))

    def put(self, row: Customer, read_at_generation: int) -> None:
        """Keep a row read while the generation was `read_at_generation`."""
        if read_at_generation != self.generation:
            return
        self._rows[row.id] = row
        self._ids[(row.platform, row.account, row.user_id)] = row.id  # never changes

    def changed(self, customer_id: int) -> None:
        """The row is being written: forget it (called before the write commits, and the
        generation keeps reads in flight from restoring the old row)."""
        self.generation += 1
        self._rows.pop(customer_id, None)

    def erased(self, row: Customer) -> None:
        """The customer's row is gone: a message from them makes a new one."""
        self.changed(row.id)
        self._ids.pop((row.platform, row.account, row.user_id), None)

    def clear(self) -> None:
        self.generation += 1
        self._rows.clear()
