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
# The lease (name, holder, epoch) this daemon works under, still its own and unexpired.
FENCE = ("EXISTS (SELECT 1 FROM leases WHERE name = ? AND holder = ? AND epoch = ? "
         "AND expires_at > now())")


class LeaseLost(Exception):
    """This daemon no longer holds the lease: it must not act for the customers any more."""


class Lease(Protocol):
    """The lease a daemon works under (bridge/leadership.py)."""
    token: tuple[str, str, int]  # (name, holder, epoch), as the leases table holds it

    def check(self) -> None:
        """LeaseLost once the lease may have expired, by this daemon's own clock."""


class Queries:
    def __init__(self, driver: Driver) -> None:
        self._db = driver
        self._customers = CustomerCache()
        self._lease: Lease | None = None
        self._fence: tuple[str, str, int] | None = None  # the lease's token, while fenced

    def fence(self, lease: Lease | None) -> None:
        """Make the queues' claims and finishes check this lease's token in the same
        statement: a daemon that lost it claims nothing and finishes nothing (LeaseLost).
        None: unfenced, one daemon per database."""
        self._lease = lease
        self._fence = lease.token if lease is not None else None

    def check_fence(self) -> None:
        """Called before anything is sent for a customer: LeaseLost once this daemon's
        lease may have expired (and never, unfenced)."""
        if self._lease is not None:
            self._lease.check()

    async def _finish(self, run, plain: str, fenced: str, *values: Any) -> None:
        """A finishing statement, fenced when the Store is: `fenced` is `plain` with the
        lease's check and RETURNING id (run: the driver's write, or a transaction's row)."""
        if self._fence is None:
            await run(plain, *values)
        elif await run(fenced, *values, *self._fence) is None:
            raise LeaseLost("the lease was lost: the row stays as it was")

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
