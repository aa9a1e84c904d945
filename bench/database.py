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


@contextmanager
def databases(url: str, count: int):
    """`count` databases apart, each emptied: the given one and others beside it, on the same
    server (PostgreSQL: created when missing, named after it), or temporary SQLites."""
    if not url:
        with tempfile.TemporaryDirectory() as folder:
            yield [f"sqlite+aiosqlite:///{folder}/bench{n}.db" for n in range(count)]
        return
    from sqlalchemy import make_url
    given = make_url(url)
    urls = [url, *(given.set(database=f"{given.database}_apart{n}")
                   .render_as_string(hide_password=False) for n in range(1, count))]
    if given.get_backend_name() == "postgresql":
        asyncio.run(_create_missing(url, [make_url(other).database for other in urls[1:]]))
    for each in urls:
        reset(each)
    yield urls


async def _create_missing(url: str, names: list[str]) -> None:
    import asyncpg
    from sqlalchemy import make_url
    given = make_url(url)
    connection = await asyncpg.connect(host=given.host, port=given.port, user=given.username,
                                       password=given.password, database=given.database)
    try:
        for name in names:
            if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1",
                                             name):
                await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


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
