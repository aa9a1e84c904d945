"""Migrations: upgrade from empty, downgrade, upgrade again; models match; newer refused."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from sqlalchemy import MetaData, inspect, text

from bridge.store import SchemaTooNew, Store, downgrade, upgrade
from bridge.store.models import Base
from bridge.store.schema import current_revision


async def _tables(store: Store) -> set[str]:
    async with store.engine.connect() as connection:
        return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))


async def test_upgrade_downgrade_upgrade(database_url):
    store = Store.from_url(database_url)
    try:
        await upgrade(store.engine)
        assert {"customers", "conversations", "to_helpdesk", "to_customer"} <= await _tables(store)
        assert await current_revision(store.engine) == "0010"
        await downgrade(store.engine, "base")
        assert await _tables(store) <= {"alembic_version"}
        await upgrade(store.engine)
        assert await current_revision(store.engine) == "0010"
    finally:
        await store.close()


async def test_upgrading_a_running_deployment_keeps_its_conversations(database_url):
    """A database made by 0001 (the first release) with a live conversation in it."""
    store = Store.from_url(database_url)
    try:
        await upgrade(store.engine, "0001")
        async with store.engine.begin() as connection:
            await connection.execute(text(
                "INSERT INTO customers (id, platform, account, user_id, chat_id, session_id, "
                "unreachable, created_at) VALUES (1, 'telegram', 'bot', 'u1', 'c1', 's1', "
                "false, CURRENT_TIMESTAMP)"))
            await connection.execute(text(
                "INSERT INTO conversations (id, customer_id, ticket_chat_id, number, state, "
                "handler, created_at) VALUES (1, 1, 't1', 1, 'open', 'sate', CURRENT_TIMESTAMP)"))
        await upgrade(store.engine)
        conversation = await store.conversation(1)
        assert (conversation.ticket_chat_id, conversation.state) == ("t1", "open")
        assert conversation.thread_ref is None
        await store.set_conversation(1, thread_ref="1700000000.000100")
        await downgrade(store.engine, "0001")
        async with store.engine.connect() as connection:
            rows = (await connection.execute(text("SELECT ticket_chat_id FROM conversations"))).all()
        assert rows == [("t1",)]
    finally:
        await store.close()


def _expected_schema() -> MetaData:
    """The bridge's models, and slack-sdk's installation and OAuth state stores as the
    version installed builds them (the Slack app installed in many workspaces)."""
    metadata = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(metadata)
    SQLAlchemyInstallationStore.build_installations_table(metadata, "slack_installations")
    SQLAlchemyInstallationStore.build_bots_table(metadata, "slack_bots")
    SQLAlchemyOAuthStateStore.build_oauth_states_table(metadata, "slack_oauth_states")
    return metadata


async def test_models_match_migrations(store):
    def diff(connection):
        context = MigrationContext.configure(connection)
        return compare_metadata(context, _expected_schema())

    async with store.engine.connect() as connection:
        differences = await connection.run_sync(diff)
    assert differences == []


async def test_refuses_a_schema_newer_than_it_knows(store):
    async with store.engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaTooNew, match="9999.*upgrade helpdesk-bridge"):
        await upgrade(store.engine)
