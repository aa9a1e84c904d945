"""Several daemons on one PostgreSQL: one of them works the customers (the leader, holding
the "relay" lease), the others stand by and take over when it stops.

The lease is a row timed by the database's clock, renewed every third of its length. The
leader acts (sends to the helpdesk or a platform) only while its own clock says the lease
cannot have expired: each renewal moves that deadline to the moment the renewal was *sent*
plus the lease, less a margin, so it is never later than the expiry the database recorded.
A daemon frozen past its lease (SIGSTOP, a stalled VM) finds its deadline passed when it
resumes and sends nothing; its claims and finishes are fenced by the lease's epoch in the
same statements (bridge/store/queries.py, FENCE), so the rows stay for the new leader.

Every daemon also holds an advisory lock named after itself, on a connection of its own,
for as long as it lives: a daemon that dies (SIGKILL, a crash) loses that session and the
lock with it, so a standby may take its lease at once instead of waiting for it to expire.
All lease statements run on that connection: a daemon whose session the database dropped
(a restart of the database, a cut) pauses until it has its lock and its lease again, or
finds that another daemon took them over.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import socket
import time
from typing import Awaitable, Callable

import asyncpg

from bridge.store import Store
from bridge.store.queries import LeaseLost

log = logging.getLogger(__name__)

NAME = "relay"
MARGIN = 0.5  # seconds the local deadline keeps from the database's expiry (clock rates)
STANDBY_POLL = 0.5  # seconds between a standby's tries, unless woken by a release
CHANNEL = "helpdesk_bridge_lease"  # NOTIFY on a release: the standbys try at once
# Each daemon's own session is named so: `helpdesk-bridge status` lists the live daemons.
SESSION_PREFIX = "helpdesk-bridge "
UNREACHABLE = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError)

# The advisory lock a daemon holds while it lives: (this namespace, hashtext(holder)).
_ALIVE = "SELECT pg_advisory_lock(hashtext('helpdesk-bridge'), hashtext($1))"
_PROBE = "SELECT pg_try_advisory_lock(hashtext('helpdesk-bridge'), hashtext($1))"
_UNPROBE = "SELECT pg_advisory_unlock(hashtext('helpdesk-bridge'), hashtext($1))"
_TAKE_FREE = ("INSERT INTO leases (name, holder, epoch, expires_at, fingerprint) "
              "VALUES ($1, $2, 1, now() + make_interval(secs => $3), $4) "
              "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
              "epoch = leases.epoch + 1, expires_at = excluded.expires_at, "
              "fingerprint = excluded.fingerprint WHERE leases.expires_at < now() "
              "RETURNING epoch")
# From a holder seen (epoch included): one that is gone, or this daemon's own after a pause.
_TAKE_FROM = ("UPDATE leases SET holder = $2, epoch = epoch + 1, "
              "expires_at = now() + make_interval(secs => $3), fingerprint = $4 "
              "WHERE name = $1 AND holder = $5 AND epoch = $6 RETURNING epoch")
_RENEW = ("UPDATE leases SET expires_at = now() + make_interval(secs => $4) "
          "WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > now() "
          "RETURNING epoch")
_RELEASE = ("UPDATE leases SET expires_at = now() - interval '1 second' "
            "WHERE name = $1 AND holder = $2 AND epoch = $3")
_RELEASED = f"SELECT pg_notify('{CHANNEL}', $1)"


def fingerprint(values: list[str]) -> str:
    """What every daemon of a database must share (the helpdesk and the bots), hashed."""
    return hashlib.sha256("\x1f".join(sorted(values)).encode()).hexdigest()


class DifferentConfig(Exception):
    """The daemon holding the lease runs with another helpdesk or bot configuration."""


class Leadership:
    def __init__(self, store: Store, seconds: float, config_fingerprint: str) -> None:
        self.store = store
        self.seconds = seconds
        self.fingerprint = config_fingerprint
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.epoch: int | None = None
        self._deadline = 0.0
        self._connection: asyncpg.Connection | None = None
        self._released = asyncio.Event()  # another daemon let go of the lease
        self.renewals = 0
        self.losses = 0
        self.takeovers = 0

    @property
    def token(self) -> tuple[str, str, int]:
        """What the queue statements check (bridge/store/queries.py, FENCE)."""
        return NAME, self.holder, self.epoch

    @property
    def leading(self) -> bool:
        return self.epoch is not None and time.monotonic() < self._deadline

    def check(self) -> None:
        """Called before anything is sent for a customer: LeaseLost once the lease may have
        expired, or may have been taken over."""
        if not self.leading:
            raise LeaseLost("this daemon's lease may have expired: nothing is sent")

    async def _session(self) -> asyncpg.Connection:
        """The connection holding this daemon's advisory lock (opened, or opened again)."""
        if self._connection is None or self._connection.is_closed():
            connection = await self.store.dedicated_connection(SESSION_PREFIX + self.holder)
            try:
                await asyncio.wait_for(connection.execute(_ALIVE, self.holder), self.seconds)
            except BaseException:
                await connection.close()
                raise
            connection.add_termination_listener(self._session_lost)
            await connection.add_listener(CHANNEL, self._on_release)
            self._connection = connection
        return self._connection

    def _on_release(self, *_notification) -> None:
        self._released.set()

    def _session_lost(self, _connection: asyncpg.Connection) -> None:
        # Others may now take the lease at once: stop sending this instant.
        self._deadline = 0.0

    async def try_take(self) -> bool:
        """Take the lease if it is free, if its holder is gone, or if it is this daemon's
        own from before a pause. DifferentConfig if a live holder runs another
        configuration (two deployments on one database would answer each other's
        customers)."""
        connection = await self._session()
        sent = time.monotonic()
        args = (NAME, self.holder, float(self.seconds), self.fingerprint)
        epoch = await connection.fetchval(_TAKE_FREE, *args)
        if epoch is None:
            current = await self.store.lease(NAME)
            if current["holder"] == self.holder:
                epoch = await connection.fetchval(_TAKE_FROM, *args, self.holder,
                                                  current["epoch"])
            elif current["fingerprint"] != self.fingerprint:
                raise DifferentConfig(
                    f"the daemon working this database ({current['holder']}) has a "
                    "different helpdesk or bot configuration; every daemon of a database "
                    "needs the same ones")
            elif await connection.fetchval(_PROBE, current["holder"]):
                try:  # its session is gone, and cannot come back while this lock is held
                    epoch = await connection.fetchval(_TAKE_FROM, *args, current["holder"],
                                                      current["epoch"])
                finally:
                    await connection.fetchval(_UNPROBE, current["holder"])
        if epoch is None:
            return False
        self.epoch, self._deadline = epoch, sent + self.seconds - MARGIN
        self.store.fence(self)
        self.takeovers += 1
        return True

    async def wait_to_take(self, unless_taken: bool = False) -> bool:
        """Stand by until the lease can be taken, then take it (True). unless_taken: after
        a pause, give up (False) as soon as another daemon holds it."""
        while True:
            try:
                if await self.try_take():
                    return True
                if unless_taken:
                    current = await self.store.lease(NAME)
                    if current is not None and current["holder"] != self.holder:
                        return False
            except DifferentConfig:
                if unless_taken:
                    return False
                raise
            except UNREACHABLE as error:
                log.warning("the database is unreachable (%s); trying again",
                            type(error).__name__)
            try:  # a stopping daemon's release wakes this at once; a death, the next poll
                await asyncio.wait_for(self._released.wait(), STANDBY_POLL)
            except asyncio.TimeoutError:
                pass
            self._released.clear()

    async def keep(self, resumed: Callable[[], Awaitable[None]]) -> None:
        """Renew until another daemon holds the lease (then return: lost for good). When a
        renewal does not come in time this daemon pauses (check() refuses every send, and
        the queues' workers stop); once the lease is its own again, `resumed()`."""
        while True:
            await asyncio.sleep(self.seconds / 3)
            was_leading = self.leading
            if await self._renew():
                if not was_leading:  # its session was cut, and nobody took the lease
                    await resumed()
                continue
            if self.leading:
                continue  # try again while the deadline holds
            self.losses += 1
            log.warning("the lease was not renewed in time; paused (nothing is sent)")
            if not await self.wait_to_take(unless_taken=True):
                log.error("another daemon took this database's customers over")
                self.epoch = None
                return
            log.info("the lease is this daemon's again; resuming")
            await resumed()

    async def _renew(self) -> bool:
        sent = time.monotonic()
        try:
            connection = await self._session()
            renewed = await asyncio.wait_for(connection.fetchval(
                _RENEW, NAME, self.holder, self.epoch, float(self.seconds)), self.seconds / 3)
        except UNREACHABLE as error:
            log.warning("could not renew the lease (%s)", type(error).__name__)
            return False
        if renewed is None:
            self._deadline = 0.0  # expired, or taken over: no waiting out the deadline
            return False
        self._deadline = sent + self.seconds - MARGIN
        self.renewals += 1
        return True

    async def close(self) -> None:
        """Hand the customers over at once (a stop), and end the session that says this
        daemon lives."""
        epoch, self.epoch, self._deadline = self.epoch, None, 0.0
        connection, self._connection = self._connection, None
        if connection is None or connection.is_closed():
            return
        try:
            if epoch is not None:
                await asyncio.wait_for(connection.execute(_RELEASE, NAME, self.holder, epoch), 5)
                await asyncio.wait_for(connection.fetchval(_RELEASED, self.holder), 5)
        except UNREACHABLE as error:
            log.warning("could not release the lease (%s); it runs out in %.0f s",
                        type(error).__name__, self.seconds)
        finally:
            connection.remove_termination_listener(self._session_lost)
            await connection.close()
