"""Arbitrary Telegram updates through the adapter's real dispatch (the path both polling
and the webhook take): either the update is skipped, or what reaches the core is
well-formed; nothing raises, so no update can wedge the polling loop."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telegram import Update

from adapters.telegram import TelegramAdapter, TelegramSettings
from bridge.events import ButtonPress, Command, InboundMessage
from bridge.http import HttpServer
from testing.fake_telegram import FakeTelegram
from tests.test_protocol_fuzz import json_values
from tests.test_telegram import TOKEN

user_ids = st.integers(min_value=1, max_value=2**40)
users = st.fixed_dictionaries({"id": user_ids, "is_bot": st.booleans(),
                               "first_name": st.text(min_size=1, max_size=8)},
                              optional={"language_code": st.sampled_from(["en", "de", ""]),
                                        "username": st.text(max_size=8)})
chats = st.fixed_dictionaries({"id": st.integers(min_value=-2**40, max_value=2**40),
                               "type": st.sampled_from(["private", "group", "supergroup",
                                                        "channel"])})
texts = st.sampled_from(["/start", "/new", "/close now", "/help@support_bot", "/unknown", "hi",
                         "", " "]) | st.text(max_size=40)
entities = st.lists(st.fixed_dictionaries({
    "type": st.sampled_from(["bot_command", "bold", "url"]),
    "offset": st.integers(0, 5), "length": st.integers(0, 12)}), max_size=2)
photos = st.lists(st.fixed_dictionaries({
    "file_id": st.text(min_size=1, max_size=10), "file_unique_id": st.just("u"),
    "width": st.integers(1, 9), "height": st.integers(1, 9)}), max_size=2)
messages = st.fixed_dictionaries({
    "message_id": st.integers(1, 2**31), "date": st.integers(0, 2**31), "chat": chats,
}, optional={"from": users, "text": texts, "entities": entities, "caption": st.text(max_size=10),
             "photo": photos, "edit_date": st.integers(0, 2**31),
             "document": st.fixed_dictionaries({"file_id": st.text(min_size=1, max_size=8),
                                                "file_unique_id": st.just("d")})})
callbacks = st.fixed_dictionaries({
    "id": st.text(min_size=1, max_size=8), "from": users,
    "chat_instance": st.just("-1"),
}, optional={"data": st.text(max_size=64) | st.sampled_from(["close:1:yes", "rate:1:5"]),
             "message": messages})
updates = st.fixed_dictionaries({"update_id": st.integers(1, 2**31)}, optional={
    "message": messages, "edited_message": messages, "callback_query": callbacks,
    "channel_post": messages, "poll": json_values})


@pytest.fixture
async def adapter():
    telegram = FakeTelegram(TOKEN)
    await telegram.start()
    adapter = TelegramAdapter(TelegramSettings(token=TOKEN, api_url=telegram.url))
    received: list = []

    async def sink(event) -> None:
        received.append(event)

    adapter._sink = sink  # the core's side of dispatch(); the Bot API side is real
    adapter._http = HttpServer("127.0.0.1:0", "https://bridge.example.com")
    await adapter.bot.initialize()
    yield adapter, received
    await adapter.bot.shutdown()
    await telegram.stop()


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=updates)
async def test_arbitrary_updates(adapter, data):
    telegram_adapter, received = adapter
    received.clear()
    try:
        update = Update.de_json(data, telegram_adapter.bot)
    except Exception:
        return  # PTB refuses it before the adapter sees it: skipped by the receiver
    await telegram_adapter.dispatch(update)
    for event in received:
        assert isinstance(event, (InboundMessage, ButtonPress, Command))
        assert event.user.platform == "telegram" and event.user.user_id.isdigit()
        if isinstance(event, InboundMessage):
            assert event.text.strip() or event.attachment is not None
            if event.attachment:
                assert TOKEN not in str(event.attachment) and TOKEN.split(":")[1] not in \
                    str(event.attachment)


async def test_the_fuzzed_path_does_deliver_a_plain_message(adapter):
    """Guards the property test against passing vacuously."""
    telegram_adapter, received = adapter
    await telegram_adapter.dispatch(Update.de_json({"update_id": 1, "message": {
        "message_id": 5, "date": 0, "text": "hello",
        "chat": {"id": 42, "type": "private"},
        "from": {"id": 42, "is_bot": False, "first_name": "Ann"}}}, telegram_adapter.bot))
    assert [(type(e).__name__, e.text) for e in received] == [("InboundMessage", "hello")]
