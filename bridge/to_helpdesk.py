"""The to-helpdesk outbox: each customer's queued messages and requests, sent in order.

A row is finished only once the helpdesk has it: its support_echo (or acknowledgement)
for a message, the answer for a request (docs/protocol.md, "Handed over means
acknowledged"). While the helpdesk cannot be reached the row waits, retried with backoff;
a refusal is told to the customer (ConversationFlow.refused). One worker per customer.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from cachetools import LRUCache

from bridge.adapter import Adapter
from bridge.backoff import retry_delay
from bridge.conversation import ConversationFlow
from bridge.customers import CustomerLocks, chat_user, log_context
from bridge.delivery import Delivery
from bridge.drain import Drainer
from bridge.helpdesk import HelpdeskLink, HelpdeskUnavailable
from bridge.metrics import Metrics
from bridge.pacing import Pacer
from bridge.protocol import HelpdeskError, HelpdeskEvent, parse_event
from bridge.store import Conversation, Customer, Store, ToHelpdesk
from bridge.store.driver import Duplicate
from bridge.store.models import seconds_since
from bridge.tasks import Background

log = logging.getLogger(__name__)

NOTICE_EVERY = 600  # seconds: a customer held to their pace is told at most this often
BURST_SECONDS = 10   # a customer's burst: this many seconds' worth of their pace at once


def customer_pace(per_minute: float) -> Pacer | None:
    """[limits] messages_per_minute: one customer's messages reach the helpdesk at most
    this fast, after a short burst, so that a script or an angry customer cannot crowd
    out everyone else (docs/customers.md). None: no limit."""
    if not per_minute:
        return None
    return Pacer(max(1.0, per_minute * BURST_SECONDS / 60), BURST_SECONDS)


class HelpdeskOutbox:
    def __init__(self, store: Store, link: HelpdeskLink, flow: ConversationFlow,
                 locks: CustomerLocks, adapters: dict[str, Adapter], metrics: Metrics,
                 tickets: LRUCache[int, str],
                 on_event: Callable[[HelpdeskEvent], Awaitable[None]],
                 pace: Pacer | None = None) -> None:
        """pace: each customer's, customer_pace() (None: no limit)."""
        self.store = store
        self.link = link
        self.flow = flow
        self.locks = locks
        self.adapters = adapters
        self.metrics = metrics
        self.tickets = tickets  # conversation id -> ticket_chat_id, filled as they open
        self._on_event = on_event  # the relay's: an answer that is an event (call_support)
        self._workers = Drainer(self._drain, "to-helpdesk")
        self._courtesies = Background()  # typing indicators: never awaited by a send
        self.pace = pace
        # customers working through more than one queued row now (bridge/fair_share.py)
        self.backlogged: set[int] = set()

    def kick(self, customer_id: int, backlog: bool = False) -> None:
        """backlog: found queued, not queued just now (bridge/drain.py)."""
        self._workers.kick(customer_id, backlog)

    def working(self) -> list[int]:
        """The customers whose worker runs now."""
        return self._workers.running()

    async def stop(self, grace: float) -> None:
        await self._workers.stop(grace)
        await self._courtesies.cancel()

    async def _drain(self, customer_id: int) -> None:
        try:
            await self._drain_queue(customer_id)
        finally:
            self.backlogged.discard(customer_id)

    async def _drain_queue(self, customer_id: int) -> None:
        attempt = 0
        customer = await self.store.customer(customer_id)
        pending = await self.store.next_to_helpdesk(customer_id)
        while pending is not None:
            row, conversation = pending
            gathering = row.body.get("album_until", 0) - time.time() if row.kind == "message" \
                else 0
            if gathering > 0:  # an album still waits for more of its parts
                await asyncio.sleep(gathering)
                pending = await self.store.next_to_helpdesk(customer_id)
                continue
            if row.kind == "message" and attempt == 0:
                await self._keep_pace(customer)
            self.store.check_fence(customer_id)  # LeaseLost: not even the typing indicator
            if row.kind == "message" and attempt == 0:
                # before sending: a first message is done only when SATE's reply is in
                self._show_awaiting(customer, conversation)
            delivery = Delivery(self.store, row)
            try:
                await self._send(customer, row, conversation, delivery)
            except HelpdeskUnavailable as error:
                self.metrics.retries.labels("helpdesk", "unavailable").inc()
                attempt += 1
                await self.store.count_attempt(row.id)
                delay = retry_delay(attempt)
                log.warning("helpdesk unavailable (%s); retrying in %.1fs", error, delay,
                            extra=log_context(customer))
                await self._wait_for_link(delay)
                pending = await self.store.next_to_helpdesk(customer_id)
                continue
            except HelpdeskError as error:
                self.metrics.errors.labels("helpdesk_refused").inc()
                await self.store.finish_to_helpdesk(row, "failed", str(error))
                async with self.locks(customer.id):
                    await self.flow.refused(customer, row, error)
                # read after refused(), which may have changed the conversation
                pending = await self.store.next_to_helpdesk(customer_id)
            else:
                await delivery.done()
                pending = delivery.next
                if pending is not None:
                    self.backlogged.add(customer_id)
                self.metrics.relayed.labels(customer.platform, "to_helpdesk").inc()
                self.metrics.latency.labels("to_helpdesk").observe(seconds_since(row.created_at))
            attempt = 0

    async def _keep_pace(self, customer: Customer) -> None:
        """Wait for the customer's pace; the first time it holds a message back in a while,
        they are told their messages will arrive shortly."""
        if self.pace is None:
            return
        if not self.pace.ready(customer.id):
            self.backlogged.add(customer.id)
            minutes = int(time.time() // NOTICE_EVERY)
            async with self.locks(customer.id):
                await self.flow.display.notice(customer, "paced", None,
                                               f"paced:{customer.id}:{minutes}")
        await self.pace.wait(customer.id)

    def _show_awaiting(self, customer: Customer, conversation: Conversation | None) -> None:
        adapter = self.adapters.get(customer.platform)
        if adapter is not None and conversation is not None and conversation.handler == "sate":
            # a courtesy (a typing indicator): never let it delay the message itself
            self._courtesies.start(adapter.awaiting_reply(chat_user(customer)))

    async def _wait_for_link(self, delay: float) -> None:
        deadline = asyncio.get_running_loop().time() + delay
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
            if self.link.connected:
                return

    async def _send(self, customer: Customer, row: ToHelpdesk,
                    conversation: Conversation | None, delivery: Delivery) -> None:
        self.store.check_fence(customer.id)  # again, as close to the send as here allows
        session = customer.session_id
        if row.kind == "message":
            if conversation.state in ("closed", "failed"):
                # Closed while the message waited: it starts a new conversation instead.
                conversation = await self.store.move_to_new_conversation(row)
            body = row.body
            if conversation.ticket_chat_id is None:
                await self.link.open_conversation(
                    session, self._binder(customer, conversation, delivery), text=body["text"],
                    attachment_metadata=body.get("attachment"))
            else:
                await self.link.send_message(session, conversation.ticket_chat_id, body["text"],
                                             body.get("attachment"), delivered=delivery.done)
        elif row.kind == "call":
            if conversation is None or conversation.ticket_chat_id is None:
                conversation = conversation or await self.store.start_conversation(customer.id)
                await self.link.open_conversation(
                    session, self._binder(customer, conversation, delivery), call=True)
            else:
                envelope = await self.link.request(session, "call_support", {
                    "session_id": session, "ticket_chat_id": conversation.ticket_chat_id})
                await self._on_event(parse_event("call_support", envelope))
        elif row.kind == "close":
            envelope = await self.link.request(session, "close_support",
                                               {"ticket_chat_id": conversation.ticket_chat_id})
            async with self.locks(customer.id):
                await self.flow.closed(customer, conversation, envelope.data)
        elif row.kind == "review":
            await self.link.request(session, "review_support",
                                    {"ticket_chat_id": conversation.ticket_chat_id, **row.body})
        elif row.kind == "close_call":
            await self.link.request(session, "close_call_support",
                                    {"ticket_chat_id": conversation.ticket_chat_id})

    def _binder(self, customer: Customer, conversation: Conversation, delivery: Delivery):
        async def bind(ticket_chat_id: str) -> bool:
            # the helpdesk has the first message too: both recorded before its reply is seen
            try:
                await delivery.done(opened=(conversation.id, ticket_chat_id))
            except Duplicate:  # another conversation has this id: not the one opening
                return False
            self.tickets[conversation.id] = ticket_chat_id
            log.info("conversation opened", extra={"session_id": customer.session_id,
                                                   "ticket_chat_id": ticket_chat_id})
            return True
        return bind
