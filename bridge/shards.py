"""Several daemons on one PostgreSQL: the customers are spread over them in SHARDS shards
(a customer's shard is its id modulo SHARDS), each held by one daemon at a time under a
lease, and each daemon works the customers of the shards it holds.

A lease is a row timed by the database's clock (`leases`, named "shard:N"), renewed every
TICK together with all the others this daemon holds. A daemon acts (sends to the helpdesk
or a platform) for a customer only while its own clock says the lease of that customer's
shard cannot have expired: each renewal moves that deadline to the moment the renewal was
*sent* plus the lease, less a margin, so it is never later than the expiry the database
recorded. A daemon frozen past its leases (SIGSTOP, a stalled VM) finds its deadline passed
when it resumes and sends nothing; the queue statements it runs are fenced by the shard's
epoch in the same statement (bridge/store/queries.py, FENCE), so the rows stay for the
daemon that holds the shard now.

Every daemon also holds an advisory lock named after itself, on a connection of its own,
for as long as it lives: a daemon that dies (SIGKILL, a crash) loses that session and the
lock with it, so the others may take its shards at once instead of waiting for the leases
to expire. All lease statements run on that connection, and a `daemon:<holder>` row renewed
with the shards says the daemon is live and not frozen: the shards are shared out among
those (ceil(SHARDS / live daemons) each). A daemon holding more than its share lets the
extra ones go, gracefully: it stops starting work for their customers, waits for the work
in flight, then releases them and NOTIFYs, and the others take them at once. Shard 0 is
never let go that way: its holder alone does what only one daemon may do (polling Telegram,
pruning), and those move only when it stops or dies.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import secrets
import socket
import time
from collections import deque
from typing import Awaitable, Callable, Iterable

import asyncpg

from bridge.store import Store
from bridge.store.queries import LeaseLost

log = logging.getLogger(__name__)

SHARDS = 16
MARGIN = 0.5  # seconds the local deadline keeps from the database's expiry (clock rates)
CHANNEL = "helpdesk_bridge_lease"  # NOTIFY on a release: the others look at once
# Each daemon's own session is named so: `helpdesk-bridge status` lists the live daemons.
SESSION_PREFIX = "helpdesk-bridge "
PRESENCE = "daemon:"  # + holder: the row that says a daemon lives and is not frozen
UNREACHABLE = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError)

# The advisory lock a daemon holds while it lives: (this namespace, hashtext(holder)).
_ALIVE = "SELECT pg_advisory_lock(hashtext('helpdesk-bridge'), hashtext($1))"
_PROBE = "SELECT pg_try_advisory_lock(hashtext('helpdesk-bridge'), hashtext($1))"
_UNPROBE = "SELECT pg_advisory_unlock(hashtext('helpdesk-bridge'), hashtext($1))"
_LEASES = ("SELECT name, holder, epoch, fingerprint, expires_at > now(), "
           "extract(epoch FROM now() - expires_at) FROM leases "
           "WHERE name LIKE 'shard:%' OR name LIKE 'daemon:%'")
_TAKE_FREE = ("INSERT INTO leases (name, holder, epoch, expires_at, fingerprint) "
              "VALUES ($1, $2, 1, now() + make_interval(secs => $3), $4) "
              "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
              "epoch = leases.epoch + 1, expires_at = excluded.expires_at, "
              "fingerprint = excluded.fingerprint WHERE leases.expires_at <= now() "
              "RETURNING epoch")
# From a holder seen (epoch included): one that is gone, or this daemon's own after a pause.
_TAKE_FROM = ("UPDATE leases SET holder = $2, epoch = epoch + 1, "
              "expires_at = now() + make_interval(secs => $3), fingerprint = $4 "
              "WHERE name = $1 AND holder = $5 AND epoch = $6 RETURNING epoch")
_PRESENT = ("INSERT INTO leases (name, holder, epoch, expires_at, fingerprint) "
            "VALUES ($1, $2, 1, now() + make_interval(secs => $3), $4) "
            "ON CONFLICT (name) DO UPDATE SET expires_at = excluded.expires_at")
_RENEW = ("UPDATE leases SET expires_at = now() + make_interval(secs => $3) "
          "WHERE holder = $1 AND name = ANY($2::text[]) AND expires_at > now() "
          "RETURNING name, epoch")
# The daemons of this configuration alive and not frozen: their presence is renewed, and
# their session is open (application_name, which PostgreSQL cuts to 63 characters).
_LIVE = ("SELECT l.holder FROM leases l WHERE l.name LIKE 'daemon:%' AND l.expires_at > now() "
         "AND l.fingerprint = $2 AND EXISTS (SELECT 1 FROM pg_stat_activity a "
         "WHERE a.application_name = left($1 || l.holder, 63))")
_RELEASE = ("UPDATE leases SET expires_at = now() "
            "WHERE name = ANY($1::text[]) AND holder = $2")
_RELEASED = f"SELECT pg_notify('{CHANNEL}', $1)"
# Presence rows of daemons gone for an hour: nothing reads them any more.
_FORGET_GONE = ("DELETE FROM leases WHERE name LIKE 'daemon:%' "
                "AND expires_at < now() - interval '1 hour'")


def shard_of(customer_id: int) -> int:
    return customer_id % SHARDS


def lease_name(shard: int) -> str:
    return f"shard:{shard}"


def fingerprint(values: list[str]) -> str:
    """What every daemon of a database must share (the helpdesk and the bots), hashed."""
    return hashlib.sha256("\x1f".join(sorted(values)).encode()).hexdigest()


class DifferentConfig(Exception):
    """A live daemon of this database runs with another helpdesk or bot configuration."""


class Shards:
    """The shards this daemon holds. The relay asks `owns(customer_id)` before it acts for
    a customer, and the Store fences its claims and finishes with `token(shard)`."""

    def __init__(self, store: Store, seconds: float, config_fingerprint: str) -> None:
        self.store = store
        self.seconds = seconds
        self.tick = min(1.0, seconds / 3)  # renewals, and looks at the others' shards
        self.fingerprint = config_fingerprint
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.held: dict[int, int] = {}  # shard -> epoch
        self.leaving: set[int] = set()  # being let go: no new work starts for them
        self.lost = False  # another daemon took shards of this one (it was frozen or cut)
        # What the relay does with shards taken, and waits for before they are let go.
        self.on_taken: Callable[[set[int]], Awaitable[None]] | None = None
        # on_leaving(shards, grace): True once no work is in flight for their customers
        self.on_leaving: Callable[[set[int], float], Awaitable[bool]] | None = None
        self.on_resumed: Callable[[], Awaitable[None]] | None = None
        self.on_changed: Callable[[], None] | None = None  # after shards taken or let go
        self._deadline = 0.0
        self._connection: asyncpg.Connection | None = None
        self._woken = asyncio.Event()  # another daemon let go of shards, or started
        self.renewals = 0
        self.losses = 0
        self.takeovers = 0  # shards taken
        # Seconds each shard taken from another daemon went unworked (read by the metrics)
        self.takeover_seconds: deque[float] = deque(maxlen=1000)

    # --- what the relay and the Store ask ----------------------------------------------

    @property
    def valid(self) -> bool:
        """The leases held cannot have expired, by this daemon's clock."""
        return time.monotonic() < self._deadline

    def owns_shard(self, shard: int) -> bool:
        return shard in self.held and shard not in self.leaving and self.valid

    shard_of = staticmethod(shard_of)

    def owns(self, customer_id: int) -> bool:
        return self.owns_shard(shard_of(customer_id))

    def owned(self) -> list[int]:
        return sorted(s for s in self.held if self.owns_shard(s))

    def token(self, shard: int) -> tuple[str, str, int]:
        """What the queue statements check (bridge/store/queries.py, FENCE)."""
        return lease_name(shard), self.holder, self.held.get(shard, 0)

    def check(self, shard: int) -> None:
        """Called before anything is sent for a customer of `shard`: LeaseLost unless this
        daemon surely holds it."""
        if not self.owns_shard(shard):
            raise LeaseLost(f"this daemon does not hold shard {shard}: nothing is sent")

    @property
    def primary(self) -> bool:
        """This daemon does what one daemon alone may do (it holds shard 0)."""
        return 0 in self.held

    # --- the session that says this daemon lives ----------------------------------------

    async def _session(self) -> asyncpg.Connection:
        """The connection holding this daemon's advisory lock (opened, or opened again)."""
        if self._connection is None or self._connection.is_closed():
            connection = await self.store.dedicated_connection(SESSION_PREFIX + self.holder)
            try:
                await asyncio.wait_for(connection.execute(_ALIVE, self.holder), self.seconds)
                await connection.add_listener(CHANNEL, lambda *_: self._woken.set())
            except BaseException:
                await connection.close()
                raise
            connection.add_termination_listener(self._session_lost)
            self._connection = connection
        return self._connection

    def _session_lost(self, _connection: asyncpg.Connection) -> None:
        # Others may now take the shards at once: stop sending this instant.
        self._deadline = 0.0

    # --- joining, keeping, letting go ---------------------------------------------------

    async def join(self) -> None:
        """Say this daemon lives (the others then make room for it), and take its share
        of what is free. DifferentConfig if a live daemon runs another configuration (two
        deployments on one database would answer each other's customers)."""
        connection = await self._session()
        for _name, holder, _epoch, config, valid, _age in await connection.fetch(_LEASES):
            if valid and holder != self.holder and config != self.fingerprint:
                raise DifferentConfig(
                    f"a daemon working this database ({holder}) has a different helpdesk "
                    "or bot configuration; every daemon of a database needs the same ones")
        await connection.execute(_FORGET_GONE)
        sent = time.monotonic()
        await self._present(connection)
        self._deadline = sent + self.seconds - MARGIN
        await connection.fetchval(_RELEASED, self.holder)  # the others make room
        await self.balance()

    async def run(self) -> None:
        """Renew, and share the shards out, every tick (at once when woken), until this
        daemon lost shards to another for good (self.lost)."""
        while not self.lost:
            try:
                await asyncio.wait_for(self._woken.wait(), self.tick)
            except asyncio.TimeoutError:
                pass
            self._woken.clear()
            try:
                await self._renew()
                if self.valid and not self.lost:
                    await self.balance()
            except UNREACHABLE as error:
                log.warning("could not renew the leases (%s)", type(error).__name__)

    async def _renew(self) -> None:
        was_valid = self.valid
        sent = time.monotonic()
        connection = await self._session()
        names = [PRESENCE + self.holder, *(lease_name(s) for s in self.held)]
        renewed = await asyncio.wait_for(connection.fetch(
            _RENEW, self.holder, names, float(self.seconds)), self.tick * 2)
        if len(renewed) < len(names) and not await self._take_back(connection):
            return
        self._deadline = sent + self.seconds - MARGIN
        self.renewals += 1
        if not was_valid and self.on_resumed is not None:
            log.info("the leases are this daemon's again; resuming")
            await self.on_resumed()

    async def _take_back(self, connection: asyncpg.Connection) -> bool:
        """Leases that expired (this daemon was frozen, or cut off) are taken back when
        nobody else took them. False, and self.lost, when another daemon did."""
        self._deadline = 0.0
        self.losses += 1
        log.warning("the leases were not renewed in time; paused (nothing is sent)")
        current = {name: (holder, epoch) for name, holder, epoch, *_rest
                   in await connection.fetch(_LEASES)}
        for shard in list(self.held):
            holder, epoch = current.get(lease_name(shard), (None, None))
            if holder == self.holder:
                epoch = await connection.fetchval(
                    _TAKE_FROM, lease_name(shard), self.holder, float(self.seconds),
                    self.fingerprint, self.holder, epoch)
            if epoch is None or holder != self.holder:
                log.error("another daemon took customers of this one over")
                self.lost = True
                return False
            self.held[shard] = epoch
        await self._present(connection)
        return True

    async def _present(self, connection: asyncpg.Connection) -> None:
        await connection.execute(_PRESENT, PRESENCE + self.holder, self.holder,
                                 float(self.seconds), self.fingerprint)

    async def balance(self) -> None:
        """Take free shards up to this daemon's share; let go of those above it."""
        connection = await self._session()
        rows = await connection.fetch(_LEASES)
        live = {holder for holder, in await connection.fetch(_LIVE, SESSION_PREFIX,
                                                               self.fingerprint)}
        live.add(self.holder)
        share = math.ceil(SHARDS / len(live))
        shards = {int(name.split(":")[1]): (holder, epoch, valid, float(age))
                  for name, holder, epoch, _config, valid, age in rows
                  if name.startswith("shard:")}
        if self.leaving and len(self.held) <= share:  # the share grew meanwhile: keep them
            kept, self.leaving = self.leaving, set()
            if self.on_taken is not None:
                await self.on_taken(kept)
        if len(self.held) < share:
            await self._take(shards, share - len(self.held))
        elif len(self.held) > share:
            extra = len(self.held) - share
            await self.let_go(sorted(s for s in self.held if s != 0)[-extra:])

    async def _take(self, shards: dict[int, tuple], wanted: int) -> None:
        connection = await self._session()
        taken: set[int] = set()
        # Each daemon starts looking at its own place, so that they rarely race.
        start = int(hashlib.sha256(self.holder.encode()).hexdigest(), 16) % SHARDS
        for shard in ((start + i) % SHARDS for i in range(SHARDS)):
            if len(taken) == wanted:
                break
            if shard in self.held:
                continue
            args = (lease_name(shard), self.holder, float(self.seconds), self.fingerprint)
            holder, epoch, valid, age = shards.get(shard, (None, None, False, None))
            if not valid:
                got = await connection.fetchval(_TAKE_FREE, *args)
                unworked = age  # since it expired, or was released
            elif holder != self.holder and await connection.fetchval(_PROBE, holder):
                try:  # its session is gone, and cannot come back while this lock is held
                    got = await connection.fetchval(_TAKE_FROM, *args, holder, epoch)
                finally:
                    await connection.fetchval(_UNPROBE, holder)
                unworked = age + self.seconds  # since its holder's last renewal, at most
            else:
                continue
            if got is not None:  # its expiry is later than the deadline kept for all
                self.held[shard] = got
                taken.add(shard)
                if holder is not None and holder != self.holder:  # another's, not new
                    self.takeover_seconds.append(unworked)
        if taken:
            self.takeovers += len(taken)
            self.store.forget_cached_customers()  # another daemon may have changed them
            log.info("took shards %s (holds %d of %d)", sorted(taken), len(self.held), SHARDS)
            if self.on_taken is not None:
                await self.on_taken(taken)
            if self.on_changed is not None:
                self.on_changed()

    async def let_go(self, shards: Iterable[int]) -> None:
        """Hand shards over: no new work starts for their customers, the work in flight
        ends, then they are released and the others woken."""
        shards = set(shards) & set(self.held)
        if not shards:
            return
        self.leaving |= shards
        # Bounded well within the lease, which is not renewed meanwhile: work still in
        # flight then keeps the shards leaving, and they are let go at a later tick.
        if self.on_leaving is not None and not await self.on_leaving(shards, self.tick):
            return
        connection = await self._session()
        try:
            await connection.execute(_RELEASE, [lease_name(s) for s in shards], self.holder)
            await connection.fetchval(_RELEASED, self.holder)
        finally:
            for shard in shards:
                self.held.pop(shard, None)
            self.leaving -= shards
        log.info("let go of shards %s (holds %d of %d)", sorted(shards), len(self.held),
                 SHARDS)
        if self.on_changed is not None:
            self.on_changed()

    async def close(self) -> None:
        """Hand every shard over at once (a stop: the relay has stopped already), and end
        the session that says this daemon lives."""
        names = [PRESENCE + self.holder, *(lease_name(s) for s in self.held)]
        self.held, self._deadline = {}, 0.0
        connection, self._connection = self._connection, None
        if connection is None or connection.is_closed():
            return
        try:
            await asyncio.wait_for(connection.execute(_RELEASE, names, self.holder), 5)
            await asyncio.wait_for(connection.fetchval(_RELEASED, self.holder), 5)
        except UNREACHABLE as error:
            log.warning("could not release the leases (%s); they run out in %.0f s",
                        type(error).__name__, self.seconds)
        finally:
            connection.remove_termination_listener(self._session_lost)
            await connection.close()
