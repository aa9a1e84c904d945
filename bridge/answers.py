"""Matching the helpdesk's answers to the requests that asked for them, on one connection.

An answer comes as an acknowledgement or as a server event of the request's name
(docs/protocol.md, "Responses"); events are matched to the oldest request waiting for
them (and by ticket_chat_id where the answer names one). An answered request is
"recorded" once its caller has done what the answer required (a message marked handed
over): the conversation's later events wait for that, so SATE's reply is never stored
while the message it answers could still be sent again.
"""
from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from bridge.protocol import Envelope


@dataclass
class Waiter:
    """One request waiting for its answer."""
    event: str                  # the answer's event name
    ticket_chat_id: str | None  # the conversation it is about, if it names one
    future: asyncio.Future
    # Set once the caller has seen the answer (and recorded what it needed to): the
    # conversation's later events wait for it (Answers.unrecorded).
    handed_over: asyncio.Event = field(default_factory=asyncio.Event)


class Answers:
    def __init__(self) -> None:
        self._waiting: deque[Waiter] = deque()
        self._answered: deque[Waiter] = deque()  # answered, perhaps not yet handed over

    def __len__(self) -> int:
        """Answers kept: answered, and not yet seen to be recorded."""
        return len(self._answered)

    def expect(self, waiter: Waiter) -> None:
        self._waiting.append(waiter)

    def done_waiting(self, waiter: Waiter) -> None:
        if waiter in self._waiting:
            self._waiting.remove(waiter)

    def answer(self, waiter: Waiter, envelope: Envelope) -> None:
        waiter.future.set_result(envelope)
        self._forget_recorded()  # else acks with no event after them pile up
        self._answered.append(waiter)

    def resolve(self, event: str, envelope: Envelope) -> None:
        """An answer that came as an event: to the oldest request waiting for it."""
        ticket = envelope.ticket_chat_id
        for waiter in self._waiting:
            if waiter.future.done():
                continue
            answers = waiter.event == event or (
                waiter.event == "support_echo" and event == "support" and not envelope.ok)
            if answers and (ticket is None or waiter.ticket_chat_id in (None, ticket)):
                self.answer(waiter, envelope)
                return

    def fail(self, error: Exception) -> None:
        """The connection is gone: every request still waiting fails with error."""
        for waiter in self._waiting:
            if not waiter.future.done():
                waiter.future.set_exception(error)
                waiter.future.exception()  # retrieved here: no "never retrieved" warnings

    def unrecorded(self, ticket_chat_id: str | None) -> list[Waiter]:
        """The answers a conversation's event must wait behind: answered before the event
        arrived, their callers not done recording them. An answer to an opening (no
        ticket_chat_id yet) holds every conversation's events, for a moment."""
        self._forget_recorded()
        return [w for w in self._answered if not w.handed_over.is_set()
                and w.ticket_chat_id in (None, ticket_chat_id)]

    def _forget_recorded(self) -> None:
        while self._answered and self._answered[0].handed_over.is_set():
            self._answered.popleft()
