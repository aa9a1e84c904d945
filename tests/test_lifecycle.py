"""The whole conversation lifecycle, end to end: console adapter -> bridge -> real
Socket.IO -> sandbox helpdesk, on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio

import pytest

from bridge.sandbox import Behaviour, SandboxConversation
from bridge.store import ToCustomer
from tests.conftest import queue_rows


async def _conversation_of(sandbox, text: str):
    for conversation in sandbox.conversations.values():
        if any(m["message"] == text for m in conversation.messages):
            return conversation
    raise AssertionError(f"the sandbox never got {text!r}")


@pytest.mark.parametrize("respond_via", ["event", "ack", "both"])
async def test_hello_resolved_close_rate_comment(make_bridge, sandbox, respond_via):
    sandbox.behaviour = Behaviour(respond_via=respond_via)
    _bridge, console = await make_bridge()

    await console.say("ann", "hello")
    await console.expect("ann", 'SATE: You said: "hello"')
    await console.say("ann", "my problem is resolved")
    prompt = await console.expect("ann", "Did this solve your issue?")
    assert [b.label for b in prompt.message.buttons] == ["Yes, solved", "No, I still need help"]

    await console.press("ann", "Yes")
    await console.expect("ann", "Did this solve your issue? Yes, solved")  # edited in place
    await console.expect("ann", "How would you rate")
    await console.press("ann", "4")
    await console.expect("ann", "Rated 4/5")
    await console.expect("ann", "add a comment")
    await console.say("ann", "quick and friendly")
    await console.expect("ann", "Thanks for your feedback")

    conversation = await _conversation_of(sandbox, "hello")
    await asyncio.sleep(0.1)
    assert not conversation.open
    assert conversation.review == {"rating": "4", "review": "quick and friendly"}
    assert conversation.reads >= 2  # mark_conversation_read after the customer saw replies
    assert [m["message"] for m in sandbox.received] == ["hello", "my problem is resolved"]
    # The comment went into the review, not into the helpdesk as a chat message.
    assert "quick and friendly" not in [m["message"] for m in sandbox.received]


async def test_still_need_help_keeps_it_open_and_skip_sends_rating(make_bridge, sandbox):
    _bridge, console = await make_bridge()
    await console.say("bo", "resolved?")
    await console.expect("bo", "Did this solve your issue?")
    await console.press("bo", "No")
    await console.expect("bo", "stays open")
    await console.say("bo", "one more thing")
    await console.expect("bo", 'You said: "one more thing"')
    conversation = await _conversation_of(sandbox, "resolved?")
    assert conversation.open and len({m["ticket_chat_id"] for m in sandbox.received}) == 1

    await sandbox.suggest_close(conversation.ticket_chat_id)
    await console.expect("bo", "-- Did this solve your issue?", count=2)
    await console.press("bo", "Yes")
    await console.expect("bo", "How would you rate")
    await console.press("bo", "2")
    await console.press("bo", "Skip")
    await console.expect("bo", "Thanks for your feedback")
    await asyncio.sleep(0.1)
    assert conversation.review == {"rating": "2", "review": None}


async def test_agent_takeover_is_announced_with_the_agent_name(make_bridge, sandbox):
    _bridge, console = await make_bridge()
    await console.say("cy", "I want a human")
    await console.expect("cy", "You're now chatting with Alice.")
    await console.expect("cy", "Alice: Hi, Alice here")
    texts = console.shown_texts("cy")
    assert texts.index("-- You're now chatting with Alice.") < texts.index(
        "Alice: Hi, Alice here. How can I help?")


async def test_agent_message_on_both_channels_is_shown_once(make_bridge, sandbox):
    assert sandbox.behaviour.agent_on_both_channels
    _bridge, console = await make_bridge()
    await console.say("di", "hello")
    await console.expect("di", "You said")
    conversation = await _conversation_of(sandbox, "hello")
    await sandbox.agent_reply(conversation.ticket_chat_id, "checking your order now")
    await sandbox.agent_reply(conversation.ticket_chat_id, "found it")
    await console.expect("di", "found it")
    await asyncio.sleep(0.3)  # the second copies had every chance to arrive
    assert [t for t in console.shown_texts("di") if "checking your order" in t] == [
        "Agent: checking your order now"]


async def test_replayed_events_are_shown_once(make_bridge, sandbox):
    sandbox.behaviour.replay_replies = True
    _bridge, console = await make_bridge()
    await console.say("ed", "hello")
    await console.say("ed", "it is resolved")
    await console.expect("ed", "Did this solve")
    await asyncio.sleep(0.3)
    texts = console.shown_texts("ed")
    assert len([t for t in texts if 'You said: "hello"' in t]) == 1
    assert len([t for t in texts if "Did this solve" in t]) == 1


async def test_auto_close_tells_the_customer_and_offers_the_rating(make_bridge, sandbox):
    _bridge, console = await make_bridge()
    await console.say("fa", "bye")
    await console.expect("fa", "closed because it looked resolved")
    await console.expect("fa", "How would you rate")
    await console.press("fa", "5")
    await console.press("fa", "Skip")
    await console.expect("fa", "Thanks for your feedback")
    await console.say("fa", "new question")  # a closed conversation: this opens a new one
    await console.expect("fa", 'You said: "new question"')
    assert len(sandbox.session_conversations(sandbox.received[0]["session_id"])) == 2


async def test_fifty_customers_opening_at_once_each_get_their_own_reply(make_bridge, sandbox):
    sandbox.behaviour.sate_delay = 0.02  # replies overlap with other openings
    _bridge, console = await make_bridge()
    customers = [f"c{n:02d}" for n in range(50)]
    await asyncio.gather(*(console.say(c, f"I am customer {c}") for c in customers))
    await asyncio.gather(*(console.expect(c, f'You said: "I am customer {c}"', timeout=30)
                           for c in customers))
    for customer in customers:
        replies = [t for t in console.shown_texts(customer) if "You said" in t]
        assert replies == [f'SATE: You said: "I am customer {customer}". What else can I do?']
    # and on the helpdesk side: 50 conversations, each with exactly one customer's words
    assert len(sandbox.conversations) == 50
    for conversation in sandbox.conversations.values():
        said = {m["message"] for m in conversation.messages if m["sender"] == "customer"}
        assert len(said) == 1


async def test_three_open_conversations_then_limit_list_and_switch(make_bridge, sandbox):
    _bridge, console = await make_bridge()
    for n in range(1, 4):
        await console.say("gi", f"topic {n}")
        await console.expect("gi", f'You said: "topic {n}"')
        if n < 3:
            await console.command("gi", "new")
    await console.command("gi", "new")
    limit = await console.expect("gi", "You already have 3 open conversations")
    assert [b.label for b in limit.message.buttons] == [
        "Conversation 1", "Conversation 2", "Conversation 3 ✓"]

    await console.press("gi", "Conversation 1")
    await console.expect("gi", "You're now in Conversation 1")
    await console.say("gi", "back to topic 1")
    await console.expect("gi", 'You said: "back to topic 1"')
    first = await _conversation_of(sandbox, "topic 1")
    assert "back to topic 1" in [m["message"] for m in first.messages]
    # a reply in a conversation that is not the active one is labelled
    third = await _conversation_of(sandbox, "topic 3")
    await sandbox.agent_reply(third.ticket_chat_id, "about topic 3")
    await console.expect("gi", "[Conversation 3] Agent: about topic 3")


async def test_the_helpdesk_refusing_a_fourth_conversation_is_explained(make_bridge, sandbox):
    """The server's own limit (a conversation opened elsewhere, e.g. on the web widget)."""
    _bridge, console = await make_bridge()
    await console.say("hu", "first")
    await console.expect("hu", "You said")
    session = sandbox.received[0]["session_id"]
    for n in range(2):  # two more opened outside the bridge
        sandbox.add_conversation(SandboxConversation(
            ticket_chat_id=f"web-{n}", session_id=session, ticket_id=f"t{n}"))
    await console.command("hu", "new")
    await console.say("hu", "fourth")
    await console.expect("hu", "You already have 1 open conversations")
    assert "fourth" not in [m["message"] for m in sandbox.received]


async def test_forged_and_stale_button_presses_are_refused(make_bridge, sandbox):
    bridge, console = await make_bridge()
    await console.say("ida", "it is resolved")
    prompt = await console.expect("ida", "Did this solve")
    yes = prompt.message.buttons[0].action
    await console.press_action("mallory", yes)  # another user replays ida's button
    await console.expect("mallory", "This conversation is no longer open.")
    await console.press_action("mallory", "close:99999:yes")
    await console.press_action("mallory", "rate:abc:5")
    await console.expect("mallory", "no longer open", count=3)
    await asyncio.sleep(0.2)
    assert not [e for e, _ in sandbox.requests if e == "close_support"]

    await console.press("ida", "Yes")
    await console.expect("ida", "How would you rate")
    await console.press_action("ida", yes)  # the same button again: stale
    await console.expect("ida", "no longer open")
    await asyncio.sleep(0.2)
    assert len([e for e, _ in sandbox.requests if e == "close_support"]) == 1


async def test_voice_call_invite_and_end(make_bridge, sandbox):
    _bridge, console = await make_bridge(public_url="https://bridge.example.com")
    await console.say("jo", "hello")
    await console.expect("jo", "You said")
    await console.command("jo", "call")
    invite = await console.expect("jo", "Your voice call is ready")
    conversation = await _conversation_of(sandbox, "hello")
    assert invite.message.url.startswith("https://bridge.example.com/call#")
    assert f"room={conversation.ticket_chat_id}" in invite.message.url
    assert "token=ey" in invite.message.url  # a JWT, in the fragment only
    await sandbox.sate_left_call(conversation.ticket_chat_id)
    await console.expect("jo", "The call has ended.")
    # a second call at once is fine (the first ended); during an agent's watch it is refused
    await sandbox.take_over(conversation.ticket_chat_id)
    await console.command("jo", "call")
    await console.expect("jo", "A voice call isn't possible right now")


async def test_call_without_public_url_is_explained(make_bridge, sandbox):
    _bridge, console = await make_bridge()
    await console.command("ka", "call")
    await console.expect("ka", "Voice calls are not available here.")
    assert not [e for e, _ in sandbox.requests if e == "call_support"]


async def test_duplicate_platform_message_is_sent_once(make_bridge, sandbox):
    _bridge, console = await make_bridge()
    await console.say("lu", "hello", message_id="update-7")
    await console.say("lu", "hello", message_id="update-7")  # the platform redelivered it
    await console.expect("lu", "You said")
    await asyncio.sleep(0.2)
    assert [m["message"] for m in sandbox.received] == ["hello"]


async def test_embedded_as_a_library_from_a_config_file(tmp_path, sandbox, database_url):
    from bridge.app import Bridge
    from testing.console import ConsoleHarness
    from tests.daemon import write_config

    config = write_config(tmp_path / "bridge.toml", sandbox.url, "sandbox-key", database_url)
    console = ConsoleHarness()
    async with Bridge.from_config_file(config, adapters=[console]) as bridge:
        await bridge.relay.link.wait_connected(10)
        await console.say("zoe", "hello from an embedding app")
        await console.expect("zoe", 'You said: "hello from an embedding app"')
    assert bridge.relay.link.connected is False


async def test_platform_errors_are_retried_then_delivered_once(make_bridge, sandbox, caplog):
    from bridge.adapter import DeliveryError

    bridge, console = await make_bridge()
    console.fail_next(DeliveryError("429 Too Many Requests", retry_after=0.2),
                      DeliveryError("502 Bad Gateway"))
    await console.say("rae", "hello")
    await console.expect("rae", 'You said: "hello"', timeout=15)
    await asyncio.sleep(0.2)
    assert len([t for t in console.shown_texts("rae") if "You said" in t]) == 1
    assert "retrying in 0.2s" in caplog.text  # the platform's retry_after was honoured


async def test_a_blocked_bot_marks_the_customer_unreachable_without_retrying(make_bridge, sandbox,
                                                                             caplog):
    from bridge.adapter import DeliveryError

    bridge, console = await make_bridge()
    console.fail_next(DeliveryError("403 Forbidden: bot was blocked by the user", permanent=True))
    await console.say("sam", "hello")
    for _ in range(100):
        customer = await bridge.store.customer_for("console", "console", "sam", "sam")
        if customer.unreachable:
            break
        await asyncio.sleep(0.05)
    assert customer.unreachable
    ticket = sandbox.received[0]["ticket_chat_id"]
    await sandbox.agent_reply(ticket, "are you there?")
    await asyncio.sleep(0.3)
    assert console.shown_texts("sam") == []  # nothing got through, and nothing was retried
    rows = await queue_rows(bridge.store, ToCustomer, customer.id)
    assert {r.status for r in rows} == {"failed"} and all(r.attempts <= 1 for r in rows)
    assert caplog.text.count("customer unreachable") == 1


async def test_a_command_instead_of_a_comment_still_sends_the_rating(make_bridge, sandbox):
    _bridge, console = await make_bridge()
    await console.say("tia", "bye")
    await console.press("tia", "3")
    await console.expect("tia", "add a comment")
    await console.command("tia", "help")
    await console.expect("tia", "Thanks for your feedback")
    await asyncio.sleep(0.2)
    conversation = next(iter(sandbox.conversations.values()))
    assert conversation.review == {"rating": "3", "review": None}


async def test_the_sandbox_agent_api_over_http(make_bridge, sandbox):
    import aiohttp

    _bridge, console = await make_bridge()
    await console.say("uma", "hello")
    await console.expect("uma", "You said")
    ticket = sandbox.received[0]["ticket_chat_id"]
    async with aiohttp.ClientSession(sandbox.url) as http:
        async with http.post("/sandbox/agent/takeover",
                             json={"ticket_chat_id": ticket, "username": "Bob"}) as response:
            assert response.status == 200
        async with http.post("/sandbox/agent/reply",
                             json={"ticket_chat_id": ticket, "message": "Bob here"}) as response:
            assert response.status == 200
        async with http.post("/sandbox/agent/reply",
                             json={"ticket_chat_id": "nope", "message": "x"}) as response:
            assert response.status == 404
        async with http.get("/sandbox/state") as response:
            state = await response.json()
    await console.expect("uma", "You're now chatting with Bob.")
    await console.expect("uma", "Bob: Bob here")
    assert state["conversations"][ticket]["handler"] == "agent"


async def test_the_standalone_sandbox_keeps_a_bounded_history(make_bridge, sandbox):
    """`helpdesk-bridge sandbox` runs for weeks beside a bridge: it keeps the latest
    messages and client events, not all of them."""
    sandbox.history = 2
    _bridge, console = await make_bridge()
    for number in range(1, 8):
        await console.say("ula", f"message {number}")
        await console.expect("ula", f'"message {number}"')
    kept = [m["message"] for m in sandbox.received]
    assert 2 <= len(kept) <= 4 and kept[-1] == "message 7"
    assert len(sandbox.requests) <= 4 and kept == sorted(kept)


async def test_a_task_that_swallows_a_cancellation_is_still_stopped():
    """On Python 3.11 asyncio.wait_for swallows a cancellation that races the end of what
    it waits on; a loop around one then runs on, and a daemon stopping (SIGTERM, or a lease
    lost) waited for it forever. The cancellation is sent again until the task ends."""
    from bridge.tasks import cancel_and_wait

    swallowed = 0

    async def loop_that_swallows_once() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1

    task = asyncio.create_task(loop_that_swallows_once())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([task]), 5)
    assert task.cancelled() and swallowed == 1
