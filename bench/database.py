"""The database a bench runs on: a temporary SQLite, or a given URL emptied first."""
from __future__ import annotations

import asyncio
import tempfile
from contextlib import contextmanager


@contextmanager
def database(url: str):
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite+aiosqlite:///{folder}/bench.db"


def reset(url: str) -> None:
    """A given database starts empty for each run (the bench's own tables only)."""
    from sqlalchemy import text

    from bridge.store import Store
    from bridge.store.models import Base

    async def drop() -> None:
        store = Store.from_url(url)
        tables = [table.name for table in reversed(Base.metadata.sorted_tables)]
        async with store.engine.begin() as connection:
            for table in [*tables, "alembic_version"]:
                await connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
        await store.close()

    asyncio.run(drop())
