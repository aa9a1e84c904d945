"""Old finished queue rows are deleted, and nothing a customer still needs goes with them:
on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from bridge.app import Bridge
from bridge.config import ConfigError, load_settings
from bridge.sandbox import DEFAULT_API_KEY
from bridge.store import Store
from bridge.store.models import Conversation, ToCustomer, ToHelpdesk, utcnow
from testing.console import ConsoleHarness
from tests.conftest import queue_rows

LONG_AGO = utcnow() - timedelta(days=30)


async def _age_every_finished_row(store: Store) -> None:
    """As if the rows had been finished a month ago."""
    async with store.engine.begin() as connection:
        await connection.execute(update(ToHelpdesk).where(ToHelpdesk.status != "queued")
                                 .values(done_at=LONG_AGO, created_at=LONG_AGO))
        await connection.execute(update(ToCustomer).where(ToCustomer.status != "queued")
                                 .values(delivered_at=LONG_AGO, created_at=LONG_AGO))


async def _count(store: Store, table) -> int:
    async with store.engine.connect() as connection:
        return (await connection.execute(select(func.count()).select_from(table))).scalar()


async def test_only_old_finished_rows_go(store):
    ann = await store.customer_for("telegram", "bot", "1", "100")
    sent = [await store.accept_message(ann.id, {"text": f"q{n}"}, f"m{n}") for n in range(5)]
    for row in sent[:4]:
        await store.finish_to_helpdesk(row, "done")
    conversation_id = sent[0].conversation_id
    shown = [await store.enqueue_to_customer(ann.id, conversation_id, {"text": f"a{n}"}, f"h{n}")
             for n in range(6)]
    for row in shown[:5]:
        await store.finish_to_customer(row, "delivered", platform_ref=f"ref{row.id}")
    # shown[1] carries the rating buttons the conversation still waits on
    await store.set_conversation(conversation_id, prompt="rating", prompt_ref=str(shown[1].id))
    await _age_every_finished_row(store)
    # finished just now: kept
    recent = await store.accept_message(ann.id, {"text": "recent"}, "m-recent")
    await store.finish_to_helpdesk(recent, "failed", error="refused")

    deleted = await store.prune(utcnow() - timedelta(days=7), batch=2)  # several batches

    assert deleted == (4, 4)
    left_up = {row.body["text"]: row.status for row in await queue_rows(store, ToHelpdesk, ann.id)}
    assert left_up == {"q4": "queued", "recent": "failed"}
    left_down = {row.body["text"]: row.status
                 for row in await queue_rows(store, ToCustomer, ann.id)}
    assert left_down == {"a1": "delivered", "a5": "queued"}
    # the customer's duplicate check still holds for what is kept
    assert await store.accept_message(ann.id, {"text": "recent"}, "m-recent") is None


async def test_a_prompt_settled_is_no_longer_kept(store):
    ann = await store.customer_for("telegram", "bot", "1", "100")
    row = await store.accept_message(ann.id, {"text": "q"}, "m")
    prompt = await store.enqueue_to_customer(ann.id, row.conversation_id, {"text": "rate"})
    await store.finish_to_customer(prompt, "delivered", platform_ref="77")
    await store.set_conversation(row.conversation_id, prompt=None, prompt_ref=str(prompt.id))
    await _age_every_finished_row(store)
    assert await store.prune(utcnow() - timedelta(days=7)) == (0, 1)


def test_keep_days_is_zero_or_at_least_a_day():
    def settings(keep_days):
        return load_settings({"helpdesk": {"api_key": "k"},
                              "storage": {"keep_days": keep_days}}, env={})

    assert settings(0).storage.keep_days == 0
    assert settings(1.5).storage.keep_days == 1.5
    with pytest.raises(ConfigError, match="keep_days"):
        settings(0.5)


async def test_a_restarted_daemon_prunes_and_the_waiting_prompt_still_works(
        sandbox, database_url):
    console = ConsoleHarness()  # one chat app, seen by both runs of the bridge
    settings = load_settings({
        "helpdesk": {"url": sandbox.url, "api_key": DEFAULT_API_KEY, "request_timeout": 3},
        "storage": {"url": database_url, "keep_days": 7},
        "http": {"listen": "127.0.0.1:0"},
    }, env={})

    async with Bridge(settings, [console]) as bridge:
        await bridge.relay.link.wait_connected(10)
        await console.say("ann", "hello")
        await console.expect("ann", 'You said: "hello"')
        await console.say("ann", "my problem is resolved")
        await console.press("ann", "Yes")
        rating_prompt = await console.expect("ann", "How would you rate")
    store = Store.from_url(database_url)
    try:
        await _age_every_finished_row(store)
        assert await _count(store, ToHelpdesk) == 3  # two messages and the close request

        async with Bridge(settings, [console]) as bridge:
            await bridge.relay.link.wait_connected(10)
            for _ in range(100):  # pruned at start, not an hour later
                if await _count(store, ToHelpdesk) == 0:
                    break
                await asyncio.sleep(0.05)
            assert await _count(store, ToHelpdesk) == 0
            # kept: the rating prompt, whose buttons the customer has yet to press
            assert await _count(store, ToCustomer) == 1
            await console.press("ann", "4")
            await console.expect("ann", "Rated 4/5")
            assert rating_prompt.message.buttons == []  # its buttons taken away in place
            metrics = bridge.relay.metrics.render().decode()
            assert 'bridge_rows_pruned_total{direction="to_helpdesk"} 3.0' in metrics
        async with store.engine.connect() as connection:
            prompt = (await connection.execute(select(Conversation.prompt))).scalar()
        assert prompt == "comment"  # the rating went through: now its optional comment
    finally:
        await store.close()
