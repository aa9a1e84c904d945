"""The database driver itself (asyncpg, or sqlite3 and aiosqlite): every query the Store
runs goes through here, one pool per database.

Why not SQLAlchemy's async ORM or Core: every relayed message runs about ten statements in
four transactions, and through the ORM a one-row insert cost ~1.5 ms of CPU and a one-row
read ~0.5 ms (session, unit of work, pool events, greenlet switches); on the driver itself
~0.3 and ~0.1 ms. The bridge relays on one core, so that was most of its CPU per message
(bench/RESULTS.md). SQLAlchemy keeps the schema: the models are what Alembic migrates, and
the statements (written beside the Store method that runs each) read and write their
columns, turned back into model objects by `model`.
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import sqlite3
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, AsyncIterator, Sequence

import aiosqlite
import asyncpg
from sqlalchemy import Boolean, DateTime
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.store.models import Base

log = logging.getLogger(__name__)

_COLUMNS = [column for table in Base.metadata.tables.values() for column in table.columns]
TIMES = {column.name for column in _COLUMNS if isinstance(column.type, DateTime)}
FLAGS = {column.name for column in _COLUMNS if isinstance(column.type, Boolean)}


class Duplicate(Exception):
    """A unique key (a dedupe key) was already taken: the row exists."""


class Driver:
    """One database, as the Store needs it. Statements are written with `?` placeholders;
    values go in as the database stores them (JSON as text, times through from_time), and
    `model` reads rows back."""

    dialect = ""

    async def read(self, sql: str, *values: Any) -> tuple | None:
        """The first row of one statement, outside any transaction."""
        return _first(await self.read_all(sql, *values))

    async def read_all(self, sql: str, *values: Any) -> list[tuple]:
        raise NotImplementedError

    async def write(self, sql: str, *values: Any) -> tuple | None:
        """One statement committed on its own (one round trip, where BEGIN and COMMIT
        would make three); its first row, if it returns any (RETURNING)."""
        return _first(await self.write_all(sql, *values))

    async def write_all(self, sql: str, *values: Any) -> list[tuple]:
        raise NotImplementedError

    def transaction(self) -> Any:
        """An async context manager giving a Transaction: committed on exit, rolled back
        on an exception."""
        raise NotImplementedError

    def to_time(self, value: Any) -> datetime | None:
        return value

    def from_time(self, value: datetime) -> Any:
        return value

    def connections(self) -> int:
        return 0

    async def dedicated(self, name: str) -> Any:
        raise NotImplementedError("a dedicated connection is for PostgreSQL")

    async def close(self) -> None:
        pass


class Transaction:
    async def row(self, sql: str, *values: Any) -> tuple | None:
        raise NotImplementedError

    async def run(self, sql: str, *values: Any) -> None:
        raise NotImplementedError


# --- PostgreSQL ----------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)  # the statements are a few constants
def _numbered(sql: str) -> str:
    """`?` placeholders as asyncpg's `$1, $2, ...`."""
    counter = iter(range(1, 1000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


class PostgresTransaction(Transaction):
    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def row(self, sql: str, *values: Any) -> tuple | None:
        return await self._connection.fetchrow(_numbered(sql), *values)

    async def run(self, sql: str, *values: Any) -> None:
        await self._connection.execute(_numbered(sql), *values)


async def _session_as_it_was(_connection: asyncpg.Connection) -> None:
    """A connection goes back to the pool as it is: these statements change no session
    state (no SET, LISTEN, cursors or advisory locks), and asyncpg's default reset costs a
    round trip per use. (An open transaction is still rolled back, by the pool itself.)"""


class PostgresDriver(Driver):
    dialect = "postgresql"
    # An idle connection is closed after this long, so one left over from before a database
    # restart is never handed out (as the engine's ping after 5 s idle does, without a trip).
    IDLE_LIFETIME = 5.0

    def __init__(self, engine: AsyncEngine) -> None:
        # asyncpg's arguments as the engine makes them from the URL (`?ssl=require` and the
        # like included), less the two that only SQLAlchemy's adapter takes
        _, self._connect = engine.dialect.create_connect_args(engine.url)
        for adapter_only in ("prepared_statement_cache_size", "prepared_statement_name_func"):
            self._connect.pop(adapter_only, None)
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None

    async def _connections(self) -> asyncpg.Pool:
        if self._pool is None:
            self._opening = self._opening or asyncio.Lock()
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        min_size=0, max_size=10, reset=_session_as_it_was,
                        max_inactive_connection_lifetime=self.IDLE_LIFETIME, **self._connect)
        return self._pool

    async def read(self, sql: str, *values: Any) -> tuple | None:
        return await (await self._connections()).fetchrow(_numbered(sql), *values)

    async def read_all(self, sql: str, *values: Any) -> list[tuple]:
        return await (await self._connections()).fetch(_numbered(sql), *values)

    async def write(self, sql: str, *values: Any) -> tuple | None:
        try:
            return await self.read(sql, *values)  # outside a transaction: it commits alone
        except asyncpg.UniqueViolationError as error:
            raise Duplicate() from error

    async def write_all(self, sql: str, *values: Any) -> list[tuple]:
        try:
            return await self.read_all(sql, *values)
        except asyncpg.UniqueViolationError as error:
            raise Duplicate() from error

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with (await self._connections()).acquire() as connection:
            try:
                async with connection.transaction():
                    yield PostgresTransaction(connection)
            except asyncpg.UniqueViolationError as error:
                raise Duplicate() from error

    def connections(self) -> int:
        return self._pool.get_size() if self._pool is not None else 0

    async def dedicated(self, name: str) -> asyncpg.Connection:
        """name: its application_name, which pg_stat_activity shows."""
        settings = {**self._connect.get("server_settings", {}), "application_name": name}
        return await asyncpg.connect(**{**self._connect, "server_settings": settings})

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


# --- SQLite --------------------------------------------------------------------------------

# How SQLAlchemy stores a DateTime in SQLite (UTC, no zone), so both read each other's rows.
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


class SqliteTransaction(Transaction):
    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection

    async def row(self, sql: str, *values: Any) -> tuple | None:
        return _first(await self._connection.execute_fetchall(sql, values))

    async def run(self, sql: str, *values: Any) -> None:
        await self._connection.execute(sql, values)


class SqliteDriver(Driver):
    dialect = "sqlite"
    """SQLite's one-statement reads and writes run right here in the event loop; its
    transactions, and whatever must wait for a lock, on connections with a thread each.

    Why in the loop: a read of a few indexed rows costs ~11 µs of CPU and a write ~6 µs
    (WAL, synchronous=NORMAL: a commit appends to the log, no fsync), the trip to a
    connection's thread ~95 µs (measured, bench/RESULTS.md), and the bridge relays on one
    core. It must never make the loop wait, so: these connections wait for no lock
    (timeout 0; in WAL mode a read needs none, and writes queue on `write_lock` first) and
    hand a statement SQLite calls busy to the threads, which may wait (another process
    writing, say); and they never checkpoint (which writes the log into the database and
    fsyncs): a thread does, after every CHECKPOINT_EVERY writes.

    Writes and transactions queue on `_write_lock`: SQLite has one writer at a time, and
    queueing here is fair and costs microseconds, where SQLite's busy handler sleeps in
    steps of up to 100 ms (one write took over a second with 20 customers at once)."""

    # writes: ~4 MB of log (a write adds a few 4 KB pages), as SQLite's own default
    CHECKPOINT_EVERY = 250
    # synchronous=NORMAL is still durable against a killed process (only a power cut can
    # lose the last commits) and spares an fsync per commit.
    PRAGMAS = ("synchronous=NORMAL", "foreign_keys=ON")

    def __init__(self, url: URL) -> None:
        self._path = url.database
        self._write_lock = asyncio.Lock()
        self._inline_reader: sqlite3.Connection | None = None
        self._inline_writer: sqlite3.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._writer: aiosqlite.Connection | None = None
        self._opening: asyncio.Lock | None = None
        self._writes_since_checkpoint = 0
        self._checkpoint: asyncio.Task | None = None

    async def _open(self) -> None:
        self._opening = self._opening or asyncio.Lock()
        async with self._opening:
            if self._writer is not None:
                return
            connections = []
            for _ in range(2):
                connection = await aiosqlite.connect(self._path, timeout=30, isolation_level=None)
                if not connections:
                    # WAL: readers don't block the writer. A property of the database file,
                    # kept once set, and setting it takes a lock: set once, here.
                    await connection.execute_fetchall("PRAGMA journal_mode=WAL")
                for pragma in self.PRAGMAS:
                    await connection.execute(f"PRAGMA {pragma}")
                connections.append(connection)
            self._reader, self._writer = connections
            self._inline_reader = sqlite3.connect(self._path, timeout=0, isolation_level=None)
            self._inline_reader.execute("PRAGMA query_only=ON")
            self._inline_writer = sqlite3.connect(self._path, timeout=0, isolation_level=None)
            for pragma in (*self.PRAGMAS, "wal_autocheckpoint=0"):
                self._inline_writer.execute(f"PRAGMA {pragma}")

    async def read_all(self, sql: str, *values: Any) -> list[tuple]:
        if self._reader is None:
            await self._open()
        try:
            return self._inline_reader.execute(sql, values).fetchall()
        except sqlite3.OperationalError as error:
            if not _busy(error):
                raise
        return list(await self._reader.execute_fetchall(sql, values))

    async def write_all(self, sql: str, *values: Any) -> list[tuple]:
        if self._writer is None:
            await self._open()
        async with self._write_lock:
            try:
                try:
                    # all rows: a statement not run to its end would keep its
                    # transaction (and SQLite's one write lock) open
                    found = self._inline_writer.execute(sql, values).fetchall()
                except sqlite3.OperationalError as error:
                    if not _busy(error):
                        raise
                    # nothing was written (autocommit: the statement is undone whole)
                    found = list(await self._writer.execute_fetchall(sql, values))
            except sqlite3.IntegrityError as error:
                raise _duplicate_or(error)
        self._written()
        return found

    def _written(self) -> None:
        self._writes_since_checkpoint += 1
        if self._writes_since_checkpoint >= self.CHECKPOINT_EVERY and self._checkpoint is None:
            self._writes_since_checkpoint = 0
            self._checkpoint = asyncio.create_task(self._run_checkpoint(),
                                                   name="sqlite-checkpoint")

    async def _run_checkpoint(self) -> None:
        """PASSIVE: copies what it can without waiting for anyone (on the reader's thread,
        which holds no transaction, so it never holds up a write)."""
        try:
            await self._reader.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as error:
            log.warning("SQLite checkpoint failed (%s); trying again later", error)
        finally:
            self._checkpoint = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        if self._writer is None:
            await self._open()
        async with self._write_lock:
            try:
                await self._writer.execute("BEGIN")
                yield SqliteTransaction(self._writer)
            except BaseException as error:
                # also when cancelled while BEGIN was on its way: the connection's thread
                # runs its calls in order, so this rollback comes after that BEGIN
                await self._writer.rollback()
                if isinstance(error, sqlite3.IntegrityError):
                    raise _duplicate_or(error)
                raise
            await self._writer.commit()

    def to_time(self, value: Any) -> datetime | None:
        return datetime.fromisoformat(value) if value is not None else None

    def from_time(self, value: datetime) -> Any:
        return value.strftime(SQLITE_TIME)

    def connections(self) -> int:
        return 4 if self._writer is not None else 0

    async def close(self) -> None:
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        for connection in (self._reader, self._writer):
            if connection is not None:
                await connection.close()
        for inline in (self._inline_reader, self._inline_writer):
            if inline is not None:
                inline.close()
        self._reader = self._writer = self._inline_reader = self._inline_writer = None


def _first(rows: Sequence[tuple]) -> tuple | None:
    return rows[0] if rows else None


def _busy(error: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED (or one of their extended codes): another connection
    holds what the statement needs."""
    return (getattr(error, "sqlite_errorcode", 0) & 0xFF) in (sqlite3.SQLITE_BUSY,
                                                               sqlite3.SQLITE_LOCKED)


def _duplicate_or(error: sqlite3.IntegrityError) -> Exception:
    """Duplicate for a unique key taken (another constraint's failure stays itself)."""
    if "UNIQUE" in str(error):
        duplicate = Duplicate()
        duplicate.__cause__ = error
        return duplicate
    return error


def driver_for(engine: AsyncEngine) -> Driver:
    """The driver for the engine's database, connecting as the engine would."""
    if engine.dialect.name == "sqlite":
        if engine.url.database in (None, "", ":memory:"):
            # each connection would have a database of its own, and a restart none
            raise ValueError("SQLite in memory cannot hold the queues: give a file, "
                             "e.g. sqlite+aiosqlite:///bridge.db")
        return SqliteDriver(engine.url)
    return PostgresDriver(engine)


# --- rows as models --------------------------------------------------------------------------

def columns(model_class: type) -> tuple[str, ...]:
    """Every column of a model, in its order: the statements read whole rows."""
    return tuple(model_class.__table__.columns.keys())


def column_list(names: Sequence[str], table: str = "") -> str:
    return ", ".join(f"{table}.{name}" if table else name for name in names)


def model(model_class: type, names: Sequence[str], values: Sequence[Any], driver: Driver):
    fields = {}
    for name, value in zip(names, values):
        if value is not None:
            if name in TIMES:
                value = driver.to_time(value)
            elif name in FLAGS:
                value = bool(value)  # SQLite's 0 and 1
            elif name == "body":
                value = json.loads(value)
        fields[name] = value
    return model_class(**fields)
