"""A bot with topics in private chats (has_topics_enabled) shows each helpdesk
conversation in its own topic; a topic Telegram refuses falls back to the plain chat.
Through the local Bot API server, with updates as Telegram sends them."""
from __future__ import annotations

import asyncio

import pytest

from tests.test_telegram import ANN, _buttons, start_bridge, telegram  # noqa: F401 (fixture)


@pytest.fixture
async def bridge(telegram, sandbox, database_url):  # noqa: F811
    telegram.topics_enabled = True
    bridge = await start_bridge(telegram, sandbox, database_url)
    yield bridge
    await asyncio.wait_for(bridge.stop(), 20)


async def test_two_topics_are_two_conversations_answered_each_in_its_own(
        bridge, telegram, sandbox):  # noqa: F811
    billing = telegram.topic_by_user(ANN, "Billing")
    login = telegram.topic_by_user(ANN, "Login")
    telegram.say_in_topic(ANN, billing, "my invoice is wrong")
    telegram.say_in_topic(ANN, login, "I cannot log in")
    await telegram.wait_for(lambda: len(sandbox.received) == 2)
    assert len({m["ticket_chat_id"] for m in sandbox.received}) == 2
    await telegram.wait_for(lambda: telegram.sent_in(ANN, billing) and telegram.sent_in(ANN, login))
    assert "my invoice is wrong" in telegram.sent_in(ANN, billing)[0]["text"]
    assert "I cannot log in" in telegram.sent_in(ANN, login)[0]["text"]

    telegram.say_in_topic(ANN, billing, "it is the March one")  # continues the first
    await telegram.wait_for(lambda: len(sandbox.received) == 3)
    by_text = {m["message"]: m["ticket_chat_id"] for m in sandbox.received}
    assert by_text["it is the March one"] == by_text["my invoice is wrong"]
    await telegram.wait_for(lambda: len(telegram.sent_in(ANN, billing)) == 2)
    assert telegram.sent_in(ANN, None) == []  # nothing outside the topics, and no labels
    assert not any(m["text"].startswith("[") for m in telegram.sent_to(ANN))


async def test_the_close_prompt_and_rating_arrive_in_the_topic_which_then_closes(
        bridge, telegram, sandbox):  # noqa: F811
    topic = telegram.topic_by_user(ANN, "Printer")
    telegram.say_in_topic(ANN, topic, "resolved")
    prompt = await telegram.wait_for_text(ANN, "Did this solve your issue?")
    assert prompt["message_thread_id"] == topic
    telegram.press(ANN, prompt, _buttons(prompt)[0]["callback_data"])
    rating = await telegram.wait_for_text(ANN, "How would you rate")
    assert rating["message_thread_id"] == topic
    telegram.press(ANN, rating, _buttons(rating)[4]["callback_data"])
    comment = await telegram.wait_for_text(ANN, "add a comment")
    telegram.say_in_topic(ANN, topic, "great")
    await telegram.wait_for(lambda: comment["text"] == "Thanks for your feedback!")
    await telegram.wait_for(lambda: telegram.topics[ANN][topic]["closed"])


async def test_a_message_outside_any_topic_gets_a_topic_named_after_its_first_words(
        bridge, telegram, sandbox):  # noqa: F811
    telegram.say(ANN, "My parcel never arrived\nOrder 1234")
    answer = await telegram.wait_for_text(ANN, "My parcel never arrived")
    thread = answer["message_thread_id"]
    assert telegram.topics[ANN][thread]["name"] == "My parcel never arrived"
    telegram.say_in_topic(ANN, thread, "any news?")  # writing in it continues that one
    await telegram.wait_for(lambda: len(sandbox.received) == 2)
    assert sandbox.received[0]["ticket_chat_id"] == sandbox.received[1]["ticket_chat_id"]
    await telegram.wait_for(lambda: len(telegram.sent_in(ANN, thread)) == 2)
    assert len(telegram.calls_of("createForumTopic")) == 1


async def test_new_opens_a_topic_that_is_named_by_its_first_message(
        bridge, telegram, sandbox):  # noqa: F811
    first = telegram.topic_by_user(ANN, "Old issue")
    telegram.say_in_topic(ANN, first, "first issue")
    await telegram.wait_for(lambda: telegram.sent_in(ANN, first))
    telegram.say_in_topic(ANN, first, "/new")
    notice = await telegram.wait_for_text(ANN, "your next message starts a new conversation")
    thread = notice["message_thread_id"]
    assert thread != first and telegram.topics[ANN][thread]["name"] == "New conversation"
    telegram.say_in_topic(ANN, thread, "Second issue: refunds")
    await telegram.wait_for(lambda: len(sandbox.received) == 2)
    assert sandbox.received[0]["ticket_chat_id"] != sandbox.received[1]["ticket_chat_id"]
    await telegram.wait_for(lambda: telegram.topics[ANN][thread]["name"] == "Second issue: refunds")
    await telegram.wait_for(lambda: any("refunds" in m["text"]
                                        for m in telegram.sent_in(ANN, thread)))


async def test_close_typed_in_a_topic_closes_that_topics_conversation(
        bridge, telegram, sandbox):  # noqa: F811
    one, two = telegram.topic_by_user(ANN, "One"), telegram.topic_by_user(ANN, "Two")
    telegram.say_in_topic(ANN, one, "issue one")
    await telegram.wait_for(lambda: telegram.sent_in(ANN, one))
    telegram.say_in_topic(ANN, two, "issue two")  # the active conversation is now two's
    await telegram.wait_for(lambda: telegram.sent_in(ANN, two))
    telegram.say_in_topic(ANN, one, "/close")
    prompt = await telegram.wait_for_text(ANN, "Did this solve your issue?")
    assert prompt["message_thread_id"] == one


async def test_a_topic_telegram_cannot_find_falls_back_to_the_plain_chat(
        bridge, telegram, sandbox):  # noqa: F811
    topic = telegram.topic_by_user(ANN, "Gone soon")
    telegram.say_in_topic(ANN, topic, "hello")
    await telegram.wait_for(lambda: telegram.sent_in(ANN, topic))
    del telegram.topics[ANN][topic]  # Telegram now answers "message thread not found"
    telegram.say_in_topic(ANN, topic, "still there?")
    answer = await telegram.wait_for_text(ANN, "still there?")
    assert "message_thread_id" not in answer  # in the plain chat, not lost
    assert len(sandbox.received) == 2


async def test_a_refused_topic_leaves_the_conversation_in_the_plain_chat(
        bridge, telegram, sandbox):  # noqa: F811
    telegram.fail("createForumTopic", 400, "Bad Request: BOT_FORUM_CREATE_FORBIDDEN")
    telegram.say(ANN, "hello")
    answer = await telegram.wait_for_text(ANN, 'You said: "hello"')
    assert "message_thread_id" not in answer
    telegram.say(ANN, "again")
    await telegram.wait_for_text(ANN, 'You said: "again"')
    assert len(telegram.calls_of("createForumTopic")) == 1  # not asked again for every message
