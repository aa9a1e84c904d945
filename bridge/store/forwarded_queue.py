"""Inbound events a daemon received while another works the customers (PostgreSQL;
bridge/forwarding.py): each stored with a NOTIFY in one transaction, so the working daemon
wakes once the row is there, and handled by it oldest first."""
from __future__ import annotations

import json

from bridge.store.models import utcnow
from bridge.store.queries import FENCE, Queries

CHANNEL = "helpdesk_bridge_forwarded"
_INSERT = "INSERT INTO forwarded (event, received_at) VALUES (?, ?)"
_NOTIFY = f"SELECT pg_notify('{CHANNEL}', '')"
_OLDEST = "SELECT id, event FROM forwarded ORDER BY id LIMIT ?"
_FINISH = "DELETE FROM forwarded WHERE id = ?"
_FINISH_FENCED = f"{_FINISH} AND {FENCE} RETURNING id"


class ForwardedQueue(Queries):
    async def forward(self, event: dict) -> None:
        """Store an event for the daemon that works the customers, and wake it."""
        async with self._transaction() as transaction:
            await transaction.run(_INSERT, json.dumps(event), self._db.from_time(utcnow()))
            if self._db.dialect == "postgresql":  # SQLite has one daemon: none to wake
                await transaction.run(_NOTIFY)

    async def oldest_forwarded(self, limit: int) -> list[tuple[int, dict]]:
        """(id, event) of the oldest stored events."""
        return [(row_id, json.loads(event) if isinstance(event, str) else event)
                for row_id, event in await self._db.read_all(_OLDEST, limit)]

    async def finish_forwarded(self, row_id: int) -> None:
        """The event was handled: drop it (LeaseLost, and it stays, once a fenced Store has
        lost its lease)."""
        await self._finish(self._db.write, _FINISH, _FINISH_FENCED, row_id)
