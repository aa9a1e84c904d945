"""The queue to customers: what the helpdesk said, and the bridge's own notices, each kept
until the platform has accepted it, shown oldest first per customer."""
from __future__ import annotations

import json

from bridge.store.driver import Duplicate, column_list
from bridge.store.models import ToCustomer, utcnow
from bridge.store.queries import FENCE, TO_CUSTOMER, Queries

_INSERT = ("INSERT INTO to_customer (customer_id, conversation_id, body, dedupe_key, status, "
           "attempts, created_at) VALUES (?, ?, ?, ?, 'queued', 0, ?) RETURNING id")
_NEXT_WHERE = (f"SELECT {column_list(TO_CUSTOMER)} FROM to_customer "
               "WHERE customer_id = ? AND status = 'queued'")
_NEXT = f"{_NEXT_WHERE} ORDER BY id LIMIT 1"
_NEXT_FENCED = f"{_NEXT_WHERE} AND {FENCE} ORDER BY id LIMIT 1"
_FINISH = ("UPDATE to_customer SET status = ?, platform_ref = ?, error = ?, delivered_at = ?, "
           "attempts = attempts + 1 WHERE id = ?")
_FINISH_FENCED = f"{_FINISH} AND {FENCE} RETURNING id"
_REPLACE_BODY = "UPDATE to_customer SET body = ? WHERE id = ?"
_DELIVERED = "SELECT platform_ref, body FROM to_customer WHERE id = ?"


class CustomerQueue(Queries):
    async def enqueue_to_customer(self, customer_id: int, conversation_id: int | None,
                                  body: dict, dedupe_key: str | None = None) -> ToCustomer | None:
        """Queue something to show; None if dedupe_key was seen before (shown once)."""
        created_at = utcnow()
        try:
            new_id = (await self._db.write(_INSERT, customer_id, conversation_id,
                                           json.dumps(body), dedupe_key,
                                           self._db.from_time(created_at)))[0]
        except Duplicate:
            return None
        return ToCustomer(id=new_id, customer_id=customer_id, conversation_id=conversation_id,
                          body=body, dedupe_key=dedupe_key, status="queued", attempts=0,
                          platform_ref=None, error=None, created_at=created_at,
                          delivered_at=None)

    async def next_to_customer(self, customer_id: int) -> ToCustomer | None:
        """The oldest row to show (none once a fenced Store has lost the customer's shard)."""
        token = self._token(self.shard_of(customer_id))
        if token is None:
            return self._to_customer(await self._db.read(_NEXT, customer_id))
        return self._to_customer(await self._db.read(_NEXT_FENCED, customer_id, *token))

    async def finish_to_customer(self, row: ToCustomer, status: str,
                                 platform_ref: str | None = None,
                                 error: str | None = None) -> ToCustomer | None:
        """Mark a row delivered, failed or rejected (error: why), and return the customer's
        next one."""
        await self._finish(self._db.write, _FINISH, _FINISH_FENCED, status, platform_ref,
                           error, self._db.from_time(utcnow()), row.id,
                           shard=self.shard_of(row.customer_id))
        return await self.next_to_customer(row.customer_id)

    async def replace_body(self, row_id: int, body: dict) -> None:
        """Keep less of a row than was sent (a call invite's token, once delivered)."""
        await self._db.write(_REPLACE_BODY, json.dumps(body), row_id)

    async def delivered(self, row_id: int) -> tuple[str | None, dict | None]:
        """What became of a delivered row: the platform's ref to it, and what it said."""
        found = await self._db.read(_DELIVERED, row_id)
        if found is None:
            return None, None
        platform_ref, body = found
        return platform_ref, json.loads(body) if body is not None else None
