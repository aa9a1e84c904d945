"""The helpdesk's events, passed on in one lane per conversation: in order within it,
side by side across conversations (one slow conversation does not hold up the others on
its connection). An event first waits, for at most hold_timeout, until the answers that
came before it in its conversation are recorded (bridge/answers.py)."""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Awaitable, Callable

from bridge.answers import Waiter
from bridge.backoff import backoff
from bridge.drain import Drainer
from bridge.protocol import HelpdeskEvent

log = logging.getLogger(__name__)

# Tries to hand an event to the core (about 6 s in all) before it is dropped.
EVENT_ATTEMPTS = 6

EventSink = Callable[[HelpdeskEvent], Awaitable[None]]


@dataclass
class _Item:
    event: str
    typed: HelpdeskEvent
    holds: list[Waiter]  # answers to be recorded before this event is passed on


class EventLanes:
    def __init__(self, on_event: EventSink, hold_timeout: float) -> None:
        self._on_event = on_event
        self._hold_timeout = hold_timeout
        self._lanes: dict[str, deque[_Item]] = {}
        self._workers = Drainer(self._work, "helpdesk-conversation")

    def start(self) -> None:
        self._workers = Drainer(self._work, "helpdesk-conversation")

    async def stop(self, grace: float) -> None:
        await self._workers.stop(grace)

    def add(self, event: str, typed: HelpdeskEvent, holds: list[Waiter]) -> None:
        lane = typed.ticket_chat_id or ""  # events that name no conversation share one
        self._lanes.setdefault(lane, deque()).append(_Item(event, typed, holds))
        self._workers.kick(lane)

    async def _work(self, ticket: str) -> None:
        lane = self._lanes.get(ticket)
        while lane:
            item = lane.popleft()
            for waiter in item.holds:
                await self._handed_over(waiter)
            await self._pass_on(item.event, item.typed)
        self._lanes.pop(ticket, None)

    async def _handed_over(self, waiter: Waiter) -> None:
        """Bounded: a stuck caller delays its conversation's events but cannot stop them."""
        try:
            await asyncio.wait_for(waiter.handed_over.wait(), self._hold_timeout)
        except asyncio.TimeoutError:
            log.warning("helpdesk: the answer to %s was not handed over within %.1fs; "
                        "passing on the events behind it", waiter.event, self._hold_timeout)

    async def _pass_on(self, event: str, typed: HelpdeskEvent) -> None:
        # The helpdesk will not send it again: a failure to store it (the database away for
        # a moment) is retried before giving up. The conversation's events behind it wait,
        # which keeps them in order.
        for attempt in range(EVENT_ATTEMPTS):
            try:
                await self._on_event(typed)
                return
            except Exception:
                if attempt == EVENT_ATTEMPTS - 1:
                    log.exception("helpdesk: %s for %s could not be handled; dropped", event,
                                  typed.ticket_chat_id)
                    return
                log.warning("helpdesk: handling %s failed; retrying", event, exc_info=True)
                await asyncio.sleep(backoff(attempt, 0.2))
