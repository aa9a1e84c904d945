"""Joining the helpdesk's rooms by the thousand (after a connect, on taking shards over)
without making a customer who writes wait for it.

Each connection joins the rooms of the customers it serves (a customer's own room, and
each open conversation's) and, after every connect, must join them all again; a daemon
that takes over shards (on PostgreSQL, at its start too) joins all of their customers'
rooms at once. A helpdesk handles a connection's requests in the order they arrive, so
10,000 joins sent at once put a customer who writes meanwhile behind all of them: seconds
(bench/RESULTS.md, "Fair to every customer"). So:

* the joins go out a window at a time, the next as each is answered (WINDOW unanswered
  over the whole pool);
* a customer the bridge sends a request for has their rooms joined first, at once, just
  before the request (HelpdeskLink.request): their answer is never broadcast into a room
  not joined yet.

Why WINDOW = 128: a smaller window leaves the helpdesk idle over each round trip, so the
re-join takes longer, and events broadcast into a room not joined yet are lost (Socket.IO
replays nothing). 128 per round trip is 2,560 joins a second at a 50 ms round trip,
faster than the sandbox takes them (about 2,000 a second); and a customer who writes
waits behind at most 128 joins. A helpdesk that answers no joins at all (none within the
request timeout) gets the rest all at once.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable

from bridge.link_pool import Connection, HelpdeskUnavailable
from bridge.link_requests import Requests
from bridge.protocol import Envelope, HelpdeskError
from bridge.tasks import Background, cancel_and_wait

log = logging.getLogger(__name__)

WINDOW = 128
CUSTOMER_ROOM = "enter_customer_support"
CONVERSATION_ROOM = "enter_support"


class RoomJoins:
    def __init__(self, requests: Requests) -> None:
        self._requests = requests
        self._window = asyncio.Semaphore(WINDOW)
        self._pacers: dict[int, asyncio.Task] = {}  # by connection index
        self._answers = Background()
        self._unanswered = False  # the helpdesk answers no joins: no window then

    def rejoin(self, connection: Connection) -> None:
        """Just connected: join every room it serves again, in the background."""
        connection.unjoined = {(CUSTOMER_ROOM, session): {"session_id": session}
                               for session in connection.customers}
        connection.unjoined.update({(CONVERSATION_ROOM, ticket): {"ticket_chat_id": ticket}
                                    for ticket in connection.conversations})
        previous = self._pacers.get(connection.index)
        if previous is not None:
            previous.cancel()
        self._start_pacing(connection)

    def join(self, connection: Connection, event: str, room: str, payload: dict) -> None:
        """A room to join on a connection that is up (a daemon taking over 10,000
        customers' shards joins their rooms here): in the window, unless a request for its
        customer comes first."""
        connection.unjoined[(event, room)] = payload
        pacer = self._pacers.get(connection.index)
        if pacer is None or pacer.done():
            self._start_pacing(connection)

    def _start_pacing(self, connection: Connection) -> None:
        self._pacers[connection.index] = asyncio.create_task(
            self._pace(connection), name=f"helpdesk-rejoin-{connection.index}")

    async def first(self, connection: Connection, session_id: str,
                    ticket_chat_id: str | None) -> None:
        """Before a request for this customer: their rooms not joined again yet go now."""
        for key in ((CUSTOMER_ROOM, session_id), (CONVERSATION_ROOM, ticket_chat_id)):
            payload = connection.unjoined.pop(key, None)
            if payload is not None:
                await self._send(connection, key[0], payload, paced=False)

    async def stop(self) -> None:
        await cancel_and_wait(list(self._pacers.values()))
        self._pacers.clear()
        await self._answers.cancel()

    async def _pace(self, connection: Connection) -> None:
        rooms = len(connection.unjoined)
        while connection.unjoined and connection.connected.is_set():
            if not self._unanswered:
                await self._window.acquire()
            if not connection.unjoined:  # the customers who wrote meanwhile took the rest
                self._release()
                break
            event, room = next(iter(connection.unjoined))
            payload = connection.unjoined.pop((event, room))
            await self._send(connection, event, payload, paced=True)
        if rooms > 1:
            log.info("helpdesk link %d: %d rooms joined", connection.index, rooms)

    async def _send(self, connection: Connection, event: str, payload: dict,
                    paced: bool) -> None:
        try:
            answer = await self._requests.sent(connection, event, payload)
        except HelpdeskUnavailable:
            if paced:
                self._release()
            return  # dropped: the next connect joins it again
        self._answers.start(self._answered(connection, answer, paced))

    async def _answered(self, connection: Connection, answer: Awaitable[Envelope],
                        paced: bool) -> None:
        try:
            await answer
        except HelpdeskUnavailable:
            if connection.connected.is_set() and not self._unanswered:  # not dropped: unanswered
                log.warning("helpdesk: room joins go unanswered; joining the rest at once")
                self._unanswered = True
                for _ in range(WINDOW):  # whoever waits for the window goes on
                    self._window.release()
        except HelpdeskError as error:  # a conversation the helpdesk no longer has
            log.info("helpdesk: a room could not be joined again (%s)", error)
        finally:
            if paced:
                self._release()

    def _release(self) -> None:
        if not self._unanswered:
            self._window.release()
