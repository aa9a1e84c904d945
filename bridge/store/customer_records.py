"""Everything the bridge holds about one customer, for an operator (bridge/customer_data.py):
found by how the platform knows them, listed, read whole."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from bridge.store.customer_rows import BY_USER, SELECT_CUSTOMER, CustomerRows
from bridge.store.driver import columns, model
from bridge.store.models import (
    Conversation,
    Customer,
    InSupportMode,
    ToCustomer,
    ToHelpdesk,
    utcnow,
)
from bridge.store.queries import CUSTOMER, IS_OPEN

_BY_PLATFORM_USER = f"{SELECT_CUSTOMER} WHERE platform = ? AND user_id = ? ORDER BY id"
_SUMMARIES = (f"SELECT {', '.join('u.' + name for name in CUSTOMER)}, "
              "count(c.id), "
              f"sum(CASE WHEN c.{IS_OPEN} THEN 1 ELSE 0 END), max(c.created_at) "
              "FROM customers u LEFT JOIN conversations c ON c.customer_id = u.id "
              f"GROUP BY {', '.join('u.' + name for name in CUSTOMER)} ORDER BY u.id "
              "LIMIT ? OFFSET ?")
_BODIES = "SELECT body FROM to_helpdesk WHERE customer_id = ?"
_REVOKE = "INSERT INTO revoked_files (path, revoked_at) VALUES (?, ?) ON CONFLICT DO NOTHING"
_REVOKED = "SELECT 1 FROM revoked_files WHERE path = ?"
_PRUNE_REVOKED = "DELETE FROM revoked_files WHERE revoked_at < ?"
_ERASE = ["DELETE FROM to_customer WHERE customer_id = ?",
          "DELETE FROM to_helpdesk WHERE customer_id = ?",
          "DELETE FROM conversations WHERE customer_id = ?"]
_ERASE_SUPPORT_MODE = "DELETE FROM support_mode WHERE platform = ? AND account = ? AND user_id = ?"
_ERASE_CUSTOMER = "DELETE FROM customers WHERE id = ?"
# No conversation open, and none closed (or begun) since then.
_IDLE_SINCE = ("SELECT u.id FROM customers u WHERE u.created_at < ? AND NOT EXISTS ("
               "SELECT 1 FROM conversations c WHERE c.customer_id = u.id "
               f"AND (c.{IS_OPEN} OR c.closed_at >= ? OR c.created_at >= ?)) "
               "ORDER BY u.id LIMIT ?")
# What a customer's rows are, table by table (support_mode is keyed by the chat user).
_OWN_ROWS = {
    "conversations": (Conversation, "customer_id = ?"),
    "to_helpdesk": (ToHelpdesk, "customer_id = ?"),
    "to_customer": (ToCustomer, "customer_id = ?"),
}


class CustomerRecords(CustomerRows):
    async def customers_named(self, platform: str, user_id: str,
                              account: str | None = None) -> list[Customer]:
        """The customers a platform's user id names (of one bot or workspace, if given)."""
        if account is None:
            found = await self._db.read_all(_BY_PLATFORM_USER, platform, user_id)
        else:
            found = await self._db.read_all(BY_USER, platform, account, user_id)
        return [self._customer(row) for row in found]

    async def customer_summaries(self, limit: int, offset: int = 0
                                 ) -> list[tuple[Customer, int, int, Any]]:
        """(customer, conversations, open ones, when the latest began), by id."""
        rows = await self._db.read_all(_SUMMARIES, limit, offset)
        split = len(CUSTOMER)
        return [(self._customer(row[:split]), row[split], row[split + 1] or 0,
                 self._db.to_time(row[split + 2]) if row[split + 2] is not None else None)
                for row in rows]

    async def rows_of_customer(self, customer: Customer) -> dict[str, list[dict[str, Any]]]:
        """Every row the database holds about the customer, as plain values by column."""
        found = {"customers": [_plain(CUSTOMER, [getattr(customer, n) for n in CUSTOMER])]}
        for table, (model_class, where) in _OWN_ROWS.items():
            names = columns(model_class)
            rows = await self._db.read_all(
                f"SELECT {', '.join(names)} FROM {table} WHERE {where} ORDER BY id",
                customer.id)
            found[table] = [self._plain(model_class, names, row) for row in rows]
        names = columns(InSupportMode)
        rows = await self._db.read_all(
            f"SELECT {', '.join(names)} FROM support_mode "
            "WHERE platform = ? AND account = ? AND user_id = ?",
            customer.platform, customer.account, customer.user_id)
        found["support_mode"] = [self._plain(InSupportMode, names, row) for row in rows]
        return found

    def _plain(self, model_class: type, names, row) -> dict[str, Any]:
        """A row as the database holds it, as JSON values (times as ISO 8601 text)."""
        read = model(model_class, names, row, self._db)
        return _plain(names, [getattr(read, name) for name in names])

    async def erase_customer(self, customer: Customer) -> None:
        """Delete every row about the customer, in one transaction, and stop serving the
        files they sent (revoked_files)."""
        paths = set()
        for (body,) in await self._db.read_all(_BODIES, customer.id):
            attachment = (json.loads(body) if isinstance(body, str) else body).get("attachment")
            for sent in attachment if isinstance(attachment, list) else [attachment]:
                if isinstance(sent, dict) and isinstance(sent.get("url"), str):
                    paths.add(unquote(urlsplit(sent["url"]).path))
        async with self._transaction(changes_customer=customer.id) as transaction:
            for path in sorted(paths):
                await transaction.run(_REVOKE, path, self._db.from_time(utcnow()))
            for statement in _ERASE:
                await transaction.run(statement, customer.id)
            await transaction.run(_ERASE_SUPPORT_MODE, customer.platform, customer.account,
                                  customer.user_id)
            await transaction.run(_ERASE_CUSTOMER, customer.id)
        self._customers.erased(customer)

    async def file_revoked(self, path: str) -> bool:
        """The file at this path (as served, unquoted) belonged to a forgotten customer."""
        return await self._db.read(_REVOKED, path) is not None

    async def prune_revoked_files(self, before: datetime) -> None:
        """Revoked links old enough to have expired anyway."""
        await self._db.write(_PRUNE_REVOKED, self._db.from_time(before))

    async def idle_customers(self, since: datetime, limit: int = 500) -> list[int]:
        """Customers with no conversation open and none begun or closed since then."""
        moment = self._db.from_time(since)
        return [found[0] for found in await self._db.read_all(_IDLE_SINCE, moment, moment,
                                                               moment, limit)]


def _plain(names, values) -> dict[str, Any]:
    """Column -> value, times as ISO 8601 text: what JSON can hold."""
    return {name: value.isoformat() if hasattr(value, "isoformat") else value
            for name, value in zip(names, values)}
