"""A customer company's Telegram group as a support channel (groups = "conversations"):
members who mention the bot or reply to it each have their own conversations, answered
in the group; other chatter is not read. Through the local Bot API server."""
from __future__ import annotations

import asyncio

import pytest

from adapters.telegram import TelegramAdapter
from bridge.app import Bridge
from bridge.texts import DEFAULT_TEXTS
from testing.local import free_port
from tests.test_telegram import ANN, BOB, _buttons, _settings, telegram  # noqa: F401 (fixture)

GROUP = {"id": -1001234567, "type": "supergroup", "title": "Acme Ltd"}
FORUM = {"id": -1007654321, "type": "supergroup", "title": "Globex", "is_forum": True}


@pytest.fixture
async def bridge(telegram, sandbox, database_url):  # noqa: F811
    port = free_port()
    settings = _settings(telegram, sandbox, database_url, public_url=f"http://127.0.0.1:{port}")
    telegram_settings = settings.adapters["telegram"].model_copy(
        update={"groups": "conversations"})
    settings = settings.model_copy(update={
        "http": settings.http.model_copy(update={"listen": f"127.0.0.1:{port}"})})
    bridge = Bridge(settings, [TelegramAdapter(telegram_settings)])
    await bridge.start()
    await bridge.relay.link.wait_connected(10)
    yield bridge
    await asyncio.wait_for(bridge.stop(), 20)


def _in_group(telegram, user_id: int, text: str, chat: dict = GROUP, **fields) -> dict:  # noqa: F811
    message = telegram.text(user_id, text, first_name="Bob" if user_id == BOB else "Ann",
                            chat=chat)
    message.update(fields)
    telegram.push({"message": message})
    return message


async def test_a_mention_opens_a_conversation_answered_as_a_reply_in_the_group(
        bridge, telegram, sandbox):  # noqa: F811
    asked = _in_group(telegram, ANN, "@support_bot our invoices are missing")
    answer = await telegram.wait_for_text(GROUP["id"], "our invoices are missing")
    assert sandbox.received[0]["message"] == "our invoices are missing"  # without the mention
    assert answer["reply_to_message"]["message_id"] == asked["message_id"]
    # replying to the bot's answer continues the same conversation, no mention needed
    _in_group(telegram, ANN, "since Monday", reply_to_message=answer)
    await telegram.wait_for(lambda: len(sandbox.received) == 2)
    assert sandbox.received[0]["ticket_chat_id"] == sandbox.received[1]["ticket_chat_id"]
    assert telegram.sent_to(ANN) == []  # nothing went to Ann's private chat


async def test_a_second_member_has_a_conversation_of_their_own(
        bridge, telegram, sandbox):  # noqa: F811
    _in_group(telegram, ANN, "@support_bot the printer is down")
    await telegram.wait_for(lambda: len(sandbox.received) == 1)
    bobs = _in_group(telegram, BOB, "@support_bot I need a refund")
    answer = await telegram.wait_for_text(GROUP["id"], "I need a refund")
    assert answer["reply_to_message"]["message_id"] == bobs["message_id"]
    assert len({m["session_id"] for m in sandbox.received}) == 2
    assert len({m["ticket_chat_id"] for m in sandbox.received}) == 2


async def test_a_member_pressing_someone_elses_button_is_refused_and_nothing_is_sent(
        bridge, telegram, sandbox):  # noqa: F811
    _in_group(telegram, ANN, "@support_bot resolved")
    prompt = await telegram.wait_for_text(GROUP["id"], "Did this solve your issue?")
    telegram.press(BOB, prompt, _buttons(prompt)[0]["callback_data"])
    answered = await telegram.wait_for(lambda: telegram.calls_of("answerCallbackQuery"))
    assert answered[0].params["text"] == DEFAULT_TEXTS["only_opener"] and answered[0].params["show_alert"]
    await asyncio.sleep(0.3)
    assert not [e for e, _ in sandbox.requests if e == "close_support"]
    assert "reply_markup" in prompt and "Yes, solved" not in prompt["text"]

    telegram.press(ANN, prompt, _buttons(prompt)[0]["callback_data"])  # the opener may
    await telegram.wait_for(lambda: "Yes, solved" in prompt["text"])
    await telegram.wait_for(lambda: [e for e, _ in sandbox.requests if e == "close_support"])


async def test_chatter_that_does_not_address_the_bot_is_not_read(
        bridge, telegram, sandbox):  # noqa: F811
    _in_group(telegram, ANN, "lunch at noon?")
    _in_group(telegram, BOB, "sure, ask @someone_else")
    _in_group(telegram, BOB, "@support_bot hello")  # the only one for the helpdesk
    await telegram.wait_for(lambda: sandbox.received)
    await asyncio.sleep(0.3)
    assert [m["message"] for m in sandbox.received] == ["hello"]


async def test_in_a_forum_group_each_topic_is_a_conversation_answered_in_it(
        bridge, telegram, sandbox):  # noqa: F811
    api, billing = (telegram.topic_by_user(FORUM["id"], name) for name in ("API", "Billing"))
    asked = _in_group(telegram, ANN, "@support_bot is the API down?", chat=FORUM,
                      message_thread_id=api, is_topic_message=True)
    answer = await telegram.wait_for_text(FORUM["id"], "is the API down?")
    assert answer["message_thread_id"] == api
    assert answer["reply_to_message"]["message_id"] == asked["message_id"]
    _in_group(telegram, ANN, "@support_bot and my invoice?", chat=FORUM,
              message_thread_id=billing, is_topic_message=True)
    await telegram.wait_for(lambda: len(sandbox.received) == 2)
    assert sandbox.received[0]["ticket_chat_id"] != sandbox.received[1]["ticket_chat_id"]
    await telegram.wait_for_text(FORUM["id"], "and my invoice?")
    await sandbox.agent_reply(sandbox.received[0]["ticket_chat_id"], "The API is back up.")
    late = await telegram.wait_for_text(FORUM["id"], "The API is back up.")
    assert late["message_thread_id"] == api  # the first conversation's topic, not the latest
