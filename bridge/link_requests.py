"""Sending one request to the helpdesk and waiting for its answer, which comes as an
acknowledgement or as a server event (docs/protocol.md, "Responses"); the matching of
events to requests is bridge/answers.py."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

import socketio

from bridge.answers import Waiter
from bridge.link_pool import Connection, ConnectionPool, HelpdeskUnavailable
from bridge.protocol import Envelope, MalformedPayload, parse_envelope

log = logging.getLogger(__name__)

# How many request timeouts a customer message may wait for its echo while connected.
PATIENCE = 4

Delivered = Callable[[], Awaitable[None]]


class Requests:
    def __init__(self, pool: ConnectionPool, namespace: str, timeout: float) -> None:
        self._pool = pool
        self._namespace = namespace
        self._timeout = timeout

    async def request(self, connection: Connection, event: str, payload: dict,
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
        await self._pool.ready(connection)
        waiter = Waiter(answer_event or event, payload.get("ticket_chat_id"),
                        asyncio.get_running_loop().create_future())
        try:
            on_ack, ack_id = await self._emit(connection, waiter, event, payload)
            envelope = await self._answer(connection, waiter, event, on_ack, ack_id, patient)
            envelope.raise_for_status()
            if delivered is not None:
                await delivered()  # its errors are the caller's, not the helpdesk's
            return envelope
        finally:
            waiter.handed_over.set()

    async def sent(self, connection: Connection, event: str, payload: dict
                   ) -> Awaitable[Envelope]:
        """Send a request at once on a connection that is up: emitted before this first
        waits, so it keeps its place among the connection's packets. Returns its answer, to
        await (HelpdeskError, HelpdeskUnavailable as for request). For requests whose
        answer the caller records nothing of (room joins): it holds no event back."""
        waiter = Waiter(event, payload.get("ticket_chat_id"),
                        asyncio.get_running_loop().create_future())
        waiter.handed_over.set()  # nothing to record: the answer holds no event back
        on_ack, ack_id = await self._emit(connection, waiter, event, payload)

        async def answer() -> Envelope:
            envelope = await self._answer(connection, waiter, event, on_ack, ack_id, False)
            envelope.raise_for_status()
            return envelope
        return answer()

    async def _emit(self, connection: Connection, waiter: Waiter, event: str,
                    payload: dict) -> tuple[Callable, int | None]:
        """Emit, the answer expected by ack or event: the ack callback and its id."""
        connection.answers.expect(waiter)

        def on_ack(*args: Any) -> None:
            if not waiter.future.done() and args:
                try:
                    connection.answers.answer(waiter, parse_envelope(args[0]))
                except MalformedPayload as error:
                    log.warning("helpdesk: malformed ack to %s skipped: %s", event, error)

        try:
            await connection.client.emit(event, payload, namespace=self._namespace,
                                         callback=on_ack)
        except socketio.exceptions.SocketIOError as error:
            connection.answers.done_waiting(waiter)
            raise HelpdeskUnavailable(f"could not send {event}: {error}") from None
        return on_ack, _ack_id(connection.client, self._namespace, on_ack)

    async def _answer(self, connection: Connection, waiter: Waiter, event: str,
                      on_ack: Callable, ack_id: int | None, patient: bool) -> Envelope:
        """The answer, by ack or event, within the request timeout (PATIENCE of them when
        patient: see request)."""
        timeout = self._timeout * (PATIENCE if patient else 1)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        except asyncio.TimeoutError:
            log.warning("helpdesk: no answer to %s within %.1fs", event, timeout)
            if patient:
                await self._pool.recycle(connection)
            raise HelpdeskUnavailable(f"no answer to {event}") from None
        finally:
            connection.answers.done_waiting(waiter)
            if ack_id is not None:
                asyncio.get_running_loop().call_later(
                    self._timeout, _forget_callback, connection.client, self._namespace,
                    ack_id, on_ack)


# python-socketio (5.x) keeps an ack callback until its ack comes, or until the connection
# drops, and has no public way to drop one: neither emit() nor call() does on a timeout. A
# helpdesk that answers by event sends no ack, so every request would stay in memory
# until the next reconnect: months, for a daemon. These two read its `callbacks` table
# (namespace -> {ack id: callback}), the one place the bridge touches its private state;
# tests/test_resilience.py fails if a python-socketio release changes it.

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
    """Called a request timeout after the answer, so an ack that does come finds its
    callback (else python-socketio warns about it)."""
    pending = client.callbacks.get(namespace, {})
    if pending.get(ack_id) is callback:
        del pending[ack_id]
