"""Telegram Business: a company connects the bot to its business account, and customers
who write to that account are helped through the bridge, answered through the business
connection. Through the local Bot API server, with updates as Telegram sends them."""
from __future__ import annotations

import asyncio
import logging
import time

import pytest

from tests.test_telegram import ANN, _buttons, start_bridge, telegram  # noqa: F401 (fixture)

CAROL, OWNER = 503, 900
CONNECTION = "AQADBbKrBQAQhsEAFs-abc"


@pytest.fixture
async def bridge(telegram, sandbox, database_url):  # noqa: F811
    bridge = await start_bridge(telegram, sandbox, database_url)
    yield bridge
    await asyncio.wait_for(bridge.stop(), 20)


def _connected(telegram) -> None:  # noqa: F811
    telegram.push({"business_connection": {
        "id": CONNECTION, "user": telegram.user(OWNER, "Owner"), "user_chat_id": OWNER,
        "date": int(time.time()), "is_enabled": True,
        "rights": {"can_reply": True, "can_read_messages": True}}})


def _in_business_chat(telegram, chat_id: int) -> list[dict]:  # noqa: F811
    return [m for m in telegram.sent_to(chat_id)
            if m.get("business_connection_id") == CONNECTION]


async def test_a_business_message_opens_a_conversation_answered_through_the_connection(
        bridge, telegram, sandbox):  # noqa: F811
    _connected(telegram)
    telegram.to_business(CAROL, "Is my order shipped?", CONNECTION)
    answer = await telegram.wait_for_text(CAROL, "Is my order shipped?")
    assert answer["business_connection_id"] == CONNECTION
    assert sandbox.received[0]["message"] == "Is my order shipped?"

    telegram.to_business(CAROL, "resolved", CONNECTION)  # the whole lifecycle goes there
    prompt = await telegram.wait_for_text(CAROL, "Did this solve your issue?")
    assert prompt["business_connection_id"] == CONNECTION
    telegram.press(CAROL, prompt, _buttons(prompt)[0]["callback_data"])
    rating = await telegram.wait_for_text(CAROL, "How would you rate")
    assert rating["business_connection_id"] == CONNECTION
    assert "Yes, solved" in prompt["text"]
    assert all(m.get("business_connection_id") == CONNECTION for m in telegram.sent_to(CAROL))


async def test_the_companys_own_words_in_a_business_chat_are_not_relayed(
        bridge, telegram, sandbox):  # noqa: F811
    telegram.to_business(CAROL, "hello", CONNECTION)
    await telegram.wait_for(lambda: sandbox.received)
    telegram.to_business(CAROL, "Hi Carol, the owner here", CONNECTION, sender=OWNER)
    telegram.to_business(CAROL, "and one more", CONNECTION)
    await telegram.wait_for(lambda: len(sandbox.received) == 2)
    await asyncio.sleep(0.3)
    assert [m["message"] for m in sandbox.received] == ["hello", "and one more"]


async def test_a_business_chat_and_the_bots_own_chat_are_separate_customers(
        bridge, telegram, sandbox):  # noqa: F811
    telegram.to_business(ANN, "via the company account", CONNECTION)
    await telegram.wait_for(lambda: _in_business_chat(telegram, ANN))
    telegram.say(ANN, "via the bot")
    await telegram.wait_for(lambda: len(sandbox.received) == 2)
    assert sandbox.received[0]["session_id"] != sandbox.received[1]["session_id"]
    direct = await telegram.wait_for_text(ANN, "via the bot")
    assert "business_connection_id" not in direct


async def test_deleted_business_messages_are_logged_and_are_no_error(
        bridge, telegram, sandbox, caplog):  # noqa: F811
    caplog.set_level(logging.INFO)
    telegram.to_business(CAROL, "first", CONNECTION)
    await telegram.wait_for(lambda: sandbox.received)
    telegram.push({"deleted_business_messages": {
        "business_connection_id": CONNECTION, "chat": telegram.private_chat(CAROL),
        "message_ids": [1, 2]}})
    telegram.to_business(CAROL, "after the deletion", CONNECTION)
    await telegram.wait_for(lambda: len(sandbox.received) == 2)
    assert any("deleted in a business chat" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
