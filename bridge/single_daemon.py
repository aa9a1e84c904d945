"""SQLite holds one daemon. A second daemon on the same file would work every customer's
queues beside the first and show each reply twice, so it refuses to start instead.

Held as an exclusive flock on a lock file beside the database: the kernel drops it when the
process ends, however it ends (a SIGKILL included), so a restart never finds a stale lock.
Not on the database file itself: SQLite's own locks are POSIX locks, which a process loses
when it closes any descriptor of that file."""
from __future__ import annotations

import fcntl
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

from sqlalchemy.engine import make_url


class AnotherDaemon(Exception):
    """Another daemon already works this database."""


class DatabaseLock:
    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".lock")
        self._fd: int | None = None

    @classmethod
    def for_url(cls, url: str) -> "DatabaseLock | None":
        """The lock for a SQLite URL; None for a database that serves several daemons."""
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite" or not parsed.database:
            return None
        return cls(Path(parsed.database).resolve())

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AnotherDaemon(
                f"another helpdesk-bridge (pid {holder}) is running on the SQLite database "
                f"{self.path.with_suffix('').name}; SQLite holds one daemon (to run several, "
                "use PostgreSQL: docs/postgresql.md)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Unlocked, not deleted: a deletion could race another daemon's acquire."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@asynccontextmanager
async def while_no_daemon(url: str, live_daemons: Callable[[], Awaitable[list[str]]]
                          ) -> AsyncIterator[bool]:
    """True while no daemon runs on the database at url, for a command that must change it
    alone (db copy, customers forget): on SQLite its lock, held meanwhile so that none
    starts; on PostgreSQL, live_daemons() (their sessions) is empty. False: one runs."""
    lock = DatabaseLock.for_url(url)
    if lock is None:
        yield not await live_daemons()
        return
    try:
        lock.acquire()
    except AnotherDaemon:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
