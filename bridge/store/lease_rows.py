"""Leases on PostgreSQL: taken, renewed and released in one statement each, timed by the
database's clock (a lease is valid while expires_at > now() there). While a daemon holds
the lease the Store is fenced with it: the queues' claims and finishes check its epoch in
the same statement (Queries.fence), so a daemon that lost it changes nothing."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bridge.store.queries import LeaseLost, Queries

__all__ = ["LeaseHolder", "LeaseLost", "LeaseRows"]

_TAKE = ("INSERT INTO leases (name, holder, epoch, expires_at, fingerprint) "
         "VALUES (?, ?, 1, now() + make_interval(secs => ?), ?) "
         "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
         "epoch = leases.epoch + 1, expires_at = excluded.expires_at, "
         "fingerprint = excluded.fingerprint WHERE leases.expires_at < now() "
         "RETURNING epoch")
_RENEW = ("UPDATE leases SET expires_at = now() + make_interval(secs => ?) "
          "WHERE name = ? AND holder = ? AND epoch = ? AND expires_at > now() RETURNING epoch")
_RELEASE = ("UPDATE leases SET expires_at = now() - interval '1 second' "
            "WHERE name = ? AND holder = ? AND epoch = ?")
_HOLDER = ("SELECT holder, epoch, fingerprint, expires_at, expires_at > now() FROM leases "
           "WHERE name = ?")


@dataclass(frozen=True)
class LeaseHolder:
    holder: str
    epoch: int
    fingerprint: str
    expires_at: datetime
    valid: bool


class LeaseRows(Queries):
    async def take_lease(self, name: str, holder: str, seconds: float,
                         fingerprint: str) -> int | None:
        """The new epoch, if the lease was free (never taken, expired or released)."""
        taken = await self._db.write(_TAKE, name, holder, float(seconds), fingerprint)
        return taken[0] if taken else None

    async def renew_lease(self, name: str, holder: str, epoch: int, seconds: float) -> bool:
        """False: expired, or taken by another daemon since."""
        return await self._db.write(_RENEW, float(seconds), name, holder, epoch) is not None

    async def release_lease(self, name: str, holder: str, epoch: int) -> None:
        await self._db.write(_RELEASE, name, holder, epoch)

    async def lease_holder(self, name: str) -> LeaseHolder | None:
        found = await self._db.read(_HOLDER, name)
        return LeaseHolder(*found) if found else None
