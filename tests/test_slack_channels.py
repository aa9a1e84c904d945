"""Support channels: a channel the app's bot is in (a Slack Connect channel shared with a
customer's organisation above all) where every thread is a helpdesk conversation,
answered in the thread for the channel to see. Through the local Slack, events signed as
Slack signs them (HTTP) or sent over Socket Mode."""
from __future__ import annotations

import asyncio

import pytest

from bridge.app import Bridge
from bridge.texts import DEFAULT_TEXTS
from testing.fake_slack import BOT_USER, TEAM, buttons_of
from tests.test_slack import _start as start_slack
from tests.test_slack import slack  # noqa: F401 (a fixture)

SHARED, OTHER, UNLISTED = "C0SHARED", "C0OTHERCO", "C0RANDOM"
CUSTOMER_TEAM = "T0CUSTOMER"
CAROL, DAVE, STAFF, LEAD = "U0CAROL", "U0DAVE", "U0STAFF", "U0LEAD"


async def _start(slack, sandbox, database_url, mode: str, **channel_options) -> Bridge:  # noqa: F811
    options = {"channels": [SHARED, OTHER], "internal_prefix": "!",
               "channel_admins": [LEAD], **channel_options}
    return await start_slack(slack, sandbox, database_url, mode, adapter_options=options)


@pytest.fixture(params=["http", "socket"])
async def bridge(request, slack, sandbox, database_url):  # noqa: F811
    bridge = await _start(slack, sandbox, database_url, request.param)
    yield bridge
    await asyncio.wait_for(bridge.stop(), 20)


async def _customer_asks(slack, channel: str, text: str, user: str = CAROL) -> str:  # noqa: F811
    """A customer's top-level message in a shared channel; its ts (the thread)."""
    body = await slack.say_in_channel(user, channel, text, user_team=CUSTOMER_TEAM)
    return body["event"]["ts"]


async def test_a_thread_is_a_conversation_answered_in_the_thread(
        bridge, slack, sandbox):  # noqa: F811
    root = await _customer_asks(slack, SHARED, "Our export job fails")
    answer = await slack.wait_for(lambda: slack.in_channel(SHARED, "Our export job fails"))
    assert answer["thread_ts"] == root
    await slack.say_in_channel(DAVE, SHARED, "since 9am", thread_ts=root,
                               user_team=CUSTOMER_TEAM)  # a colleague continues it
    await slack.wait_for(lambda: len(sandbox.received) == 2)
    assert sandbox.received[0]["ticket_chat_id"] == sandbox.received[1]["ticket_chat_id"]
    await slack.wait_for(lambda: slack.in_channel(SHARED, "since 9am", thread_ts=root))
    assert not slack.messages.get(OTHER) and not slack.messages.get(slack.dm(CAROL))


async def test_each_thread_is_its_own_conversation_and_a_busy_channel_never_locks(
        bridge, slack, sandbox):  # noqa: F811
    roots = [await _customer_asks(slack, SHARED, f"issue {n}", user=CAROL if n % 2 else DAVE)
             for n in range(5)]  # more than the helpdesk's 3 open per customer
    for n, root in enumerate(roots):
        answer = await slack.wait_for(lambda n=n: slack.in_channel(SHARED, f'"issue {n}"'))
        assert answer["thread_ts"] == root
    assert len({m["ticket_chat_id"] for m in sandbox.received}) == 5
    assert not [m for m in slack.messages[SHARED] if "open conversations" in m["text"]]


async def test_only_the_opener_or_an_admin_may_close_and_another_member_is_told(
        bridge, slack, sandbox):  # noqa: F811
    root = await _customer_asks(slack, SHARED, "resolved")
    prompt = await slack.wait_for(lambda: slack.in_channel(SHARED, "Did this solve", root))
    await slack.press(DAVE, prompt, 0)  # a colleague of Carol's
    note = await slack.wait_for(lambda: slack.ephemerals)
    assert note[0]["user"] == DAVE and note[0]["text"] == DEFAULT_TEXTS["only_opener"]
    await asyncio.sleep(0.3)
    assert not [e for e, _ in sandbox.requests if e == "close_support"]
    assert buttons_of(prompt)  # untouched

    await slack.press(CAROL, prompt, 0)
    await slack.wait_for(lambda: [e for e, _ in sandbox.requests if e == "close_support"])
    rating = await slack.wait_for(lambda: slack.in_channel(SHARED, "How would you rate", root))
    await slack.press(LEAD, rating, 4)  # an admin may
    comment = await slack.wait_for(lambda: slack.in_channel(SHARED, "add a comment", root))
    await slack.press(CAROL, comment, 0)  # Skip
    await slack.wait_for(lambda: [e for e, _ in sandbox.requests if e == "review_support"])
    assert not slack.views  # no modal in a channel: the comment is written in the thread


async def test_bots_unlisted_channels_and_internal_words_are_not_relayed(
        bridge, slack, sandbox):  # noqa: F811
    await slack.say_in_channel("U0OTHERBOT", SHARED, "a bot's report", bot_id="B0OTHER",
                               user_team=CUSTOMER_TEAM)
    await slack.say_in_channel(CAROL, UNLISTED, "not a support channel",
                               user_team=CUSTOMER_TEAM)
    root = await _customer_asks(slack, SHARED, "a real question")
    await slack.say_in_channel(STAFF, SHARED, "! checking with billing", thread_ts=root)
    await slack.wait_for(lambda: sandbox.received)
    await asyncio.sleep(0.5)
    assert [m["message"] for m in sandbox.received] == ["a real question"]
    assert not slack.messages.get(UNLISTED, [])[1:]  # nothing from the app there


async def test_the_own_workspace_may_be_kept_internal(slack, sandbox, database_url):  # noqa: F811
    bridge = await _start(slack, sandbox, database_url, "http", internal_own_workspace=True)
    try:
        root = await _customer_asks(slack, SHARED, "from the customer")
        await slack.say_in_channel(STAFF, SHARED, "staff talking", thread_ts=root,
                                   user_team=TEAM)
        await slack.say_in_channel(CAROL, SHARED, "customer again", thread_ts=root,
                                   user_team=CUSTOMER_TEAM)
        await slack.wait_for(lambda: len(sandbox.received) == 2)
        assert [m["message"] for m in sandbox.received] == ["from the customer",
                                                            "customer again"]
    finally:
        await asyncio.wait_for(bridge.stop(), 20)


async def test_the_slash_command_in_a_support_channel_opens_a_thread_there(
        bridge, slack, sandbox):  # noqa: F811
    await slack.command(CAROL, "where is my refund?", channel=SHARED)
    question = await slack.wait_for(lambda: slack.in_channel(SHARED, "where is my refund?"))
    assert question["text"] == f"<@{CAROL}>: where is my refund?" and "thread_ts" not in question
    answer = await slack.wait_for(lambda: slack.in_channel(
        SHARED, '"where is my refund?"', thread_ts=question["ts"]))
    assert "SATE" in answer["text"]
    assert sandbox.received[0]["message"] == "where is my refund?"
    assert not slack.messages.get(slack.dm(CAROL))


async def test_an_app_mention_opens_a_conversation_once(bridge, slack, sandbox):  # noqa: F811
    body = slack.channel_message(CAROL, OTHER, f"<@{BOT_USER}> can you help?",
                                 user_team=CUSTOMER_TEAM)
    mention = {**body, "event": {k: v for k, v in body["event"].items()
                                 if k not in ("channel_type", "subtype")},
               "event_id": body["event_id"] + "m"}
    mention["event"]["type"] = "app_mention"
    await slack._deliver("events_api", mention, "event")
    await slack._deliver("events_api", body, "event")  # the same message, as a message event
    answer = await slack.wait_for(lambda: slack.in_channel(OTHER, "can you help?"))
    assert answer["thread_ts"] == body["event"]["ts"]
    await asyncio.sleep(0.5)
    assert [m["message"] for m in sandbox.received] == ["can you help?"]
