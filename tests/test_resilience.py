"""What the bridge must survive (docs/protocol.md): a restarted helpdesk, dropped
connections, malformed payloads, a helpdesk that does not answer, a refused key."""
from __future__ import annotations

import asyncio

import pytest

from bridge.helpdesk import HelpdeskLink, KeyRefused
from bridge.store import ToHelpdesk
from tests.conftest import fail_once, queue_rows


async def test_helpdesk_restart_mid_conversation(make_bridge, sandbox):
    bridge, console = await make_bridge()
    await console.say("ann", "before the restart")
    await console.expect("ann", 'You said: "before the restart"')
    ticket = sandbox.received[0]["ticket_chat_id"]

    await sandbox.stop()
    for n in range(3):  # written while the helpdesk is away: stored, sent later, in order
        await console.say("ann", f"while down {n}")
    await asyncio.sleep(0.3)
    await sandbox.start()  # same port, same conversations
    await console.expect("ann", 'You said: "while down 2"', timeout=20)

    assert [m["message"] for m in sandbox.received] == [
        "before the restart", "while down 0", "while down 1", "while down 2"]
    assert {m["ticket_chat_id"] for m in sandbox.received} == {ticket}
    # rooms were re-joined: an agent message on the customer room and the conversation
    # room still reaches the customer, once
    await sandbox.agent_reply(ticket, "I am still here")
    await console.expect("ann", "Agent: I am still here")
    await asyncio.sleep(0.2)
    assert console.shown_texts("ann").count("Agent: I am still here") == 1
    assert bridge.relay.link.reconnects >= 1


async def test_dropped_connections_rejoin_rooms(make_bridge, sandbox):
    bridge, console = await make_bridge(connections=3)
    for name in ("a", "b", "c", "d"):
        await console.say(name, f"hi from {name}")
    for name in ("a", "b", "c", "d"):
        await console.expect(name, f'You said: "hi from {name}"')
    await sandbox.drop_connections()
    await asyncio.sleep(0.1)
    await bridge.relay.link.wait_connected(10)
    await asyncio.sleep(0.2)  # the rooms are re-joined right after connecting
    for conversation in sandbox.conversations.values():
        await sandbox.auto_close(conversation.ticket_chat_id)  # sent to the customer room
    for name in ("a", "b", "c", "d"):
        await console.expect(name, "closed because it looked resolved")


async def test_after_a_reconnect_a_customer_who_writes_goes_ahead_of_the_rooms_rejoined(
        make_bridge, sandbox):
    """A helpdesk back after a restart has every open conversation's rooms to join again.
    A customer who writes then is not made to wait behind all of them: their own rooms and
    message go first, the others are joined a window at a time; and all are joined."""
    bridge, console = await make_bridge(connections=2)
    names = [f"c{n}" for n in range(150)]  # 300 rooms: a customer's and a conversation's each
    for name in names:
        await console.say(name, "hi")
    for name in names:
        await console.expect(name, 'You said: "hi"', timeout=20)
    sandbox.behaviour.request_cost = 0.005  # one request at a time: 1.5 s of joins
    handled_before = len(sandbox.requests)
    await sandbox.drop_connections()
    await bridge.relay.link.wait_connected(10)
    await console.say("c77", "back again")
    await console.expect("c77", 'You said: "back again"', timeout=20)

    handled = sandbox.requests[handled_before:]
    message_at = next(i for i, (name, data) in enumerate(handled)
                      if name == "support" and data.get("message") == "back again")
    joins_before = sum(1 for name, _ in handled[:message_at] if name.startswith("enter_"))
    assert joins_before < 200, f"the message waited behind {joins_before} of 300 room joins"

    def rooms_joined() -> set:
        return {tuple(data.items())[0] for name, data in sandbox.requests[handled_before:]
                if name.startswith("enter_")}
    for _ in range(200):  # every room is joined again in the end
        if len(rooms_joined()) >= 300:
            break
        await asyncio.sleep(0.05)
    assert len(rooms_joined()) == 300
    for conversation in sandbox.conversations.values():
        await sandbox.auto_close(conversation.ticket_chat_id)
    for name in names:
        await console.expect(name, "closed because it looked resolved", timeout=20)


@pytest.mark.parametrize("payload", [
    "not an object", 42, None, [], {"status_code": "teapot"},
    {"status_code": 200, "data": "a string"},
    {"status_code": 200, "data": {"message": "no ticket id"}},
    {"status_code": 200, "data": {"ticket_chat_id": "x", "message": 5}},
    {"status_code": 200, "data": {"ticket_chat_id": "x", "message": "m", "date_created": "soon"}},
    {"status_code": 200, "data": {"ticket_chat_id": "x", "message": "m", "sender": "robot"}},
    {"status_code": 200, "data": {"ticket_chat_id": "x", "message": "m",
                                  "date_created": "9999-12-31T23:00:00-05:00"}},
])
async def test_malformed_payloads_are_skipped(make_bridge, sandbox, payload):
    bridge, console = await make_bridge(connections=1)
    await console.say("mo", "hello")
    await console.expect("mo", "You said")
    for event in ("support", "customer_support", "support_handler_changed",
                  "customer_support_closed", "call_support", "sate_left_call", "support_echo"):
        await sandbox.emit_raw(event, payload)
    await console.say("mo", "still there?")
    await console.expect("mo", 'You said: "still there?"')  # the link survived
    assert bridge.relay.link.connected


async def test_a_helpdesk_that_does_not_answer_never_hangs_and_loses_nothing(make_bridge, sandbox):
    """The helpdesk swallows a message without an echo: the bridge waits (patiently, since
    a re-send could double it), then recycles the connection and sends it again."""
    bridge, console = await make_bridge(request_timeout=0.3)
    sandbox.behaviour.silent = True
    await console.say("ned", "anyone?")
    await asyncio.sleep(1.6)  # past 4 x request_timeout: the first attempt was given up
    customer = await bridge.store.customer_for("console", "console", "ned", "ned")
    rows = await queue_rows(bridge.store, ToHelpdesk, customer.id)
    assert [r.status for r in rows] == ["queued"] and rows[0].attempts >= 1
    sandbox.behaviour.silent = False
    await console.expect("ned", 'You said: "anyone?"', timeout=20)
    # SATE's answer is stored only after the message it answers is marked done
    rows = await queue_rows(bridge.store, ToHelpdesk, customer.id)
    assert [r.status for r in rows] == ["done"]
    # The protocol's window: the swallowed copy exists on the helpdesk too. Each attempt
    # waited 4 x request_timeout, so there are few copies, not one per retry tick.
    copies = [m for m in sandbox.received if m["message"] == "anyone?"]
    assert 2 <= len(copies) <= 3


async def test_a_refused_key_is_reported_plainly_without_a_reconnect_storm(sandbox):
    link = HelpdeskLink(sandbox.url, "not-the-key", _ignore, connections=4)
    await link.start()
    with pytest.raises(KeyRefused, match="helpdesk refused the API key"):
        await link.wait_connected(10)
    await asyncio.sleep(1.0)
    assert sandbox.refused <= 4  # one attempt per connection, then it stopped
    await link.stop()


async def test_responses_arrive_by_ack_or_event(sandbox):
    """request() resolves whichever way the helpdesk answers, and raises on errors."""
    from bridge.protocol import HelpdeskError

    seen = []

    async def collect(event):
        seen.append(event)

    link = HelpdeskLink(sandbox.url, "sandbox-key", collect, connections=1, request_timeout=2)
    await link.start()
    await link.wait_connected(5)
    bound = []

    async def bind(ticket):
        bound.append(ticket)
        return True  # the id was free

    ticket = await link.open_conversation("sess-1", bind, text="hello")
    assert bound == [ticket]
    for mode in ("event", "ack", "both"):
        sandbox.behaviour.respond_via = mode
        envelope = await link.request("sess-1", "mark_conversation_read",
                                      {"ticket_chat_id": ticket, "entity": "customer"})
        assert envelope.message == "Marked as read"
        with pytest.raises(HelpdeskError) as refused:
            await link.request("sess-1", "review_support",
                               {"ticket_chat_id": ticket, "rating": "6"})
        assert refused.value.status_code == 400
        with pytest.raises(HelpdeskError) as missing:
            await link.request("sess-1", "enter_support", {"ticket_chat_id": "nope"})
        assert missing.value.status_code == 404
    # a call, ended by the client: close_call_support is broadcast back
    sandbox.behaviour.respond_via = "event"
    envelope = await link.request("sess-1", "call_support",
                                  {"session_id": "sess-1", "ticket_chat_id": ticket})
    assert envelope.data["room"] == ticket and envelope.data["token"].count(".") == 2
    call_id = envelope.data["ticket_call_id"]
    envelope = await link.request("sess-1", "close_call_support", {"ticket_chat_id": ticket})
    assert envelope.data["ticket_call_id"] == call_id and envelope.data["call_end_time"]
    kinds = [type(e).__name__ for e in seen]
    assert "CallStarted" in kinds and "CallEnded" in kinds  # the broadcasts reach the core too
    await link.unwatch_conversation("sess-1", ticket)
    await asyncio.sleep(0.1)
    assert ("leave_support", {"ticket_chat_id": ticket}) in sandbox.requests
    await link.stop()


@pytest.mark.parametrize("mode", ["event", "ack", "both"])
async def test_answered_requests_leave_nothing_behind(sandbox, caplog, mode):
    """A helpdesk that answers by event never acknowledges: the Socket.IO client would keep
    every request's ack callback until the next reconnect (months, for a daemon)."""
    link = HelpdeskLink(sandbox.url, "sandbox-key", _ignore, connections=1,
                        request_timeout=0.3)
    await link.start()
    await link.wait_connected(5)
    ticket = await link.open_conversation("sess-m", _id_free, text="hello")
    sandbox.behaviour.respond_via = mode
    for _ in range(50):
        await link.request("sess-m", "mark_conversation_read",
                           {"ticket_chat_id": ticket, "entity": "customer"})
    client = link._connections[0].client
    await asyncio.sleep(0.6)  # past the request timeout: late acks have had their chance
    pending = {k: v for k, v in client.callbacks.get("/helpdesk", {}).items() if k != 0}
    assert pending == {}
    assert len(link._connections[0].answers) <= 1  # answers kept only until recorded
    assert "Unknown callback" not in caplog.text  # an ack that came found its callback
    await link.stop()


async def _ignore(*_args) -> None:
    pass


async def _id_free(_ticket_chat_id: str) -> bool:
    """A bind whose id no other conversation has."""
    return True


async def test_echo_carrying_the_id_opens_without_waiting_for_sate(sandbox):
    sandbox.behaviour.echo_carries_id = True
    sandbox.behaviour.sate_delay = 5  # SATE is slow; the echo alone must be enough

    link = HelpdeskLink(sandbox.url, "sandbox-key", _ignore, connections=1, request_timeout=2)
    await link.start()
    await link.wait_connected(5)

    tickets = [await link.open_conversation(f"s{n}", _id_free, text="hi") for n in range(3)]
    assert len(set(tickets)) == 3
    assert [c.session_id for c in sandbox.conversations.values()] == ["s0", "s1", "s2"]
    await link.stop()



async def _until(predicate, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("mode", ["event", "ack"])
async def test_the_reply_to_a_message_waits_until_the_message_is_recorded(sandbox, mode):
    """SATE answers at once, on the same connection: its reply must not be handled while
    the caller is still recording that the helpdesk has the message (a slow database),
    else a crash in between would leave a reply stored and its message queued."""
    seen: list[str] = []

    async def collect(event):
        seen.append(type(event).__name__)

    async def slow_record(what: str) -> bool:
        await asyncio.sleep(0.5)
        seen.append(what)
        return True

    link = HelpdeskLink(sandbox.url, "sandbox-key", collect, connections=1, request_timeout=2)
    await link.start()
    await link.wait_connected(5)
    sandbox.behaviour.respond_via = mode
    ticket = await link.open_conversation("sess-r", lambda _id: slow_record("bound"),
                                          text="hello")
    await _until(lambda: "HelpdeskMessage" in seen)
    assert seen == ["bound", "HelpdeskMessage"]

    seen.clear()
    await link.send_message("sess-r", ticket, "order 4567",
                            delivered=lambda: slow_record("recorded"))
    await _until(lambda: "HelpdeskMessage" in seen)
    assert seen == ["recorded", "HelpdeskMessage"]
    await link.stop()


async def test_a_caller_that_never_records_delays_the_events_behind_it_but_not_forever(sandbox):
    seen: list[str] = []

    async def collect(event):
        seen.append(type(event).__name__)

    link = HelpdeskLink(sandbox.url, "sandbox-key", collect, connections=1, request_timeout=1)
    await link.start()
    await link.wait_connected(5)
    ticket = await link.open_conversation("sess-s", _id_free, text="hello")
    await _until(lambda: "HelpdeskMessage" in seen)

    seen.clear()
    stuck = asyncio.ensure_future(link.send_message(
        "sess-s", ticket, "order 4567", delivered=asyncio.Event().wait))
    await asyncio.sleep(0.5)
    assert seen == []  # held back behind the unrecorded answer
    await _until(lambda: "HelpdeskMessage" in seen, timeout=3)  # then passed on
    stuck.cancel()
    await link.stop()


async def test_one_conversation_held_back_does_not_hold_up_another(sandbox):
    """Two customers on one connection: while the first one's answer is still being
    recorded (held back, up to request_timeout), the second one's reply comes through."""
    seen = []

    async def collect(event):
        seen.append(event.ticket_chat_id)

    link = HelpdeskLink(sandbox.url, "sandbox-key", collect, connections=1, request_timeout=3)
    await link.start()
    await link.wait_connected(5)
    first = await link.open_conversation("sess-1", _id_free, text="hi")
    second = await link.open_conversation("sess-2", _id_free, text="hi")
    await _until(lambda: first in seen and second in seen)

    seen.clear()
    stuck = asyncio.ensure_future(link.send_message(
        "sess-1", first, "order 4567", delivered=asyncio.Event().wait))
    await asyncio.sleep(0.2)
    await link.send_message("sess-2", second, "order 8910")
    await _until(lambda: second in seen, timeout=1.5)
    assert first not in seen  # still held back
    stuck.cancel()
    await link.stop()


async def test_a_failure_to_record_an_answer_is_not_taken_for_a_silent_helpdesk(sandbox):
    """The database timing out while the caller records an answer is the caller's error:
    not "no answer from the helpdesk", and no reconnect (which would drop every customer's
    events in flight on that connection)."""
    link = HelpdeskLink(sandbox.url, "sandbox-key", _ignore, connections=1, request_timeout=2)
    await link.start()
    await link.wait_connected(5)
    ticket = await link.open_conversation("sess-t", _id_free, text="hello")
    connects = sandbox.connects

    async def database_times_out():
        raise asyncio.TimeoutError

    with pytest.raises(asyncio.TimeoutError):
        await link.send_message("sess-t", ticket, "order 4567", delivered=database_times_out)
    await asyncio.sleep(0.3)
    assert sandbox.connects == connects and link.connected
    await link.stop()


# PostgreSQL only: failing one write on cue needs a trigger and a sequence.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("table, status, log_line", [
    ("to_helpdesk", "done", "could not record that the helpdesk has a message; retrying"),
    ("to_customer", "delivered", "could not record that console showed a reply; retrying"),
], ids=["to-helpdesk", "to-customer"])
async def test_a_database_blip_while_recording_what_the_far_end_did_doubles_nothing(
        make_bridge, sandbox, database_url, caplog, table, status, log_line):
    """The far end took it (the helpdesk's echo, the platform's answer), then the database
    fails for a moment: the record is retried, not the sending."""
    bridge, console = await make_bridge()
    async with bridge.store.engine.begin() as connection:
        for statement in fail_once(table, "UPDATE",
                                   f"NEW.status = '{status}' AND OLD.status <> '{status}'"):
            await connection.exec_driver_sql(statement)
    await console.say("ann", "hello")
    await console.expect("ann", 'You said: "hello"')
    await asyncio.sleep(1.5)  # a second copy would be sent and shown by now
    assert [m["message"] for m in sandbox.received] == ["hello"]
    assert len([t for t in console.shown_texts("ann") if 'You said: "hello"' in t]) == 1
    assert log_line in caplog.text
