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

Responses may come as an ack or as a server event of the same name; both are accepted,
matched first-in first-out per connection (and by ticket_chat_id where the data has one).

Server events are passed on in one lane per conversation: in order within it, side by
side across conversations. An event waits until the answers that came before it in its
conversation are recorded by their callers (a message marked handed over), so SATE's
reply is never stored while the message it answers could still be sent again.
"""
from __future__ import annotations

import asyncio
import logging
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import quote

import socketio

from bridge.answers import Answers, Waiter
from bridge.backoff import backoff
from bridge.lanes import EventLanes, EventSink
from bridge.protocol import (
    BROADCASTS,
    Envelope,
    MalformedPayload,
    parse_envelope,
    parse_event,
)
from bridge.tasks import Background

log = logging.getLogger(__name__)

# How many request timeouts a customer message may wait for its echo while connected.
PATIENCE = 4
# The largest Socket.IO message taken from the helpdesk (aiohttp's default is 4 MiB). A
# larger one drops the connection (the WebSocket cannot skip it): said plainly in the log.
MAX_EVENT_BYTES = 16 * 1024 * 1024

Bind = Callable[[str], Awaitable[None]]
Delivered = Callable[[], Awaitable[None]]
KnownTicket = Callable[[str], Awaitable[bool]]


async def _nothing_known(_ticket_chat_id: str) -> bool:
    return False


class HelpdeskUnavailable(Exception):
    """Not connected, or no answer in time. The request may be retried."""


class KeyRefused(Exception):
    """The helpdesk refused the API key: not a network blip, retrying will not help."""


@dataclass
class _Opening:
    """The one conversation a connection may be opening: waits for its ticket_chat_id."""
    bind: Bind
    ticket: asyncio.Future
    binding: asyncio.Future | None = None  # the one bind in progress: every path awaits it


@dataclass
class _Connection:
    index: int
    client: socketio.AsyncClient
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    customers: set[str] = field(default_factory=set)       # session ids
    conversations: set[str] = field(default_factory=set)   # ticket_chat_ids
    answers: Answers = field(default_factory=Answers)
    open_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    inbox: asyncio.Queue = field(default_factory=asyncio.Queue)
    opening: _Opening | None = None
    disconnected_at: float | None = None
    refused: dict | None = None
    ever_connected: bool = False


class _TransportLog(logging.LoggerAdapter):
    """Engine.IO's logger. Its lines stay quiet below DEBUG (bridge.logs), but a message
    too large to take, which drops the connection, is said at ERROR by the link itself."""

    def __init__(self, index: int) -> None:
        super().__init__(logging.getLogger("engineio.client"), {})
        self._index = index

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        if level >= logging.WARNING and any("exceeds limit" in str(arg) for arg in args):
            log.error("helpdesk link %d: the helpdesk sent a message larger than %d bytes, "
                      "which cannot be taken; the connection was dropped and is made again "
                      "(the message is lost)", self._index, MAX_EVENT_BYTES)
        super().log(level, msg, *args, **kwargs)


def _reconnect_delay(attempt: int) -> float:
    """Jittered: spreads thousands of reconnects instead of a synchronized storm."""
    return backoff(attempt, 0.25, cap=30.0, jitter=True)


class HelpdeskLink:
    def __init__(self, url: str, api_key: str, on_event: EventSink, *,
                 namespace: str = "/helpdesk", connections: int = 4,
                 request_timeout: float = 15.0,
                 known_ticket: KnownTicket | None = None) -> None:
        self._url = url
        self._api_key = api_key
        self._known_ticket = known_ticket or _nothing_known
        self._namespace = namespace
        self._timeout = request_timeout
        self._connections = [self._make_connection(i) for i in range(connections)]
        self._tasks: list[asyncio.Task] = []
        self._background = Background()  # re-joining rooms after each connect
        self._lanes = EventLanes(on_event, hold_timeout=request_timeout)
        self._stopping = False
        self.failure: KeyRefused | None = None
        self.reconnects = 0
        self.seconds_disconnected = 0.0
        self.malformed = 0

    # --- lifecycle ---------------------------------------------------------------

    def _connect_url(self) -> str:
        # The key must travel in the URL (the API says so); it is registered with the log
        # redactor by the daemon, and never put into our own messages.
        separator = "&" if "?" in self._url else "?"
        return f"{self._url}{separator}token_source=api&token={quote(self._api_key, safe='')}"

    def _make_connection(self, index: int) -> _Connection:
        # Handing the libraries plain loggers (not True, which adds a handler of their own)
        # puts their lines under the daemon's level and format. At DEBUG the transport logs
        # URLs that carry the key; the log redactor (bridge.logs) removes it.
        client = socketio.AsyncClient(reconnection=False,
                                      logger=logging.getLogger("socketio.client"),
                                      engineio_logger=_TransportLog(index),
                                      websocket_extra_options={"max_msg_size": MAX_EVENT_BYTES})
        connection = _Connection(index, client)
        ns = self._namespace

        async def on_connect() -> None:
            self._background.start(self._after_connect(connection))

        async def on_connect_error(data: Any = None) -> None:
            status = _refusal_status(data)
            if status in (400, 401, 403):
                connection.refused = {"status_code": status}

        async def on_disconnect(*_reason: Any) -> None:
            connection.connected.clear()
            connection.gone.set()
            connection.disconnected_at = time.monotonic()
            self._fail_waiters(connection, HelpdeskUnavailable("the helpdesk connection dropped"))

        async def on_any(event: str, *args: Any) -> None:
            # Engine.IO runs each packet's handler in a task of its own, so handlers that
            # await could overtake each other. Queue at once (before any await) and let
            # one consumer per connection handle events in arrival order.
            connection.inbox.put_nowait((event, args[0] if args else None))

        client.on("connect", on_connect, namespace=ns)
        client.on("connect_error", on_connect_error, namespace=ns)
        client.on("disconnect", on_disconnect, namespace=ns)
        client.on("*", on_any, namespace=ns)
        return connection

    async def start(self) -> None:
        self._stopping = False
        self._lanes.start()
        self._tasks = [asyncio.create_task(self._supervise(c), name=f"helpdesk-link-{c.index}")
                       for c in self._connections]
        self._tasks += [asyncio.create_task(self._consume(c), name=f"helpdesk-events-{c.index}")
                        for c in self._connections]

    async def stop(self) -> None:
        self._stopping = True
        for connection in self._connections:
            connection.inbox.put_nowait(None)  # wakes the consumer even if a cancel is lost
            connection.gone.set()
        for task in self._tasks:
            task.cancel()
        # A cancellation can be swallowed deep in a library (a wait_for racing its inner
        # future); the flags above end the loops then, and the timeout bounds the rest.
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self._lanes.stop(grace=2)
        await self._background.cancel()
        for connection in self._connections:
            self._fail_waiters(connection, HelpdeskUnavailable("the bridge is stopping"))
            if connection.client.connected:
                await connection.client.disconnect()

    @property
    def connected(self) -> bool:
        return all(c.connected.is_set() for c in self._connections)

    async def wait_connected(self, timeout: float) -> None:
        """Wait until every connection is up; KeyRefused at once if the key was refused."""
        deadline = time.monotonic() + timeout
        while not self.connected:
            if self.failure:
                raise self.failure
            if time.monotonic() > deadline:
                raise HelpdeskUnavailable(f"could not reach the helpdesk at {self._url}")
            await asyncio.sleep(0.05)

    async def _supervise(self, connection: _Connection) -> None:
        attempt = 0
        while not self._stopping:
            connection.refused = None
            connection.gone.clear()
            try:
                await connection.client.connect(self._connect_url(), namespaces=[self._namespace],
                                                wait_timeout=self._timeout)
            except socketio.exceptions.ConnectionError as error:
                if connection.refused:
                    self._refused(connection)
                    if not connection.ever_connected:
                        return
                    await asyncio.sleep(60)  # a revoked key: retry rarely, it will not heal fast
                    continue
                attempt += 1
                delay = _reconnect_delay(attempt)
                log.warning("helpdesk link %d: cannot connect (%s); retrying in %.1fs",
                            connection.index, error, delay)
                await asyncio.sleep(delay)
                continue
            except (OSError, ValueError) as error:
                attempt += 1
                log.warning("helpdesk link %d: %s", connection.index, error)
                await asyncio.sleep(_reconnect_delay(attempt))
                continue
            attempt = 0
            await connection.gone.wait()
            try:  # make sure Engine.IO is closed too before connecting again
                await connection.client.disconnect()
            except Exception:
                pass
            if not self._stopping:
                await asyncio.sleep(_reconnect_delay(0))  # short: events sent meanwhile are lost

    def _refused(self, connection: _Connection) -> None:
        status = connection.refused["status_code"]
        if self.failure is None:
            log.error("helpdesk refused the API key (status %s): check [helpdesk] api_key", status)
        self.failure = KeyRefused(f"helpdesk refused the API key (status {status})")

    async def _after_connect(self, connection: _Connection) -> None:
        """Re-join every room this connection serves, then let queued work through."""
        was_down = connection.disconnected_at
        client, ns = connection.client, self._namespace
        try:
            for session_id in list(connection.customers):
                await client.emit("enter_customer_support", {"session_id": session_id}, namespace=ns)
            for ticket in list(connection.conversations):
                await client.emit("enter_support", {"ticket_chat_id": ticket}, namespace=ns)
        except socketio.exceptions.SocketIOError:
            return  # dropped again while re-joining; the next connect re-joins
        if was_down is not None:
            gap = time.monotonic() - was_down
            self.reconnects += 1
            self.seconds_disconnected += gap
            connection.disconnected_at = None
            log.warning("helpdesk link %d reconnected after %.2fs without a connection; "
                        "re-joined %d customer and %d conversation rooms (server events sent "
                        "in that window are not replayed by Socket.IO)", connection.index, gap,
                        len(connection.customers), len(connection.conversations))
        else:
            log.info("helpdesk link %d connected", connection.index)
        connection.ever_connected = True
        connection.connected.set()

    # --- routing -----------------------------------------------------------------

    def _connection_for(self, session_id: str) -> _Connection:
        return self._connections[zlib.crc32(session_id.encode()) % len(self._connections)]

    async def watch_customer(self, session_id: str) -> None:
        """Join the customer's personal room, now and after every reconnect."""
        connection = self._connection_for(session_id)
        if session_id in connection.customers:
            return
        connection.customers.add(session_id)
        if connection.connected.is_set():
            await self._emit_quietly(connection, "enter_customer_support", {"session_id": session_id})

    def forget_customer(self, session_id: str) -> None:
        """Stop re-joining the customer's room after reconnects (nothing left open). The API
        has no way to leave it now; the next reconnect simply does not re-join it."""
        self._connection_for(session_id).customers.discard(session_id)

    async def watch_conversation(self, session_id: str, ticket_chat_id: str) -> None:
        connection = self._connection_for(session_id)
        if ticket_chat_id in connection.conversations:
            return
        connection.conversations.add(ticket_chat_id)
        if connection.connected.is_set():
            await self._emit_quietly(connection, "enter_support", {"ticket_chat_id": ticket_chat_id})

    async def unwatch_conversation(self, session_id: str, ticket_chat_id: str) -> None:
        connection = self._connection_for(session_id)
        if ticket_chat_id not in connection.conversations:
            return
        connection.conversations.discard(ticket_chat_id)
        if connection.connected.is_set():
            await self._emit_quietly(connection, "leave_support", {"ticket_chat_id": ticket_chat_id})

    async def notify(self, session_id: str, event: str, payload: dict) -> None:
        """Send without waiting for an answer (read receipts); dropped if not connected."""
        connection = self._connection_for(session_id)
        if connection.connected.is_set():
            await self._emit_quietly(connection, event, payload)

    async def _emit_quietly(self, connection: _Connection, event: str, payload: dict) -> None:
        try:
            await connection.client.emit(event, payload, namespace=self._namespace)
        except socketio.exceptions.SocketIOError:
            pass  # re-sent by _after_connect

    # --- requests ----------------------------------------------------------------

    async def _ready(self, connection: _Connection) -> None:
        if self.failure and not connection.connected.is_set():
            raise HelpdeskUnavailable(str(self.failure))
        try:
            await asyncio.wait_for(connection.connected.wait(), self._timeout)
        except asyncio.TimeoutError:
            raise HelpdeskUnavailable("not connected to the helpdesk") from None

    async def request(self, session_id: str, event: str, payload: dict,
                      answer_event: str | None = None, patient: bool = False,
                      delivered: Delivered | None = None) -> Envelope:
        """Send a request and wait for its response, by ack or by event. Raises
        HelpdeskError for a non-200 answer, HelpdeskUnavailable on no answer.

        delivered: awaited on a 200 answer, before the conversation's later events are
        handled (they may be what the request caused: SATE's reply to a message). The
        caller records there that the helpdesk has it, so no crash can leave a reply
        stored and the message it answers still queued, to be sent again.

        patient: for customer messages. Re-sending one the helpdesk did get doubles it (or
        opens a second conversation), so while the connection stays up we wait longer
        (PATIENCE x request_timeout). If even that passes, the connection is recycled
        before giving up: a late reply can then never arrive where it would be taken for
        the answer to someone else's request."""
        connection = self._connection_for(session_id)
        await self._ready(connection)
        waiter = Waiter(answer_event or event, payload.get("ticket_chat_id"),
                        asyncio.get_running_loop().create_future())
        try:
            envelope = await self._exchange(connection, waiter, event, payload, patient)
            envelope.raise_for_status()
            if delivered is not None:
                await delivered()  # its errors are the caller's, not the helpdesk's
            return envelope
        finally:
            waiter.handed_over.set()

    async def _exchange(self, connection: _Connection, waiter: Waiter, event: str,
                        payload: dict, patient: bool) -> Envelope:
        """Emit, and wait for the answer by ack or event (see request)."""
        connection.answers.expect(waiter)

        def on_ack(*args: Any) -> None:
            if not waiter.future.done() and args:
                try:
                    connection.answers.answer(waiter, parse_envelope(args[0]))
                except MalformedPayload as error:
                    log.warning("helpdesk: malformed ack to %s skipped: %s", event, error)

        ack_id = None
        try:
            await connection.client.emit(event, payload, namespace=self._namespace, callback=on_ack)
            ack_id = _ack_id(connection.client, self._namespace, on_ack)
            timeout = self._timeout * (PATIENCE if patient else 1)
            return await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        except asyncio.TimeoutError:
            log.warning("helpdesk: no answer to %s within %.1fs", event, timeout)
            if patient:
                await self._recycle(connection)
            raise HelpdeskUnavailable(f"no answer to {event}") from None
        except socketio.exceptions.SocketIOError as error:
            raise HelpdeskUnavailable(f"could not send {event}: {error}") from None
        finally:
            connection.answers.done_waiting(waiter)
            if ack_id is not None:
                asyncio.get_running_loop().call_later(
                    self._timeout, _forget_callback, connection.client, self._namespace,
                    ack_id, on_ack)

    async def _recycle(self, connection: _Connection) -> None:
        log.warning("helpdesk link %d: reconnecting after an unanswered message",
                    connection.index)
        try:
            await connection.client.disconnect()
        except Exception:
            pass
        connection.gone.set()  # the supervisor connects again

    async def send_message(self, session_id: str, ticket_chat_id: str, text: str,
                           attachment_metadata: Any = None,
                           delivered: Delivered | None = None) -> None:
        """A follow-up message. Returns once the helpdesk has acknowledged it (support_echo
        or ack): only then is it handed over (docs/protocol.md, "Handed over means
        acknowledged").
        `delivered` is awaited then, before the reply to it can be passed on."""
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
                await self._recycle(connection)
                raise HelpdeskUnavailable("the helpdesk did not say which conversation it "
                                          "opened") from None
            finally:
                connection.opening = None

    async def _bind(self, connection: _Connection, ticket_chat_id: str) -> None:
        """Called by open_conversation (the echo had the id) and by the event consumer (the
        first reply has it), possibly both at once: both wait for the one bind."""
        opening = connection.opening
        if opening is None or opening.ticket.done():
            return
        if opening.binding is None:
            opening.binding = asyncio.ensure_future(
                self._record_binding(connection, opening, ticket_chat_id))
        await asyncio.shield(opening.binding)

    async def _record_binding(self, connection: _Connection, opening: _Opening,
                              ticket_chat_id: str) -> None:
        try:
            await opening.bind(ticket_chat_id)
        except BaseException:
            opening.binding = None  # the next event carrying the id tries again
            raise
        connection.conversations.add(ticket_chat_id)
        opening.ticket.set_result(ticket_chat_id)
        await self._emit_quietly(connection, "enter_support", {"ticket_chat_id": ticket_chat_id})

    # --- server events -----------------------------------------------------------

    async def _consume(self, connection: _Connection) -> None:
        while not self._stopping:
            item = await connection.inbox.get()
            if item is None:
                break
            try:
                await self._on_server_event(connection, *item)
            except Exception:  # a bug here must not stop this connection's events for good
                self.malformed += 1
                log.exception("helpdesk: %s payload could not be handled; skipped", item[0])

    async def _on_server_event(self, connection: _Connection, event: str, payload: Any) -> None:
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
                and connection.opening is not None and event in ("support", "call_support") \
                and not await self._known_ticket(ticket):
            # Not one this connection watches: the opening's, unless the bridge knows it
            # already (a late reply of a conversation that was closed and left).
            await self._bind(connection, ticket)
        try:
            typed = parse_event(event, envelope)
        except MalformedPayload as error:
            self.malformed += 1
            log.warning("helpdesk: malformed %s payload skipped: %s", event, error)
            return
        self._lanes.add(event, typed, holds)

    def _fail_waiters(self, connection: _Connection, error: Exception) -> None:
        connection.answers.fail(error)
        if connection.opening is not None and not connection.opening.ticket.done():
            connection.opening.ticket.set_exception(error)
            connection.opening.ticket.exception()


def _ack_id(client: socketio.AsyncClient, namespace: str, callback) -> int | None:
    """The id python-socketio gave the ack callback of the emit that just returned (the
    newest, or nearly: other emits may have come in between)."""
    pending = client.callbacks.get(namespace, {})
    for key in reversed(pending):
        if pending[key] is callback:
            return key
    return None


def _forget_callback(client: socketio.AsyncClient, namespace: str, ack_id: int,
                     callback) -> None:
    """python-socketio keeps an ack callback until the ack comes. A helpdesk that answers
    by event sends none, so without this every request would stay in memory until the
    next reconnect: months, for a daemon. Called a request timeout after the answer, so an
    ack that does come finds its callback (else python-socketio warns about it)."""
    pending = client.callbacks.get(namespace, {})
    if pending.get(ack_id) is callback:
        del pending[ack_id]


def _support_payload(session_id: str, ticket_chat_id: str | None, text: str,
                     attachment_metadata: Any) -> dict:
    payload = {"session_id": session_id, "message": text,
               "attachment": attachment_metadata is not None, "ticket_chat_id": ticket_chat_id}
    if attachment_metadata is not None:
        payload["attachment_metadata"] = attachment_metadata
    return payload


def _refusal_status(data: Any) -> int | None:
    """connect_error data: {status_code} or python-socketio's {message, data: {...}}."""
    for candidate in (data, data.get("data") if isinstance(data, dict) else None):
        if isinstance(candidate, dict):
            status = candidate.get("status_code")
            if isinstance(status, int):
                return status
    return None
