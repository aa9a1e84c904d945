"""The helpdesk link's sockets: a fixed pool of Socket.IO connections, each kept up by a
supervisor (reconnects with jittered backoff), its rooms joined again after every
connect (bridge/room_joins.py), a refused API key reported once instead of retried in a
loop.

What travels over a connection is the link's (bridge/helpdesk.py): the pool hands it the
events as they arrive (Connection.inbox, in arrival order) and says when a connection
dropped (on_dropped), so that the requests waiting on it can fail at once.
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

from bridge.answers import Answers
from bridge.backoff import backoff

log = logging.getLogger(__name__)

# The largest Socket.IO message taken from the helpdesk (aiohttp's default is 4 MiB). A
# larger one drops the connection (the WebSocket cannot skip it): said plainly in the log.
MAX_EVENT_BYTES = 16 * 1024 * 1024


class HelpdeskUnavailable(Exception):
    """Not connected, or no answer in time. The request may be retried."""


class KeyRefused(Exception):
    """The helpdesk refused the API key: not a network blip, retrying will not help."""


@dataclass
class Connection:
    index: int
    client: socketio.AsyncClient
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    customers: set[str] = field(default_factory=set)       # session ids whose rooms it joins
    conversations: set[str] = field(default_factory=set)   # ticket_chat_ids, likewise
    # after a connect, the rooms not joined again yet: (event, room) -> payload
    unjoined: dict[tuple[str, str], dict] = field(default_factory=dict)
    answers: Answers = field(default_factory=Answers)
    inbox: asyncio.Queue = field(default_factory=asyncio.Queue)  # (event, payload), or None
    open_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    opening: Any = None  # the conversation it is opening (bridge/helpdesk.py), if any
    disconnected_at: float | None = None
    refused: dict | None = None
    ever_connected: bool = False


class ConnectionPool:
    def __init__(self, url: str, api_key: str, namespace: str, size: int, timeout: float,
                 on_dropped: Callable[[Connection], None],
                 on_connected: Callable[[Connection], None]) -> None:
        """on_connected: has the connection's rooms joined again (bridge/room_joins.py)."""
        self._url = url
        self._api_key = api_key
        self.namespace = namespace
        self._timeout = timeout
        self._on_dropped = on_dropped
        self._on_connected = on_connected
        self.connections = [self._make_connection(i) for i in range(size)]
        self._supervisors: list[asyncio.Task] = []
        self._stopping = False
        self.failure: KeyRefused | None = None
        self.reconnects = 0
        self.seconds_disconnected = 0.0

    def for_session(self, session_id: str) -> Connection:
        """The customer's connection: all their conversations' events arrive on it."""
        return self.connections[zlib.crc32(session_id.encode()) % len(self.connections)]

    @property
    def connected(self) -> bool:
        return all(c.connected.is_set() for c in self.connections)

    async def wait_connected(self, timeout: float) -> None:
        """Wait until every connection is up; KeyRefused at once if the key was refused."""
        deadline = time.monotonic() + timeout
        while not self.connected:
            if self.failure:
                raise self.failure
            if time.monotonic() > deadline:
                raise HelpdeskUnavailable(f"could not reach the helpdesk at {self._url}")
            await asyncio.sleep(0.05)

    async def ready(self, connection: Connection) -> None:
        """Returns once the connection is up (within the request timeout)."""
        if self.failure and not connection.connected.is_set():
            raise HelpdeskUnavailable(str(self.failure))
        try:
            await asyncio.wait_for(connection.connected.wait(), self._timeout)
        except asyncio.TimeoutError:
            raise HelpdeskUnavailable("not connected to the helpdesk") from None

    async def emit_quietly(self, connection: Connection, event: str, payload: dict) -> None:
        try:
            await connection.client.emit(event, payload, namespace=self.namespace)
        except socketio.exceptions.SocketIOError:
            pass  # re-sent after the next connect

    async def recycle(self, connection: Connection) -> None:
        """Drop the connection and make it again (a late answer must not arrive where it
        could be taken for someone else's)."""
        log.warning("helpdesk link %d: reconnecting after an unanswered message",
                    connection.index)
        try:
            await connection.client.disconnect()
        except Exception:
            pass
        connection.gone.set()  # the supervisor connects again

    # --- running -------------------------------------------------------------------

    def start(self, consume: Callable[[Connection], Awaitable[None]]) -> None:
        """Connect, and keep connected; `consume` reads each connection's inbox."""
        self._stopping = False
        self._supervisors = [
            asyncio.create_task(task(c), name=f"helpdesk-{name}-{c.index}")
            for c in self.connections
            for name, task in (("link", self._supervise), ("events", consume))]

    async def stop(self) -> None:
        self._stopping = True
        for connection in self.connections:
            connection.gone.set()
            connection.inbox.put_nowait(None)  # ends its consumer even if a cancel is lost
        for task in self._supervisors:
            task.cancel()
        # A cancellation can be swallowed deep in a library (a wait_for racing its inner
        # future); the flags above end the loops then, and the timeout bounds the rest.
        if self._supervisors:
            await asyncio.wait(self._supervisors, timeout=5)

    async def close(self) -> None:
        for connection in self.connections:
            if connection.client.connected:
                await connection.client.disconnect()

    def _connect_url(self) -> str:
        # The key must travel in the URL (the API says so); it is registered with the log
        # redactor by the daemon, and never put into our own messages.
        separator = "&" if "?" in self._url else "?"
        return f"{self._url}{separator}token_source=api&token={quote(self._api_key, safe='')}"

    def _make_connection(self, index: int) -> Connection:
        # Handing the libraries plain loggers (not True, which adds a handler of their own)
        # puts their lines under the daemon's level and format. At DEBUG the transport logs
        # URLs that carry the key; the log redactor (bridge.logs) removes it.
        client = socketio.AsyncClient(reconnection=False,
                                      logger=logging.getLogger("socketio.client"),
                                      engineio_logger=_TransportLog(index),
                                      websocket_extra_options={"max_msg_size": MAX_EVENT_BYTES})
        connection = Connection(index, client)
        ns = self.namespace

        async def on_connect() -> None:
            self._after_connect(connection)

        async def on_connect_error(data: Any = None) -> None:
            status = _refusal_status(data)
            if status in (400, 401, 403):
                connection.refused = {"status_code": status}

        async def on_disconnect(*_reason: Any) -> None:
            connection.connected.clear()
            connection.gone.set()
            connection.disconnected_at = time.monotonic()
            self._on_dropped(connection)

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

    async def _supervise(self, connection: Connection) -> None:
        attempt = 0
        while not self._stopping:
            connection.refused = None
            connection.gone.clear()
            try:
                await connection.client.connect(self._connect_url(), namespaces=[self.namespace],
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

    def _refused(self, connection: Connection) -> None:
        status = connection.refused["status_code"]
        if self.failure is None:
            log.error("helpdesk refused the API key (status %s): check [helpdesk] api_key", status)
        self.failure = KeyRefused(f"helpdesk refused the API key (status {status})")

    def _after_connect(self, connection: Connection) -> None:
        """Have its rooms joined again, then let queued work through: a request for a
        customer joins their rooms first (bridge/room_joins.py)."""
        self._on_connected(connection)
        if connection.disconnected_at is not None:
            gap = time.monotonic() - connection.disconnected_at
            self.reconnects += 1
            self.seconds_disconnected += gap
            connection.disconnected_at = None
            log.warning("helpdesk link %d reconnected after %.2fs without a connection; "
                        "joining %d customer and %d conversation rooms again (server events "
                        "sent in that window are not replayed by Socket.IO)", connection.index,
                        gap, len(connection.customers), len(connection.conversations))
        else:
            log.info("helpdesk link %d connected", connection.index)
        connection.ever_connected = True
        connection.connected.set()


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


def _refusal_status(data: Any) -> int | None:
    """connect_error data: {status_code} or python-socketio's {message, data: {...}}."""
    for candidate in (data, data.get("data") if isinstance(data, dict) else None):
        if isinstance(candidate, dict):
            status = candidate.get("status_code")
            if isinstance(status, int):
                return status
    return None
