"""The core: customers' messages to the helpdesk, the helpdesk's to customers.

Stored state is the truth. Every inbound event is written to the database before anything
is sent, and every queue row is finished only after its far end has taken it; one worker
per customer and direction works through the rows in order. Killed at any point, a
restarted relay picks up exactly the rows still queued.

The relay receives (from the adapters and from the helpdesk link) and keeps each
customer's events in order under one lock. What they mean is bridge/conversation.py; what
is shown, bridge/display.py; the two outboxes, bridge/to_helpdesk.py and
bridge/to_customer.py.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Callable, Iterator, Protocol

from cachetools import LRUCache

from bridge.adapter import Adapter, Unstorable
from bridge.calls import Calls
from bridge.conversation import ConversationFlow
from bridge.customer_data import CustomerData
from bridge.customers import CustomerLocks
from bridge.display import Display
from bridge.events import ButtonPress, Command, Inbound, InboundMessage
from bridge.helpdesk import HelpdeskLink
from bridge.http import HttpServer
from bridge.metrics import Metrics
from bridge.protocol import HelpdeskEvent, event_to_json
from bridge.sanitize import strip_controls
from bridge.store import Store
from bridge.store.models import utcnow
from bridge.texts import Texts
from bridge.to_customer import CustomerOutbox
from bridge.to_helpdesk import HelpdeskOutbox, customer_pace

log = logging.getLogger(__name__)

TICKET_CACHE = 10_000  # conversations whose ticket id is kept in memory


class Ownership(Protocol):
    """Which customers this daemon works, when several share a database (bridge/shards.py)."""

    def owns(self, customer_id: int) -> bool: ...


class NotOwned(Exception):
    """Another daemon works this customer: the event is stored for it (bridge/forwarding.py)."""

    def __init__(self, shard: int) -> None:
        super().__init__(f"shard {shard} is another daemon's")
        self.shard = shard


class Relay:
    def __init__(self, store: Store, link_factory: Callable[..., HelpdeskLink],
                 adapters: list[Adapter], http: HttpServer, texts: Texts | None = None,
                 metrics: Metrics | None = None, calls: Calls | None = None,
                 ownership: Ownership | None = None, comment_wait: float = 300.0,
                 messages_per_minute: float = 0.0) -> None:
        """ownership: None when this daemon alone works the database's customers.
        comment_wait: [ratings] comment_wait; messages_per_minute: [limits]'s."""
        self.store = store
        self.ownership = ownership
        self._acting: Counter[int] = Counter()  # shard -> events being handled now
        self.metrics = metrics or Metrics()
        self.link = link_factory(on_event=self.on_helpdesk_event)
        self.adapters = {adapter.name: adapter for adapter in adapters}
        self.calls = calls  # None: no LiveKit server, or no public URL for the call page
        self._locks = CustomerLocks()
        # conversation id -> ticket id, which never changes (but see carry_out)
        self._tickets: LRUCache[int, str] = LRUCache(TICKET_CACHE)
        tickets = self._tickets
        display = Display(store, texts or Texts(), kick=lambda c: self._to_customer.kick(c))
        self.flow = ConversationFlow(store, display, self.link, self.adapters, self.calls,
                                     kick_to_helpdesk=lambda c: self._to_helpdesk.kick(c),
                                     comment_wait=comment_wait)
        self._to_helpdesk = HelpdeskOutbox(store, self.link, self.flow, self._locks,
                                           self.adapters, self.metrics, tickets,
                                           on_event=self.on_helpdesk_event,
                                           pace=customer_pace(messages_per_minute))
        self._to_customer = CustomerOutbox(store, self.link, display, self.adapters,
                                           self.metrics, tickets,
                                           backlogged=self._to_helpdesk.backlogged)

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Re-join every room, then resume whatever the last run left queued. The adapters
        receive once this has started (bridge/forwarding.py)."""
        await self._join_rooms()
        await self.link.start()
        await self.resume()

    async def _join_rooms(self, shards: set[int] | None = None) -> None:
        """Join the rooms of the customers this daemon works (of `shards` only, if given).
        Only customers with an open conversation have anything to hear; others join their
        room again when they next write. Keeps re-joins after a reconnect proportional to
        the active customers, not to everyone ever seen."""
        for customer_id, session_id, ticket in await self.store.open_conversation_rooms():
            if not self.owns(customer_id) or (
                    shards is not None and self.store.shard_of(customer_id) not in shards):
                continue
            await self.link.watch_customer(session_id)
            if ticket is not None:
                await self.link.watch_conversation(session_id, ticket)

    async def resume(self) -> None:
        """Work whatever is queued for the customers this daemon works (at start, when a
        paused daemon has its leases back, when it takes shards, and now and then should a
        row have been queued while its shard moved)."""
        up, down = await self.store.customers_with_work()
        for customer_id in up:
            if self.owns(customer_id):
                self._to_helpdesk.kick(customer_id, backlog=True)
        for customer_id in down:
            if self.owns(customer_id):
                self._to_customer.kick(customer_id, backlog=True)

    def owns(self, customer_id: int) -> bool:
        return self.ownership is None or self.ownership.owns(customer_id)

    async def took(self, shards: set[int]) -> None:
        """This daemon now works the customers of `shards`: it hears their rooms and works
        what they have queued."""
        await self._join_rooms(shards)
        await self.resume()

    async def quiet(self, shards: set[int], grace: float) -> bool:
        """Wait, for at most grace, until nothing is in flight for the customers of
        `shards` (which this daemon no longer starts work for): True once so."""
        deadline = asyncio.get_running_loop().time() + grace
        while True:
            working = self._to_helpdesk.working() + self._to_customer.working()
            if not any(self._acting[s] for s in shards) and not any(
                    self.store.shard_of(c) in shards for c in working):
                return True
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.02)

    @contextmanager
    def _acting_for(self, customer_id: int) -> Iterator[None]:
        """NotOwned unless this daemon works the customer; while inside, their shard is not
        let go (quiet() waits)."""
        if not self.owns(customer_id):
            raise NotOwned(self.store.shard_of(customer_id))
        shard = self.store.shard_of(customer_id)
        self._acting[shard] += 1
        try:
            yield
        finally:
            self._acting[shard] -= 1

    async def stop(self, grace: float = 5.0) -> None:
        """Stop delivering: no new delivery starts, those in flight finish within grace (or
        stay queued). The adapters stop receiving after this (bridge/forwarding.py), and
        only then does the helpdesk link close (close()): what arrives meanwhile is stored,
        for the next start."""
        await self._to_helpdesk.stop(grace)
        await self._to_customer.stop(grace)

    async def close(self) -> None:
        await self.link.stop()

    # --- from the adapters -------------------------------------------------------

    async def handle(self, event: Inbound) -> None:
        """The adapters' sink. Returns once the event is stored. Raises Unstorable when it
        failed while the database answers: then the event itself is at fault; NotOwned
        when another daemon works the customer."""
        try:
            event = _without_controls(event)
            if self.ownership is None:
                await self._handle(event)
                return
            user = event.user
            customer_id = await self.store.customer_id_for(
                user.platform, user.account, user.user_id, user.chat_id, user.language)
            with self._acting_for(customer_id):
                await self._handle(event)
        except NotOwned:
            raise
        except Exception as error:
            if await self._database_answers():
                raise Unstorable(f"{type(error).__name__} while the database answers") \
                    from error
            raise

    async def _handle(self, event: Inbound) -> None:
        user = event.user
        # A press answers where the customer already is: it never moves their chat.
        customer = await self.store.customer_for(user.platform, user.account, user.user_id,
                                                 user.chat_id, user.language,
                                                 moves_chat=not isinstance(event, ButtonPress))
        if customer.blocked_at is not None:
            await self.flow.refuse_blocked(customer)
            return
        await self.link.watch_customer(customer.session_id)
        if customer.unreachable:  # they wrote, so they can be reached again (bot unblocked)
            await self.store.set_customer(customer.id, unreachable=False)
        async with self._locks(customer.id):
            if isinstance(event, InboundMessage):
                await self.flow.on_message(customer, event)
            elif isinstance(event, ButtonPress):
                await self.flow.on_press(customer, event)
            elif isinstance(event, Command):
                await self.flow.on_command(customer, event)

    async def _database_answers(self) -> bool:
        try:
            await asyncio.wait_for(self.store.ping(), 2)
            return True
        except Exception:
            return False

    # --- from the helpdesk -------------------------------------------------------

    async def on_helpdesk_event(self, event: HelpdeskEvent) -> None:
        conversation = await self.store.conversation_by_ticket(event.ticket_chat_id)
        if conversation is None:
            log.warning("helpdesk event %s for a conversation this bridge does not know",
                        type(event).__name__, extra={"ticket_chat_id": event.ticket_chat_id})
            return
        try:
            with self._acting_for(conversation.customer_id):
                async with self._locks(conversation.customer_id):
                    customer = await self.store.customer(conversation.customer_id)
                    await self.flow.on_event(customer, conversation, event)
        except NotOwned as elsewhere:
            # This daemon worked the customer before and is still in their rooms. The daemon
            # working them now is there too, unless it is down or the shard is moving:
            # stored for it, the event is not lost then, and shown once either way (dedupe).
            await self.store.forward(event_to_json(event), elsewhere.shard)
            self.metrics.forwarded.inc()

    # --- an operator's changes (helpdesk-bridge customers) ------------------------------

    async def carry_out(self, change: str, customer_id: int) -> None:
        """forget, block or unblock a customer this daemon works, under their lock, so that
        nothing is sent for them halfway (NotOwned when another daemon works them)."""
        with self._acting_for(customer_id):
            async with self._locks(customer_id):
                customer = await self.store.customer(customer_id)
                if customer is None:
                    return  # forgotten already
                if change == "forget":
                    for conversation in await self.store.open_conversations(customer_id):
                        if conversation.ticket_chat_id:
                            await self.link.unwatch_conversation(
                                customer.session_id, conversation.ticket_chat_id)
                    self.link.forget_customer(customer.session_id)
                    # SQLite may give a new conversation the id of the last one erased:
                    # the ids it knew are refilled from the database as needed
                    self._tickets.clear()
                log.info("%s", await CustomerData(self.store).carry_out(change, customer))

    # --- ratings that waited long enough for their comment ------------------------------

    async def send_waited_ratings(self) -> None:
        """Send alone the ratings of this daemon's customers that waited comment_wait for a
        comment (the wait is in the database: a restart keeps it)."""
        rated_before = utcnow() - timedelta(seconds=self.flow.comment_wait)
        for waited in await self.store.waited_out_ratings(rated_before):
            if not self.owns(waited.customer_id):
                continue
            try:
                with self._acting_for(waited.customer_id):
                    async with self._locks(waited.customer_id):
                        customer = await self.store.customer(waited.customer_id)
                        await self.flow.send_rating_alone(customer, waited)
            except NotOwned:
                pass  # its shard moved meanwhile: the daemon holding it sends it

    # --- from the call page --------------------------------------------------------

    async def end_call(self, conversation_id: int, key: str) -> bool:
        """The customer pressed "End call" on the page of call `key`: close_call_support,
        once, and only while that call is the conversation's latest. NotOwned when another
        daemon works the customer."""
        conversation = await self.store.conversation(conversation_id)
        if conversation is None or conversation.ticket_chat_id is None or self.calls is None:
            return False
        with self._acting_for(conversation.customer_id):
            if await self.calls.end(conversation_id, key):
                customer = await self.store.customer(conversation.customer_id)
                async with self._locks(customer.id):
                    await self.flow.request(customer, conversation, "close_call", {})
        return True


def _without_controls(event: Inbound) -> Inbound:
    """What a customer typed, without control characters (bridge/sanitize.py)."""
    if isinstance(event, InboundMessage):
        attachment = event.attachment
        if isinstance(attachment, dict) and isinstance(attachment.get("name"), str):
            name = strip_controls(attachment["name"])
            attachment = attachment if name is attachment["name"] else {**attachment,
                                                                        "name": name}
        text = strip_controls(event.text)
        if text is not event.text or attachment is not event.attachment:
            return replace(event, text=text, attachment=attachment)
    elif isinstance(event, ButtonPress) and event.text is not None:
        text = strip_controls(event.text)
        if text is not event.text:
            return replace(event, text=text)
    return event
