"""The helpdesk link's parts alone, with envelopes made here: matching answers to requests
(bridge/answers.py) and the per-conversation lanes of events (bridge/lanes.py)."""
from __future__ import annotations

import asyncio

import pytest

from bridge.answers import Answers, Waiter
from bridge.lanes import EventLanes
from bridge.protocol import Envelope, HelpdeskMessage


def _waiter(event: str, ticket: str | None = None) -> Waiter:
    return Waiter(event, ticket, asyncio.get_running_loop().create_future())


def _envelope(ticket: str | None = None, status: int = 200) -> Envelope:
    return Envelope(status, "", {"ticket_chat_id": ticket} if ticket else {})


async def test_an_event_answers_the_oldest_request_waiting_for_it_in_its_conversation():
    answers = Answers()
    first, second, other = _waiter("support_echo", "t1"), _waiter("support_echo", "t1"), \
        _waiter("support_echo", "t2")
    for waiter in (first, second, other):
        answers.expect(waiter)
    answers.resolve("support_echo", _envelope("t2"))
    answers.resolve("support_echo", _envelope("t1"))
    assert other.future.done() and first.future.done() and not second.future.done()
    answers.resolve("close_support", _envelope("t1"))  # not what anyone waits for
    assert not second.future.done()
    answers.resolve("support", _envelope("t1", status=400))  # a refusal answers the echo
    assert second.future.result().status_code == 400


async def test_answers_hold_their_conversations_events_until_recorded():
    answers = Answers()
    opening, follow_up = _waiter("support_echo"), _waiter("support_echo", "t1")
    for waiter in (opening, follow_up):
        answers.expect(waiter)
        answers.answer(waiter, _envelope())
    assert answers.unrecorded("t1") == [opening, follow_up]
    assert answers.unrecorded("t2") == [opening]  # an opening holds every conversation
    opening.handed_over.set()
    assert answers.unrecorded("t2") == [] and len(answers) == 1
    follow_up.handed_over.set()
    assert answers.unrecorded("t1") == [] and len(answers) == 0


async def test_a_dropped_connection_fails_every_request_still_waiting():
    answers = Answers()
    waiting, answered = _waiter("support_echo"), _waiter("call_support")
    answers.expect(waiting)
    answers.expect(answered)
    answers.answer(answered, _envelope())
    answers.fail(ConnectionError("gone"))
    with pytest.raises(ConnectionError):
        waiting.future.result()
    assert answered.future.result().ok


def _message(ticket: str, text: str) -> HelpdeskMessage:
    return HelpdeskMessage(ticket, "sate", text, "")


async def test_lanes_keep_each_conversations_order_and_do_not_wait_for_each_other():
    seen: list[str] = []
    slow = asyncio.Event()

    async def on_event(event: HelpdeskMessage) -> None:
        if event.text == "t1 first":
            await slow.wait()
        seen.append(event.text)

    lanes = EventLanes(on_event, hold_timeout=5)
    lanes.start()
    for ticket, text in (("t1", "t1 first"), ("t1", "t1 second"), ("t2", "t2 only")):
        lanes.add("support", _message(ticket, text), holds=[])
    await asyncio.sleep(0.05)
    assert seen == ["t2 only"]  # t1 is held up by its first event, t2 is not
    slow.set()
    await asyncio.sleep(0.05)
    assert seen == ["t2 only", "t1 first", "t1 second"]
    await lanes.stop(grace=1)


async def test_an_event_waits_for_the_answer_before_it_but_not_forever():
    seen: list[str] = []

    async def on_event(event: HelpdeskMessage) -> None:
        seen.append(event.text)

    lanes = EventLanes(on_event, hold_timeout=0.3)
    lanes.start()
    recorded, stuck = _waiter("support_echo", "t1"), _waiter("support_echo", "t2")
    lanes.add("support", _message("t1", "after the recorded one"), holds=[recorded])
    lanes.add("support", _message("t2", "after the stuck one"), holds=[stuck])
    await asyncio.sleep(0.1)
    assert seen == []
    recorded.handed_over.set()
    await asyncio.sleep(0.05)
    assert seen == ["after the recorded one"]
    await asyncio.sleep(0.3)  # the stuck caller delays its conversation, then it goes on
    assert seen == ["after the recorded one", "after the stuck one"]
    await lanes.stop(grace=1)
