"""The Store: every query the bridge runs, on one pool per database (bridge/store/driver.py).
Its parts live beside their statements, one module per kind of row. Rows come back as
model objects, detached and read-only by convention: change them through a Store method."""
from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bridge.store.customer_queue import CustomerQueue
from bridge.store.customer_records import CustomerRecords
from bridge.store.driver import driver_for
from bridge.store.forwarded_queue import ForwardedQueue
from bridge.store.helpdesk_queue import NextRequest
from bridge.store.rating_rows import RatingRows
from bridge.store.support_mode_rows import SupportModeRows
from bridge.store.upkeep import Upkeep

__all__ = ["NextRequest", "Store", "make_engine"]


def make_engine(url: str) -> AsyncEngine:
    """SQLAlchemy's engine, for the schema: Alembic migrates through it (and tests look at
    rows through it). The Store's own queries do not use it."""
    if url.startswith("sqlite"):
        return create_async_engine(url, connect_args={"timeout": 30})
    return create_async_engine(url)


class Store(CustomerRecords, RatingRows, CustomerQueue, ForwardedQueue, SupportModeRows,
            Upkeep):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(driver_for(engine))
        self.engine = engine

    @classmethod
    def from_url(cls, url: str) -> "Store":
        return cls(make_engine(url))

    async def close(self) -> None:
        await self._db.close()
        await self.engine.dispose()

    def connections_open(self) -> int:
        """Connections the Store holds right now (in use or idle)."""
        return self._db.connections()

    async def ping(self) -> None:
        await self._db.read("SELECT 1")

    async def dedicated_connection(self, name: str):
        """A connection of its own, outside the pool (PostgreSQL), named `name` in
        pg_stat_activity: for what must stay on one session, such as an advisory lock
        (bridge/shards.py)."""
        return await self._db.dedicated(name)
