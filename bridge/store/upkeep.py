"""Reads and writes over all customers at once: what a restart resumes, what the metrics
count, and the pruning of old rows."""
from __future__ import annotations

import asyncio
from datetime import datetime

from bridge.store.queries import IS_OPEN, Queries

_ROOMS = ("SELECT u.id, u.session_id, c.ticket_chat_id FROM customers u "
          f"JOIN conversations c ON c.customer_id = u.id WHERE c.{IS_OPEN}")
_WITH_WORK = "SELECT DISTINCT customer_id FROM {table} WHERE status = 'queued'"
_WAITING = "SELECT count(*), min(created_at) FROM {table} WHERE status = 'queued'"
_FORWARDED = "SELECT count(*), min(received_at) FROM forwarded"
_CUSTOMERS = "SELECT count(*) FROM customers"
_OPEN = f"SELECT count(*) FROM conversations WHERE {IS_OPEN}"
_SESSIONS = ("SELECT application_name FROM pg_stat_activity "
             "WHERE datname = current_database() AND application_name LIKE ?")
_SHARD_HOLDERS = ("SELECT name, holder FROM leases WHERE name LIKE 'shard:%' "
                  "AND expires_at > now()")

# Oldest first, a batch at a time. A message whose buttons a conversation still waits on
# (its prompt_ref) is kept whatever its age: the edit that settles the prompt needs it.
_PRUNE_TO_HELPDESK = ("DELETE FROM to_helpdesk WHERE id IN (SELECT id FROM to_helpdesk "
                      "WHERE status <> 'queued' AND done_at < ? ORDER BY id LIMIT ?) "
                      "RETURNING id")
_PRUNE_TO_CUSTOMER = ("DELETE FROM to_customer WHERE id IN (SELECT id FROM to_customer "
                      "WHERE status <> 'queued' AND delivered_at < ? "
                      "AND CAST(id AS VARCHAR) NOT IN (SELECT prompt_ref FROM conversations "
                      "WHERE prompt IS NOT NULL AND prompt_ref IS NOT NULL) "
                      "ORDER BY id LIMIT ?) RETURNING id")


class Upkeep(Queries):
    async def open_conversation_rooms(self) -> list[tuple[int, str, str | None]]:
        """(customer id, session_id, ticket_chat_id) of every conversation opening or
        open."""
        return [tuple(found) for found in await self._db.read_all(_ROOMS)]

    async def customers_with_work(self) -> tuple[list[int], list[int]]:
        """Customers with queued rows: (to the helpdesk, to the customer). For restarts."""
        up, down = [[found[0] for found in await self._db.read_all(
            _WITH_WORK.format(table=table))] for table in ("to_helpdesk", "to_customer")]
        return up, down

    async def stats(self) -> dict:
        """For the metrics: rows waiting and the oldest one's time, per direction (and the
        events forwarded to the working daemon); customers; conversations open."""
        result = {}
        for direction in ("to_helpdesk", "to_customer"):
            count, oldest = await self._db.read(_WAITING.format(table=direction))
            result[direction] = (count, self._db.to_time(oldest) if oldest else None)
        count, oldest = await self._db.read(_FORWARDED)
        result["forwarded"] = (count, self._db.to_time(oldest) if oldest else None)
        result["customers"] = (await self._db.read(_CUSTOMERS))[0]
        result["open_conversations"] = (await self._db.read(_OPEN))[0]
        return result

    async def shard_holders(self) -> dict[int, str]:
        """Shard -> the daemon holding its lease now (PostgreSQL; bridge/shards.py)."""
        if self._db.dialect != "postgresql":
            return {}
        return {int(name.split(":")[1]): holder
                for name, holder in await self._db.read_all(_SHARD_HOLDERS)}

    async def sessions(self, prefix: str) -> list[str]:
        """The names of the live sessions (PostgreSQL) whose name starts with prefix."""
        if self._db.dialect != "postgresql":
            return []
        rows = await self._db.read_all(_SESSIONS, prefix + "%")
        return sorted(found[0][len(prefix):] for found in rows)

    async def prune(self, finished_before: datetime, batch: int = 1000) -> tuple[int, int]:
        """Delete queue rows finished (done, delivered, failed) before a moment: (to the
        helpdesk, to customers) deleted. In batches, each its own statement, so a backlog
        of millions never holds SQLite's one writer for long. A row still queued is kept
        whatever its age."""
        before = self._db.from_time(finished_before)
        counts = []
        for statement in (_PRUNE_TO_HELPDESK, _PRUNE_TO_CUSTOMER):
            total = 0
            while True:
                deleted = len(await self._db.write_all(statement, before, batch))
                total += deleted
                if deleted < batch:
                    break
                await asyncio.sleep(0)  # let the relay's own writes in between batches
            counts.append(total)
        return counts[0], counts[1]
