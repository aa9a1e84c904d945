"""The Socket.IO link to the helpdesk: a small pool of connections shared by all customers.

Why a pool and not one connection per customer: 10,000 customers would need 10,000
sockets (~33 KB each) and 10,000 reconnects after a network blip. Why not one connection:
a first reply carries a new ticket_chat_id but no session_id, so two conversations opening
at once on one connection cannot be told apart (docs/protocol.md, "Whose reply is it"). So:

* each customer lives on one connection of the pool (chosen by a hash of the session id),
  with all of its conversations: one customer's events arrive in order on one socket;
* a connection has at most one conversation *opening* at a time; an unknown
  ticket_chat_id arriving on that connection belongs to it, and nothing else can;
* known conversations are routed by ticket_chat_id, which every broadcast carries.

The parts: the pool of sockets and their supervision (bridge/link_pool.py), a request and
its answer (bridge/link_requests.py, matched by bridge/answers.py), and the events passed
on in one lane per conversation (bridge/lanes.py). This module routes customers and
conversations to their connection, opens conversations, and reads what arrives.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from bridge.lanes import EventLanes, EventSink
from bridge.link_pool import (
    MAX_EVENT_BYTES,
    Connection,
    ConnectionPool,
    HelpdeskUnavailable,
    KeyRefused,
)
from bridge.link_requests import PATIENCE, Delivered, Requests
from bridge.protocol import (
    BROADCASTS,
    Envelope,
    MalformedPayload,
    parse_envelope,
    parse_event,
)
from bridge.room_joins import CONVERSATION_ROOM, CUSTOMER_ROOM, RoomJoins

log = logging.getLogger(__name__)

__all__ = ["HelpdeskLink", "HelpdeskUnavailable", "KeyRefused", "MAX_EVENT_BYTES"]

# Records that the opening conversation has this ticket_chat_id; False when the bridge
# already knows it for another conversation (a late event of one that was closed and left).
Bind = Callable[[str], Awaitable[bool]]


@dataclass
class _Opening:
    """The one conversation a connection may be opening: waits for its ticket_chat_id."""
    bind: Bind
    ticket: asyncio.Future
    binding: asyncio.Future | None = None  # the one bind in progress: every path awaits it


class HelpdeskLink:
    def __init__(self, url: str, api_key: str, on_event: EventSink, *,
                 namespace: str = "/helpdesk", connections: int = 4,
                 request_timeout: float = 15.0) -> None:
        self._timeout = request_timeout
        self._pool = ConnectionPool(url, api_key, namespace, connections, request_timeout,
                                    on_dropped=self._dropped, on_connected=self._connected)
        self._requests = Requests(self._pool, namespace, request_timeout)
        self._joins = RoomJoins(self._requests)
        self._connections = self._pool.connections
        self._lanes = EventLanes(on_event, hold_timeout=request_timeout)
        self._stopping = False
        self.malformed = 0

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        self._lanes.start()
        self._pool.start(consume=self._consume)

    async def stop(self) -> None:
        self._stopping = True
        await self._pool.stop()
        await self._joins.stop()
        await self._lanes.stop(grace=2)
        for connection in self._connections:
            self._fail_waiters(connection, HelpdeskUnavailable("the bridge is stopping"))
        await self._pool.close()

    @property
    def connected(self) -> bool:
        return self._pool.connected

    async def wait_connected(self, timeout: float) -> None:
        """Wait until every connection is up; KeyRefused at once if the key was refused."""
        await self._pool.wait_connected(timeout)

    @property
    def failure(self) -> KeyRefused | None:
        return self._pool.failure

    @property
    def reconnects(self) -> int:
        return self._pool.reconnects

    @property
    def seconds_disconnected(self) -> float:
        return self._pool.seconds_disconnected

    def _connected(self, connection: Connection) -> None:
        self._joins.rejoin(connection)

    def _dropped(self, connection: Connection) -> None:
        self._fail_waiters(connection, HelpdeskUnavailable("the helpdesk connection dropped"))

    # --- routing -----------------------------------------------------------------

    def _connection_for(self, session_id: str) -> Connection:
        return self._pool.for_session(session_id)

    async def watch_customer(self, session_id: str) -> None:
        """Join the customer's personal room, now and after every reconnect."""
        connection = self._connection_for(session_id)
        await self._watch(connection, connection.customers, session_id,
                          CUSTOMER_ROOM, {"session_id": session_id})

    def forget_customer(self, session_id: str) -> None:
        """Stop re-joining the customer's room after reconnects (nothing left open). The API
        has no way to leave it now; the next reconnect simply does not re-join it."""
        connection = self._connection_for(session_id)
        connection.customers.discard(session_id)
        connection.unjoined.pop((CUSTOMER_ROOM, session_id), None)

    async def watch_conversation(self, session_id: str, ticket_chat_id: str) -> None:
        connection = self._connection_for(session_id)
        await self._watch(connection, connection.conversations, ticket_chat_id,
                          CONVERSATION_ROOM, {"ticket_chat_id": ticket_chat_id})

    async def _watch(self, connection: Connection, watched: set[str], room: str, event: str,
                     payload: dict) -> None:
        """A room the connection re-joins after every reconnect, joined now if it is up
        (in the window of bridge/room_joins.py: a request for its customer joins it first)."""
        if room in watched:
            return
        watched.add(room)
        if connection.connected.is_set():
            self._joins.join(connection, event, room, payload)

    async def unwatch_conversation(self, session_id: str, ticket_chat_id: str) -> None:
        connection = self._connection_for(session_id)
        if ticket_chat_id not in connection.conversations:
            return
        connection.conversations.discard(ticket_chat_id)
        connection.unjoined.pop((CONVERSATION_ROOM, ticket_chat_id), None)
        if connection.connected.is_set():
            await self._pool.emit_quietly(connection, "leave_support", {"ticket_chat_id": ticket_chat_id})

    async def notify(self, session_id: str, event: str, payload: dict) -> None:
        """Send without waiting for an answer (read receipts); dropped if not connected."""
        connection = self._connection_for(session_id)
        if connection.connected.is_set():
            await self._joins.first(connection, session_id, payload.get("ticket_chat_id"))
            await self._pool.emit_quietly(connection, event, payload)

    # --- requests ----------------------------------------------------------------

    async def request(self, session_id: str, event: str, payload: dict,
                      answer_event: str | None = None, patient: bool = False,
                      delivered: Delivered | None = None) -> Envelope:
        """Send a request on the customer's connection and wait for its response
        (bridge/link_requests.py). The customer's rooms are joined first, if a reconnect
        left them to join (bridge/room_joins.py)."""
        connection = self._connection_for(session_id)
        if connection.connected.is_set():
            await self._joins.first(connection, session_id, payload.get("ticket_chat_id"))
        return await self._requests.request(connection, event, payload, answer_event, patient,
                                            delivered)

    async def send_message(self, session_id: str, ticket_chat_id: str, text: str,
                           attachment_metadata: Any = None,
                           delivered: Delivered | None = None) -> None:
        """A follow-up message. Returns once the helpdesk has acknowledged it (support_echo
        or ack): only then is it handed over (docs/protocol.md, "Handed over means
        acknowledged"). `delivered` is awaited then, before the reply to it is passed on."""
        await self.request(session_id, "support", _support_payload(
            session_id, ticket_chat_id, text, attachment_metadata), answer_event="support_echo",
            patient=True, delivered=delivered)

    async def open_conversation(self, session_id: str, bind: Bind, *, text: str | None = None,
                                attachment_metadata: Any = None, call: bool = False) -> str:
        """Open a conversation with a first message (or a call) and return its ticket_chat_id.

        `bind(ticket_chat_id)` is awaited as soon as the id is known and before any event of
        that conversation is passed on, so the caller can record whose it is first (and
        that the helpdesk has the first message: SATE's reply may be the next event)."""
        connection = self._connection_for(session_id)
        async with connection.open_lock:
            opening = _Opening(bind, asyncio.get_running_loop().create_future())
            connection.opening = opening
            try:
                if call:
                    payload = {"session_id": session_id, "ticket_chat_id": None}
                    envelope = await self.request(session_id, "call_support", payload)
                else:
                    payload = _support_payload(session_id, None, text or "", attachment_metadata)
                    envelope = await self.request(session_id, "support", payload,
                                                  answer_event="support_echo", patient=True)
                if envelope.ticket_chat_id and not opening.ticket.done():
                    await self._bind(connection, envelope.ticket_chat_id)
                # The echo may say nothing of the id: then the first reply brings it. Until
                # it does, this connection opens nothing else (it could not tell replies apart).
                return await asyncio.wait_for(asyncio.shield(opening.ticket),
                                              self._timeout * PATIENCE)
            except asyncio.TimeoutError:
                await self._pool.recycle(connection)
                raise HelpdeskUnavailable("the helpdesk did not say which conversation it "
                                          "opened") from None
            finally:
                connection.opening = None

    async def _bind(self, connection: Connection, ticket_chat_id: str) -> None:
        """Called by open_conversation (the echo had the id) and by the event consumer (the
        first reply has it), possibly both at once: both wait for the one bind."""
        opening = connection.opening
        if opening is None or opening.ticket.done():
            return
        if opening.binding is None:
            opening.binding = asyncio.ensure_future(
                self._record_binding(connection, opening, ticket_chat_id))
        await asyncio.shield(opening.binding)

    async def _record_binding(self, connection: Connection, opening: _Opening,
                              ticket_chat_id: str) -> None:
        try:
            taken = await opening.bind(ticket_chat_id)
        except BaseException:
            opening.binding = None  # the next event carrying the id tries again
            raise
        if not taken:
            opening.binding = None  # not the opening's: it waits for its own id
            log.info("helpdesk: an event of a known conversation came while another opened")
            return
        connection.conversations.add(ticket_chat_id)
        opening.ticket.set_result(ticket_chat_id)
        await self._pool.emit_quietly(connection, CONVERSATION_ROOM,
                                      {"ticket_chat_id": ticket_chat_id})

    # --- server events -----------------------------------------------------------

    async def _consume(self, connection: Connection) -> None:
        while not self._stopping:
            item = await connection.inbox.get()
            if item is None:
                break
            try:
                await self._on_server_event(connection, *item)
            except Exception:  # a bug here must not stop this connection's events for good
                self.malformed += 1
                log.exception("helpdesk: %s payload could not be handled; skipped", item[0])

    async def _on_server_event(self, connection: Connection, event: str, payload: Any) -> None:
        try:
            envelope = parse_envelope(payload)
        except MalformedPayload as error:
            self.malformed += 1
            log.warning("helpdesk: malformed %s payload skipped: %s", event, error)
            return
        ticket = envelope.ticket_chat_id
        # Read before this event resolves a request: an answer may be a broadcast too
        # (call_support), and must not wait behind itself.
        holds = connection.answers.unrecorded(ticket)
        connection.answers.resolve(event, envelope)
        if event not in BROADCASTS or not envelope.ok:
            return
        if ticket is not None and ticket not in connection.conversations \
                and connection.opening is not None and event in ("support", "call_support"):
            # Not one this connection watches: the opening's, unless the bind finds the id
            # taken. Either way the event then goes where its ticket_chat_id says.
            await self._bind(connection, ticket)
        try:
            typed = parse_event(event, envelope)
        except MalformedPayload as error:
            self.malformed += 1
            log.warning("helpdesk: malformed %s payload skipped: %s", event, error)
            return
        self._lanes.add(event, typed, holds)

    def _fail_waiters(self, connection: Connection, error: Exception) -> None:
        connection.answers.fail(error)
        if connection.opening is not None and not connection.opening.ticket.done():
            connection.opening.ticket.set_exception(error)
            connection.opening.ticket.exception()


def _support_payload(session_id: str, ticket_chat_id: str | None, text: str,
                     attachment_metadata: Any) -> dict:
    payload = {"session_id": session_id, "message": text,
               "attachment": attachment_metadata is not None, "ticket_chat_id": ticket_chat_id}
    if attachment_metadata is not None:
        payload["attachment_metadata"] = attachment_metadata
    return payload
