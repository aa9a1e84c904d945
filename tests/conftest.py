"""Shared fixtures. Storage tests run on SQLite always, and on PostgreSQL when
BRIDGE_TEST_POSTGRES_URL is set (CI sets it, and BRIDGE_TEST_REQUIRE_POSTGRES=1 so an
unreachable server fails the run instead of skipping)."""
from __future__ import annotations

import asyncio
import os
import uuid
from contextlib import asynccontextmanager

import pytest

from bridge.store import Store, upgrade

POSTGRES_URL = os.environ.get("BRIDGE_TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("BRIDGE_TEST_REQUIRE_POSTGRES") == "1"


async def _admin(sql: str) -> None:
    """Run one statement on the server's maintenance database."""
    import asyncpg
    from sqlalchemy.engine import make_url

    base = make_url(POSTGRES_URL)
    admin = await asyncpg.connect(user=base.username, password=base.password, host=base.host,
                                  port=base.port or 5432, database=base.database)
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


async def _create_postgres_database() -> tuple[str, str]:
    """A fresh database per test, so tests never see each other's rows."""
    from sqlalchemy.engine import make_url

    name = f"bridge_test_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    return url, name


async def _drop_postgres_database(name: str) -> None:
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fail_once(table: str, operation: str, condition: str = "TRUE",
              always: bool = False) -> list[str]:
    """PostgreSQL statements making the first INSERT or UPDATE of table that meets
    condition fail, as a database that went away for a moment would (a sequence counts, as
    it is not rolled back with the failed transaction); with always, every such one, as a
    constraint would."""
    name = f"fail_once_{table}_{operation.lower()}"
    first = "TRUE" if always else f"nextval('{name}_seq') = 1"
    return [
        f"CREATE SEQUENCE {name}_seq",
        f"""CREATE FUNCTION {name}() RETURNS trigger AS $$
        BEGIN
            IF ({condition}) AND {first} THEN
                RAISE EXCEPTION 'the database went away for a moment';
            END IF;
            RETURN NEW;
        END $$ LANGUAGE plpgsql""",
        f"CREATE TRIGGER {name} BEFORE {operation} ON {table} FOR EACH ROW "
        f"EXECUTE FUNCTION {name}()",
    ]


async def queue_rows(store: Store, model: type, customer_id: int) -> list:
    """Every row of one queue (ToHelpdesk or ToCustomer) for a customer, oldest first: what
    a test inspects after the bridge has worked."""
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import AsyncSession

    async with AsyncSession(store.engine, expire_on_commit=False) as session:
        query = select(model).where(model.customer_id == customer_id).order_by(model.id)
        return list((await session.execute(query)).scalars())


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
    await asyncio.wait_for(_drop_postgres_database(name), 20)


@pytest.fixture
async def store(database_url):
    """A migrated Store on each backend."""
    store = Store.from_url(database_url)
    await upgrade(store.engine)
    yield store
    await store.close()


# --- the sandbox helpdesk and a bridge in front of it ------------------------------------

from bridge.app import Bridge  # noqa: E402
from bridge.config import load_settings  # noqa: E402
from bridge.sandbox import DEFAULT_API_KEY, SandboxHelpdesk  # noqa: E402
from testing.console import ConsoleHarness  # noqa: E402


@asynccontextmanager
async def serving(helpdesk: SandboxHelpdesk):
    """A sandbox helpdesk serving on a free port for the length of the block."""
    await helpdesk.start(port=0)
    try:
        yield helpdesk
    finally:
        await asyncio.wait_for(helpdesk.stop(), 20)


@pytest.fixture
async def sandbox():
    async with serving(SandboxHelpdesk()) as helpdesk:
        yield helpdesk


@pytest.fixture
async def make_bridge(database_url, sandbox):
    """make_bridge(**helpdesk_settings) -> (bridge, console): a started bridge on the
    sandbox, with the console adapter as the chat platform (ratings: [ratings] settings)."""
    started: list[Bridge] = []

    async def make(public_url: str = "", ratings: dict | None = None, **helpdesk: object):
        settings = load_settings({
            "ratings": ratings or {},
            "helpdesk": {"url": sandbox.url, "api_key": DEFAULT_API_KEY, "request_timeout": 3,
                         **helpdesk},
            "storage": {"url": database_url},
            "http": {"listen": "127.0.0.1:0", "public_url": public_url},
            "calls": {"livekit_url": "wss://livekit.example.com" if public_url else ""},
        }, env={})
        console = ConsoleHarness()
        bridge = Bridge(settings, [console])
        await bridge.start()
        await bridge.relay.link.wait_connected(10)
        started.append(bridge)
        return bridge, console

    yield make
    for bridge in started:
        await asyncio.wait_for(bridge.stop(), 20)
