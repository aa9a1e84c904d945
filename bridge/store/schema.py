"""Applying migrations, and refusing a database newer than this code."""
from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine


class SchemaTooNew(Exception):
    pass


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("migrations")))
    return config


def _current(connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(_current)


async def _run(engine: AsyncEngine, action, *args) -> None:
    config = alembic_config()

    def run(connection) -> None:
        config.attributes["connection"] = connection
        action(config, *args)

    async with engine.begin() as connection:
        await connection.run_sync(run)
    # The engine serves the migrations; the Store's queries have a pool of their own, so
    # the engine's connections are not kept open beside it.
    await engine.dispose()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema up to date; refuse (SchemaTooNew) if it is newer than we know."""
    script = ScriptDirectory.from_config(alembic_config())
    current = await current_revision(engine)
    if current is not None and not _known(script, current):
        raise SchemaTooNew(
            f"the database schema is at revision {current}, which this version of "
            f"helpdesk-bridge does not know (it knows up to {script.get_current_head()}); "
            "upgrade helpdesk-bridge")
    await _run(engine, command.upgrade, revision)


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except Exception:
        return False


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    await _run(engine, command.downgrade, revision)
