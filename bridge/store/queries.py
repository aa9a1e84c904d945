"""What every part of the Store shares: the driver, the customer rows kept between reads,
and the two ways to write (one statement, or a transaction), which drop a changed
customer row from that cache."""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Protocol, Sequence

from bridge.store.customer_cache import CustomerCache
from bridge.store.driver import TIMES, Driver, Transaction, column_list, columns, model
from bridge.store.models import Conversation, Customer, ToCustomer, ToHelpdesk

OPEN_STATES = ("opening", "open")
IS_OPEN = f"state IN {OPEN_STATES!r}"

CUSTOMER = columns(Customer)
CONVERSATION = columns(Conversation)
TO_HELPDESK = columns(ToHelpdesk)
TO_CUSTOMER = columns(ToCustomer)
SELECT_CONVERSATION = f"SELECT {column_list(CONVERSATION)} FROM conversations"
# The lease (name, holder, epoch) of a customer's shard, still this daemon's and unexpired.
FENCE = ("EXISTS (SELECT 1 FROM leases WHERE name = ? AND holder = ? AND epoch = ? "
         "AND expires_at > now())")


class LeaseLost(Exception):
    """This daemon does not hold a customer's shard: it must not act for them."""


class Leases(Protocol):
    """The shards a daemon holds (bridge/shards.py)."""

    def shard_of(self, customer_id: int) -> int:
        """The shard a customer belongs to."""

    def token(self, shard: int) -> tuple[str, str, int]:
        """(name, holder, epoch) of a shard's lease, as the leases table holds it."""

    def check(self, shard: int) -> None:
        """LeaseLost unless this daemon surely holds the shard, by its own clock."""


class Queries:
    def __init__(self, driver: Driver) -> None:
        self._db = driver
        self._customers = CustomerCache()
        self._leases: Leases | None = None

    def fence(self, leases: Leases | None) -> None:
        """Make the queues' claims and finishes check the lease of the customer's shard in
        the same statement: a daemon that does not hold it claims nothing and finishes
        nothing (LeaseLost). None: unfenced, one daemon per database."""
        self._leases = leases

    def shard_of(self, customer_id: int) -> int:
        """The customer's shard (0 unfenced: one daemon works every customer)."""
        return 0 if self._leases is None else self._leases.shard_of(customer_id)

    def check_fence(self, customer_id: int) -> None:
        """Called before anything is sent for a customer: LeaseLost unless this daemon
        holds their shard (never, unfenced)."""
        if self._leases is not None:
            self._leases.check(self.shard_of(customer_id))

    def _token(self, shard: int) -> tuple[str, str, int] | None:
        """The FENCE values for a shard; None, unfenced."""
        return None if self._leases is None else self._leases.token(shard)

    async def _finish(self, run, plain: str, fenced: str, *values: Any, shard: int) -> None:
        """A finishing statement, fenced when the Store is: `fenced` is `plain` with the
        check of the shard's lease and RETURNING id (run: the driver's write, or a
        transaction's row)."""
        token = self._token(shard)
        if token is None:
            await run(plain, *values)
        elif await run(fenced, *values, *token) is None:
            raise LeaseLost("the shard's lease was lost: the row stays as it was")

    def forget_cached_customers(self) -> None:
        """Customers another daemon may have changed (their shards were its)."""
        self._customers.clear()

    async def _write(self, sql: str, *values: Any,
                     changes_customer: int | None = None) -> tuple | None:
        """One statement, committed by itself; its first row, if it returns any."""
        try:
            return await self._db.write(sql, *values)
        finally:
            if changes_customer is not None:
                self._customers.changed(changes_customer)

    @asynccontextmanager
    async def _transaction(self, changes_customer: int | None = None
                           ) -> AsyncIterator[Transaction]:
        """Committed on exit, rolled back on an exception. A transaction that may change a
        customer row names it: once it ends, the cached row is dropped (and a read that
        started before it cannot put the old row back)."""
        try:
            async with self._db.transaction() as transaction:
                yield transaction
        finally:
            if changes_customer is not None:
                self._customers.changed(changes_customer)

    async def _update(self, model_class: type, row_id: int, fields: dict[str, Any],
                      changes_customer: int | None = None) -> None:
        """Set some columns of one row."""
        known = columns(model_class)
        unknown = set(fields) - set(known)
        if unknown:
            raise ValueError(f"{model_class.__name__} has no column {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        values = [self._db.from_time(value) if name in TIMES and value is not None else value
                  for name, value in fields.items()]
        await self._write(f"UPDATE {model_class.__tablename__} SET {assignments} WHERE id = ?",
                          *values, row_id, changes_customer=changes_customer)

    def _conversation(self, found: Sequence[Any] | None) -> Conversation | None:
        return model(Conversation, CONVERSATION, found, self._db) if found else None

    def _to_customer(self, found: Sequence[Any] | None) -> ToCustomer | None:
        return model(ToCustomer, TO_CUSTOMER, found, self._db) if found else None
