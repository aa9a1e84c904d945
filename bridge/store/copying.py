"""`helpdesk-bridge db copy`: everything one database holds, copied into another (SQLite to
PostgreSQL when a deployment outgrows one process; docs/postgresql.md, "Moving from
SQLite").

Customers keep their session ids, so the helpdesk still knows them and their open
conversations go on; queued rows stay queued, for the daemon that starts on the copy.
The copy is one transaction on the target: it lands whole or not at all. It refuses a
source that a daemon is using (rows would change under it) and a target that holds
anything, and counts every table on both sides afterwards.
"""
from __future__ import annotations

import json
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Table
from sqlalchemy.engine import make_url

from bridge.single_daemon import while_no_daemon
from bridge.store.driver import FLAGS, TIMES, Driver
from bridge.store.models import Base
from bridge.store.schema import upgrade
from bridge.store.store import Store

# Everything but the leases: those are the daemons' own, not data, and a daemon on the
# target takes its shards afresh.
COPIED = [table for table in Base.metadata.sorted_tables if table.name != "leases"]
BATCH = 1000
_JSON = {column.name for table in COPIED for column in table.columns
         if isinstance(column.type, JSON)}


class CopyRefused(Exception):
    """The copy did not start, or was undone: the message says why."""


def describe(url: str) -> str:
    """A database as an operator knows it, without its password: 'postgresql bridge'."""
    parsed = make_url(url)
    return f"{parsed.get_backend_name()} {parsed.database or ''}".strip()


async def copy_database(source_url: str, target_url: str,
                        sessions_prefix: str) -> dict[str, int]:
    """Copy every row; the rows per table, the same on both sides. sessions_prefix: how a
    live daemon names its PostgreSQL session (bridge/shards.py)."""
    source_parsed = make_url(source_url)
    if source_parsed == make_url(target_url):
        raise CopyRefused("the source and the target are the same database")
    if source_parsed.get_backend_name() == "sqlite" and not Path(
            source_parsed.database or "").is_file():
        raise CopyRefused(f"there is no SQLite database at {source_parsed.database}")
    async with AsyncExitStack() as stack:
        source, target = Store.from_url(source_url), Store.from_url(target_url)
        stack.push_async_callback(source.close)
        stack.push_async_callback(target.close)
        for url, store, which in ((source_url, source, "source"), (target_url, target,
                                                                   "target")):
            # held through the copy: no daemon starts on either meanwhile
            if not await stack.enter_async_context(
                    while_no_daemon(url, partial(store.sessions, sessions_prefix))):
                raise CopyRefused(f"a daemon is running on the {which} database: stop it "
                                  "first, so that nothing changes while it is copied")
        await upgrade(source.engine)  # the rows as this version reads them
        await upgrade(target.engine)
        for table in COPIED:
            if await _count(target._db, table):
                raise CopyRefused(f"the target database is not empty (its {table.name} "
                                  "has rows): copy into an empty database only")
        async with target._db.transaction() as transaction:
            for table in COPIED:
                await _copy_table(source._db, target._db, transaction, table)
            if target._db.dialect == "postgresql":
                for table in COPIED:
                    if "id" in table.primary_key.columns and len(table.primary_key.columns) == 1:
                        await transaction.run(_NEXT_ID.format(table=table.name))
        counts = {}
        for table in COPIED:
            copied, held = await _count(source._db, table), await _count(target._db, table)
            if copied != held:
                raise CopyRefused(f"{table.name}: {held} rows in the target, {copied} in the "
                                  "source; the source changed during the copy?")
            counts[table.name] = held
        return counts


# New rows on the target continue after the copied ids.
_NEXT_ID = ("SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            "coalesce(max(id), 1), max(id) IS NOT NULL) FROM {table}")


async def _count(driver: Driver, table: Table) -> int:
    return (await driver.read(f"SELECT count(*) FROM {table.name}"))[0]


async def _copy_table(source: Driver, target: Driver, transaction, table: Table) -> None:
    names = [column.name for column in table.columns]
    key = ", ".join(column.name for column in table.primary_key.columns)
    select = (f"SELECT {', '.join(names)} FROM {table.name} ORDER BY {key} "
              "LIMIT ? OFFSET ?")
    insert = (f"INSERT INTO {table.name} ({', '.join(names)}) "
              f"VALUES ({', '.join('?' * len(names))})")
    offset = 0
    while rows := await source.read_all(select, BATCH, offset):
        for row in rows:
            await transaction.run(insert, *(_convert(source, target, name, value)
                                            for name, value in zip(names, row)))
        offset += len(rows)


def _convert(source: Driver, target: Driver, name: str, value: Any) -> Any:
    """A value as the source stores it, as the target stores it."""
    if value is None:
        return None
    if name in TIMES:
        return target.from_time(source.to_time(value))
    if name in FLAGS:
        return bool(value)
    if name in _JSON and not isinstance(value, str):
        return json.dumps(value)
    return value
