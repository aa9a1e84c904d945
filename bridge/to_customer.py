"""The to-customer outbox: what each customer is to be shown, delivered in order.

A row is finished only once the platform took it; what it did is recorded with retries
(bridge/recording.py), so a database blip cannot make it show twice. A platform that is
down or rate-limits is waited out; a customer who blocked the bot is marked unreachable; a
row the platform refuses for good is dropped and logged; a row that fails for any other
reason is set aside after a few tries (docs/security.md, "Rows that cannot be shown").
One worker per customer.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from cachetools import LRUCache

from bridge.adapter import Adapter, DeliveryError, EditTargetGone
from bridge.backoff import retry_delay
from bridge.customers import chat_user, log_context
from bridge.display import Display
from bridge.drain import Drainer
from bridge.events import ChatUser, Outgoing
from bridge.helpdesk import HelpdeskLink
from bridge.logs import redact
from bridge.metrics import Metrics
from bridge.recording import record
from bridge.store import Customer, Store, ToCustomer
from bridge.store.models import seconds_since

log = logging.getLogger(__name__)

UNSHOWABLE_ATTEMPTS = 3  # tries for a row that fails for a reason other than the platform


class CustomerOutbox:
    def __init__(self, store: Store, link: HelpdeskLink, display: Display,
                 adapters: dict[str, Adapter], metrics: Metrics,
                 tickets: LRUCache[int, str], backlogged: set[int] | None = None) -> None:
        """backlogged: the customers working through a queue of messages to the helpdesk
        (their answers wait for the quiet customers' first: bridge/fair_share.py)."""
        self.store = store
        self.backlogged = backlogged if backlogged is not None else set()
        self.link = link
        self.display = display
        self.adapters = adapters
        self.metrics = metrics
        self.tickets = tickets  # conversation id -> ticket_chat_id, for read receipts
        self._workers = Drainer(self._drain, "to-customer")

    def kick(self, customer_id: int, backlog: bool = False) -> None:
        """backlog: found queued, not queued just now (bridge/drain.py)."""
        self._workers.kick(customer_id, backlog)

    def working(self) -> list[int]:
        """The customers whose worker runs now."""
        return self._workers.running()

    async def stop(self, grace: float) -> None:
        await self._workers.stop(grace)

    async def _drain(self, customer_id: int) -> None:
        attempt = 0
        shown = 0  # rows shown in this drain: more than one, and the customer has a queue
        customer = await self.store.customer(customer_id)
        row = await self.store.next_to_customer(customer_id)
        while row is not None:
            adapter = self.adapters.get(customer.platform)
            if adapter is None:
                log.error("no adapter for platform %s; messages stay queued", customer.platform,
                          extra=log_context(customer))
                return
            if customer.unreachable:
                row = await self.store.finish_to_customer(row, "failed")
                continue
            try:
                outgoing = Outgoing.from_json(row.body)
            except (TypeError, ValueError, AttributeError) as error:  # no shape we know
                row = await self._unshowable(customer, row, None, error)
                continue
            if outgoing.edit_of is not None:
                outgoing.edit_ref, original = await self.store.delivered(outgoing.edit_of)
                outgoing.edit_original = original.get("text") if original else None
            user = chat_user(customer)
            threaded = row.conversation_id is not None and adapter.threads_for(user)
            if threaded:
                outgoing.thread = (await self.store.conversation(row.conversation_id)).thread_ref
            unthreaded = threaded and outgoing.thread is None  # the adapter may open one
            if unthreaded:
                outgoing.thread_title = await self.store.first_words(row.conversation_id)
            self.store.check_fence(customer_id)  # LeaseLost: another daemon may show it
            outgoing.busy = shown > 0 or customer_id in self.backlogged
            try:
                ref = await _show(adapter, user, outgoing)
            except DeliveryError as error:
                if error.permanent:
                    self.metrics.errors.labels("customer_unreachable").inc()
                    log.warning("customer unreachable on %s (%s); not retrying",
                                customer.platform, error, extra=log_context(customer))
                    await self.store.set_customer(customer.id, unreachable=True)
                    customer = await self.store.customer(customer_id)
                    row = await self.store.finish_to_customer(row, "failed")
                    continue
                if error.rejected:
                    self.metrics.errors.labels("message_rejected").inc()
                    log.error("%s refused a message for good: %s", customer.platform, error,
                              extra=log_context(customer))
                    row = await self.store.finish_to_customer(row, "failed")
                    continue
                attempt += 1
                self.metrics.retries.labels(customer.platform, "rate_limited"
                                            if error.retry_after is not None else "error").inc()
                delay = error.retry_after if error.retry_after is not None \
                    else retry_delay(attempt)
                log.warning("delivery failed (%s); retrying in %.1fs", error, delay,
                            extra=log_context(customer))
                await asyncio.sleep(delay)
                continue
            except Exception as error:  # not the platform's answer: this row cannot be shown
                attempt += 1
                if attempt < UNSHOWABLE_ATTEMPTS:
                    log.warning("a %s could not be shown on %s; retrying", outgoing.kind,
                                customer.platform, exc_info=True, extra=log_context(customer))
                    await asyncio.sleep(0.5 * attempt)
                    continue
                attempt = 0
                row = await self._unshowable(customer, row, outgoing, error)
                continue
            attempt = 0
            shown += 1
            delivered = row
            opened_thread = outgoing.thread if unthreaded else None

            async def finish() -> ToCustomer | None:
                if opened_thread:  # the first word of a conversation with no thread yet
                    await self.store.set_conversation(delivered.conversation_id,
                                                      thread_ref=opened_thread)
                if outgoing.kind == "call_invite":  # its link holds the call's token
                    await self.store.replace_body(delivered.id, {**delivered.body, "url": None})
                return await self.store.finish_to_customer(delivered, "delivered", ref)

            row = await record(finish, f"{customer.platform} showed a {outgoing.kind}")
            self.metrics.relayed.labels(customer.platform, "to_customer").inc()
            self.metrics.latency.labels("to_customer").observe(seconds_since(delivered.created_at))
            if outgoing.kind == "reply" and delivered.conversation_id is not None:
                await self._mark_read(customer, delivered.conversation_id)

    async def _unshowable(self, customer: Customer, row: ToCustomer, outgoing: Outgoing | None,
                          error: Exception) -> ToCustomer | None:
        """A row that fails for a reason other than the platform (a payload nothing can
        render, a bug) must not stop the customer's queue: it is set aside as rejected, with
        the reason, and the customer is told plainly that a message could not be shown."""
        self.metrics.errors.labels("message_unshowable").inc()
        reason = redact(f"{type(error).__name__}: {error}")[:500]  # it is stored
        log.error("a %s could not be shown on %s and was set aside (%s)",
                  outgoing.kind if outgoing else "message", customer.platform, reason,
                  exc_info=error, extra=log_context(customer))
        if outgoing is None or outgoing.notice != "message_not_shown":  # not about itself
            await self.display.notice(customer, "message_not_shown",
                                      dedupe_key=f"unshown:{row.id}")
        return await self.store.finish_to_customer(row, "rejected", error=reason)

    async def _mark_read(self, customer: Customer, conversation_id: int) -> None:
        ticket = self.tickets.get(conversation_id)
        if ticket is None:
            conversation = await self.store.conversation(conversation_id)
            if conversation is None or not conversation.ticket_chat_id:
                return
            ticket = self.tickets[conversation.id] = conversation.ticket_chat_id
        # A read receipt is a courtesy: sent without waiting, so it never holds the queue.
        await self.link.notify(customer.session_id, "mark_conversation_read",
                               {"ticket_chat_id": ticket, "entity": "customer"})


async def _show(adapter: Adapter, user: ChatUser, outgoing: Outgoing) -> str | None:
    """Deliver. An edit whose message never went out, or is gone (deleted by the customer),
    says its text as a new message; when only buttons were to go, nothing."""
    if outgoing.kind == "edit":
        if outgoing.edit_ref:
            try:
                return await adapter.deliver(user, outgoing)
            except EditTargetGone:
                pass
        if not outgoing.text:
            return None
        outgoing = replace(outgoing, kind="notice", edit_ref=None, edit_original=None)
    return await adapter.deliver(user, outgoing)
