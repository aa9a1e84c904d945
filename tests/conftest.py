"""Shared fixtures. Storage tests run on SQLite always, and on PostgreSQL when
BRIDGE_TEST_POSTGRES_URL is set (CI sets it, and BRIDGE_TEST_REQUIRE_POSTGRES=1 so an
unreachable server fails the run instead of skipping)."""
from __future__ import annotations

import os
import uuid

import pytest

from bridge.store import Store, upgrade

POSTGRES_URL = os.environ.get("BRIDGE_TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("BRIDGE_TEST_REQUIRE_POSTGRES") == "1"


async def _create_postgres_database() -> tuple[str, str]:
    """A fresh database per test, so tests never see each other's rows."""
    import asyncpg
    from sqlalchemy.engine import make_url

    base = make_url(POSTGRES_URL)
    name = f"bridge_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(user=base.username, password=base.password, host=base.host,
                                  port=base.port or 5432, database=base.database)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return base.set(database=name).render_as_string(hide_password=False), name


async def _drop_postgres_database(name: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    base = make_url(POSTGRES_URL)
    admin = await asyncpg.connect(user=base.username, password=base.password, host=base.host,
                                  port=base.port or 5432, database=base.database)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request, tmp_path):
    """A URL of an empty database, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"
        return
    if not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("BRIDGE_TEST_REQUIRE_POSTGRES=1 but BRIDGE_TEST_POSTGRES_URL is not set")
        pytest.skip("PostgreSQL not configured: set BRIDGE_TEST_POSTGRES_URL to run these")
    try:
        url, name = await _create_postgres_database()
    except OSError as error:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL at BRIDGE_TEST_POSTGRES_URL is unreachable: {error}")
        pytest.skip(f"PostgreSQL unreachable: {error}")
    yield url
    await _drop_postgres_database(name)


@pytest.fixture
async def store(database_url):
    """A migrated Store on each backend."""
    store = Store.from_url(database_url)
    await upgrade(store.engine)
    yield store
    await store.close()
