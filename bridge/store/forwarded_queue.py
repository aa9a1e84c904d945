"""Inbound events a daemon received for a customer whose shard another daemon holds
(PostgreSQL; bridge/forwarding.py): each stored with its shard and a NOTIFY naming that
shard, in one statement (the NOTIFY goes out when the row is committed, and only the
shard's holder looks), and handled by the holder oldest first."""
from __future__ import annotations

import json

from bridge.store.models import utcnow
from bridge.store.queries import FENCE, Queries

CHANNEL = "helpdesk_bridge_forwarded"
_INSERT = "INSERT INTO forwarded (event, received_at, shard) VALUES (?, ?, ?) RETURNING id"
# One round trip where a transaction of the two would take four.
_INSERT_AND_NOTIFY = (f"WITH stored AS ({_INSERT}, shard) "
                      f"SELECT id, pg_notify('{CHANNEL}', shard::text) FROM stored")
_STILL_STORED = "SELECT 1 FROM forwarded WHERE id = ?"
_OLDEST = "SELECT id, event, shard FROM forwarded WHERE shard IN ({shards}) ORDER BY id LIMIT ?"
_FINISH = "DELETE FROM forwarded WHERE id = ?"
_FINISH_FENCED = f"{_FINISH} AND {FENCE} RETURNING id"


class ForwardedQueue(Queries):
    async def forward(self, event: dict, shard: int) -> int:
        """Store an event for the daemon holding its customer's shard, and wake it (the
        NOTIFY's payload is the shard): its row id."""
        # SQLite has one daemon: none to wake (it looks every few seconds)
        sql = _INSERT_AND_NOTIFY if self._db.dialect == "postgresql" else _INSERT
        return (await self._db.write(sql, json.dumps(event), self._db.from_time(utcnow()),
                                     shard))[0]

    async def still_forwarded(self, row_id: int) -> bool:
        """The stored event waits to be handled."""
        return await self._db.read(_STILL_STORED, row_id) is not None

    async def oldest_forwarded(self, shards: list[int], limit: int
                               ) -> list[tuple[int, dict, int]]:
        """(id, event, shard) of the oldest stored events of these shards."""
        if not shards:
            return []
        sql = _OLDEST.format(shards=", ".join("?" * len(shards)))
        return [(row_id, json.loads(event) if isinstance(event, str) else event, shard)
                for row_id, event, shard in await self._db.read_all(sql, *shards, limit)]

    async def finish_forwarded(self, row_id: int, shard: int) -> None:
        """The event was handled: drop it (LeaseLost, and it stays, once a fenced Store has
        lost the shard)."""
        await self._finish(self._db.write, _FINISH, _FINISH_FENCED, row_id, shard=shard)
