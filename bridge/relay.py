"""The core: customers' messages to the helpdesk, the helpdesk's to customers.

Stored state is the truth. Every inbound event is written to the database before anything
is sent, and every queue row is finished only after its far end has taken it; one drain
task per customer and direction works through the rows in order. Killed at any point, a
restarted relay picks up exactly the rows still queued.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import weakref
from dataclasses import replace
from typing import Any, Callable
from urllib.parse import urlencode

from cachetools import LRUCache

from bridge.adapter import Adapter, DeliveryError, EditTargetGone, Unstorable
from bridge.backoff import backoff
from bridge.crashpoints import crash_point
from bridge.delivery import Delivery
from bridge.drain import Drainer
from bridge.events import Button, ButtonPress, ChatUser, Command, Inbound, InboundMessage, Outgoing
from bridge.helpdesk import HelpdeskLink, HelpdeskUnavailable
from bridge.http import HttpServer
from bridge.logs import redact
from bridge.metrics import Metrics
from bridge.protocol import (
    CallEnded,
    CallStarted,
    ConversationClosed,
    HandlerChanged,
    HelpdeskError,
    HelpdeskEvent,
    HelpdeskMessage,
    attachment_links,
    parse_event,
)
from bridge.recording import record
from bridge.sanitize import strip_controls
from bridge.store import Conversation, Customer, Store, ToCustomer, ToHelpdesk
from bridge.store.models import seconds_since, utcnow
from bridge.tasks import Background
from bridge.texts import Texts

log = logging.getLogger(__name__)

OPEN_LIMIT = 3
CALL_LINK_TTL = 24 * 3600  # seconds a call page may end its call
RETRY_CAP = 300.0  # seconds between attempts, at most, while the far end is down
TICKET_CACHE = 10_000  # conversations whose ticket id is kept in memory
MAX_ID = 2 ** 31 - 1  # the largest id an integer column holds (PostgreSQL's)
# What a button press may carry: verb:conversation id[:choice] (the buttons made below)
_ACTION = re.compile(r"(close|rate|comment|switch):([0-9]{1,10})(?::([a-z0-9]{1,8}))?")
UNSHOWABLE_ATTEMPTS = 3  # tries for a row that fails for a reason other than the platform


def call_key(ticket_call_id: str) -> str:
    """A short, dot-free name for a call, for the call page's sealed `end` reference."""
    return hashlib.sha256(ticket_call_id.encode()).hexdigest()[:16]


def _chat_user(customer: Customer) -> ChatUser:
    return ChatUser(customer.platform, customer.account, customer.user_id, customer.chat_id,
                    customer.language)


def _for(customer: Customer, conversation: Conversation | None = None) -> dict:
    """Log context: opaque ids only, never a platform user id or message text."""
    extra = {"session_id": customer.session_id}
    if conversation is not None and conversation.ticket_chat_id:
        extra["ticket_chat_id"] = conversation.ticket_chat_id
    return extra


def _without_controls(event: Inbound) -> Inbound:
    """What a customer typed, without control characters (bridge/sanitize.py)."""
    if isinstance(event, InboundMessage):
        attachment = event.attachment
        if isinstance(attachment, dict) and isinstance(attachment.get("name"), str):
            attachment = {**attachment, "name": strip_controls(attachment["name"])}
        return replace(event, text=strip_controls(event.text), attachment=attachment)
    if isinstance(event, ButtonPress) and event.text is not None:
        return replace(event, text=strip_controls(event.text))
    return event


class Relay:
    def __init__(self, store: Store, link_factory: Callable[..., HelpdeskLink],
                 adapters: list[Adapter], http: HttpServer, texts: Texts | None = None,
                 public_url: str = "", metrics: Metrics | None = None,
                 calls: bool = False) -> None:
        self.store = store
        self.http = http
        self.metrics = metrics or Metrics()
        self.link = link_factory(on_event=self.on_helpdesk_event, known_ticket=self._known_ticket)
        self.adapters = {adapter.name: adapter for adapter in adapters}
        self.texts = texts or Texts()
        self.public_url = public_url.rstrip("/")
        self.calls = calls and bool(self.public_url)  # a LiveKit server and the call page
        # conversation id -> (its latest call's key, "live" | "closed" | "sate_left"), for
        # the call page to follow (call_key)
        self._calls: LRUCache[int, tuple[str, str]] = LRUCache(TICKET_CACHE)
        # Weak: a customer's lock lives while someone holds or waits on it, so a daemon that
        # sees millions of customers over months does not keep a lock for each.
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()
        self._tickets: LRUCache[int, str] = LRUCache(TICKET_CACHE)
        self._to_helpdesk = Drainer(self._drain_to_helpdesk, "to-helpdesk")
        self._to_customer = Drainer(self._drain_to_customer, "to-customer")
        self._courtesies = Background()  # typing indicators: never awaited by a delivery

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Re-join every room, then resume whatever the last run left queued."""
        # Only customers with an open conversation have anything to hear; others join their
        # room again when they next write. Keeps re-joins after a reconnect proportional to
        # the active customers, not to everyone ever seen.
        for session_id, ticket in await self.store.open_conversation_rooms():
            await self.link.watch_customer(session_id)
            if ticket is not None:
                await self.link.watch_conversation(session_id, ticket)
        await self.link.start()
        for adapter in self.adapters.values():
            await adapter.start(self.handle, self.http)
        up, down = await self.store.customers_with_work()
        for customer_id in up:
            self._to_helpdesk.kick(customer_id)
        for customer_id in down:
            self._to_customer.kick(customer_id)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop in order: no new delivery starts, those in flight finish within grace (or
        stay queued), and only then do the adapters stop receiving and close their clients,
        and the helpdesk link closes. What arrives meanwhile is stored, for the next start."""
        await self._to_helpdesk.stop(grace)
        await self._to_customer.stop(grace)
        await self._courtesies.cancel()
        for adapter in self.adapters.values():
            await adapter.stop()
        await self.link.stop()

    def _remember_ticket(self, conversation_id: int, ticket_chat_id: str) -> str:
        """A conversation's ticket id never changes once known: kept to spare a query."""
        self._tickets[conversation_id] = ticket_chat_id
        return ticket_chat_id

    async def _known_ticket(self, ticket_chat_id: str) -> bool:
        """Whether a conversation of this bridge has this ticket_chat_id already."""
        return await self.store.conversation_by_ticket(ticket_chat_id) is not None

    def _lock(self, customer_id: int) -> asyncio.Lock:
        # One lock per customer keeps prompts and state changes in order (as mautrix does).
        lock = self._locks.get(customer_id)
        if lock is None:
            lock = self._locks[customer_id] = asyncio.Lock()
        return lock

    # --- inbound from adapters ---------------------------------------------------

    async def handle(self, event: Inbound) -> None:
        """The adapters' sink. Returns once the event is stored. Raises Unstorable when it
        failed while the database answers: then the event itself is at fault."""
        try:
            await self._handle(_without_controls(event))
        except Exception as error:
            if await self._database_answers():
                raise Unstorable(f"{type(error).__name__} while the database answers") \
                    from error
            raise

    async def _database_answers(self) -> bool:
        try:
            await asyncio.wait_for(self.store.ping(), 2)
            return True
        except Exception:
            return False

    async def _handle(self, event: Inbound) -> None:
        user = event.user
        # A press answers where the customer already is: it never moves their chat.
        customer = await self.store.customer_for(user.platform, user.account, user.user_id,
                                                 user.chat_id, user.language,
                                                 moves_chat=not isinstance(event, ButtonPress))
        await self.link.watch_customer(customer.session_id)
        if customer.unreachable:  # they wrote, so they can be reached again (bot unblocked)
            await self.store.set_customer(customer.id, unreachable=False)
        async with self._lock(customer.id):
            if isinstance(event, InboundMessage):
                await self._on_message(customer, event)
            elif isinstance(event, ButtonPress):
                await self._on_press(customer, event)
            elif isinstance(event, Command):
                await self._on_command(customer, event)

    async def _on_message(self, customer: Customer, message: InboundMessage) -> None:
        if message.attachment is not None and not message.attachment.get("url"):
            await self._notice(customer, "attachments_unsupported")
            return
        dedupe = f"{message.user.platform}:{message.user.account}:{message.message_id}"
        text = message.text
        if message.edited:
            text = self.texts.get("edited_prefix", customer.language) + text
        row = await self.store.accept_message(
            customer.id, {"text": text, "attachment": message.attachment}, dedupe,
            thread=message.thread, ref=message.ref, may_be_comment=bool(message.text))
        if isinstance(row, Conversation):  # a rating waited for its comment: this is it
            await self._settle_comment(customer, message.text, dedupe, awaiting=row)
            return
        if row is None:
            log.info("duplicate customer message ignored", extra=_for(customer))
            return
        crash_point("to-helpdesk-stored")
        self._to_helpdesk.kick(customer.id)

    async def _settle_comment(self, customer: Customer, comment: str | None,
                              dedupe_key: str | None = None,
                              awaiting: Conversation | None = None) -> bool:
        """If a rating waits for its optional comment (awaiting: already looked up), send
        the review now: with this text as the comment, or without one when the customer
        moved on (a command). True if there was one."""
        awaiting = awaiting or await self.store.awaiting_comment(customer.id)
        if awaiting is None:
            return False
        await self._send_review(customer, awaiting, comment, dedupe_key)
        await self._edit_prompt(customer, awaiting,
                                self.texts.get("comment_thanks", customer.language), final=True)
        return True

    async def _on_command(self, customer: Customer, command: Command) -> None:
        await self._settle_comment(customer, None)
        name = command.name
        if name == "start":
            await self._notice(customer, "greeting")
        elif name == "help":
            await self._help(customer)
        elif name == "new":
            open_now = await self.store.open_conversations(customer.id)
            if len(open_now) >= OPEN_LIMIT:
                await self._offer_conversations(customer, "conversation_limit")
                return
            await self.store.set_customer(customer.id, active_conversation_id=None)
            await self._notice(customer, "new_conversation")
        elif name == "conversations":
            await self._offer_conversations(customer, "conversation_list")
        elif name == "close":
            active = await self._active(customer)
            if active is None:
                await self._notice(customer, "no_conversations")
                return
            await self._close_prompt(customer, active)
        elif name == "call":
            if not self.calls:
                await self._notice(customer, "call_not_configured")
                return
            active = await self._active(customer)
            await self._request(customer, active, "call", {})
        else:
            await self._help(customer)

    async def _help(self, customer: Customer) -> None:
        adapter = self.adapters.get(customer.platform)
        await self._notice(customer, "help", **{
            name: adapter.command_hint(name) if adapter else f"/{name}"
            for name in ("new", "conversations", "close", "call")})

    async def _active(self, customer: Customer) -> Conversation | None:
        fresh = await self.store.customer(customer.id)
        if fresh.active_conversation_id is None:
            return None
        conversation = await self.store.conversation(fresh.active_conversation_id)
        return conversation if conversation and conversation.state in ("opening", "open") else None

    # --- button presses ----------------------------------------------------------

    async def _on_press(self, customer: Customer, press: ButtonPress) -> None:
        # Checked before anything reaches SQL: the data comes back from the platform as the
        # client sent it, and an id out of the column's range is a database error.
        action = _ACTION.fullmatch(press.action)
        verb, conversation_id, value = action.groups("") if action else ("", "", "")
        conversation = None
        if conversation_id and int(conversation_id) <= MAX_ID:
            conversation = await self.store.conversation(int(conversation_id))
        # The owner check: a press on someone else's conversation (forged callback data),
        # or on a prompt that was already answered, does nothing but say so.
        if conversation is None or conversation.customer_id != customer.id \
                or not self._press_fits(verb, value, conversation):
            log.warning("refused a button press that does not fit (%s)", verb, extra=_for(customer))
            await self._notice(customer, "no_longer_open")
            return
        language = customer.language
        if verb == "close":
            await self.store.set_conversation(conversation.id, prompt=None)
            choice = self.texts.get("close_yes" if value == "yes" else "close_no", language)
            await self._edit_prompt(customer, conversation,
                                    f"{self.texts.get('close_prompt', language)} {choice}")
            if value == "yes":
                await self._request(customer, conversation, "close", {})
            else:
                await self._notice(customer, "close_kept_open", conversation)
        elif verb == "rate":
            await self.store.set_conversation(conversation.id, rating=int(value), prompt=None)
            await self._edit_prompt(customer, conversation,
                                    self.texts.get("rated", language, rating=value))
            await self._prompt(customer, conversation, "comment", "comment_prompt",
                               [Button(self.texts.get("comment_skip", language),
                                       f"comment:{conversation.id}:skip")])
        elif verb == "comment":  # skipped, or typed in a form (press.text; empty: none)
            await self._settle_comment(customer, press.text if value == "text" else None)
        elif verb == "switch":
            await self.store.set_customer(customer.id, active_conversation_id=conversation.id)
            await self._notice(customer, "switched", label=self._label(conversation, language))

    @staticmethod
    def _press_fits(verb: str, value: str, conversation: Conversation) -> bool:
        if verb == "close":
            return conversation.prompt == "close_confirm" and value in ("yes", "no") \
                and conversation.state == "open"
        if verb == "rate":
            return conversation.prompt == "rating" and value in {"1", "2", "3", "4", "5"}
        if verb == "comment":
            return conversation.prompt == "comment" and value in ("skip", "text")
        if verb == "switch":
            return conversation.state in ("opening", "open")
        return False

    async def _send_review(self, customer: Customer, conversation: Conversation,
                           comment: str | None, dedupe_key: str | None = None) -> None:
        await self.store.set_conversation(conversation.id, prompt=None)
        body = {"rating": str(conversation.rating)}
        if comment:
            body["review"] = comment
        await self._request(customer, conversation, "review", body, dedupe_key)

    async def _request(self, customer: Customer, conversation: Conversation | None, kind: str,
                       body: dict, dedupe_key: str | None = None) -> None:
        await self.store.enqueue_request(customer.id, conversation.id if conversation else None,
                                         kind, body, dedupe_key)
        self._to_helpdesk.kick(customer.id)

    # --- customer -> helpdesk ----------------------------------------------------

    async def _drain_to_helpdesk(self, customer_id: int) -> None:
        attempt = 0
        customer = await self.store.customer(customer_id)
        pending = await self.store.next_to_helpdesk(customer_id)
        while pending is not None:
            row, conversation = pending
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
                delay = backoff(attempt, 0.5, RETRY_CAP)
                log.warning("helpdesk unavailable (%s); retrying in %.1fs", error, delay,
                            extra=_for(customer))
                await self._wait_for_link(delay)
                pending = await self.store.next_to_helpdesk(customer_id)
                continue
            except HelpdeskError as error:
                self.metrics.errors.labels("helpdesk_refused").inc()
                await self.store.finish_to_helpdesk(row, "failed", str(error))
                await self._refused(customer, row, error)
                # read after _refused, which may have changed the conversation
                pending = await self.store.next_to_helpdesk(customer_id)
            else:
                await delivery.done()
                pending = delivery.next
                self.metrics.relayed.labels(customer.platform, "to_helpdesk").inc()
                self.metrics.latency.labels("to_helpdesk").observe(seconds_since(row.created_at))
            attempt = 0

    def _show_awaiting(self, customer: Customer, conversation: Conversation | None) -> None:
        adapter = self.adapters.get(customer.platform)
        if adapter is not None and conversation is not None and conversation.handler == "sate":
            # a courtesy (a typing indicator): never let it delay the message itself
            self._courtesies.start(adapter.awaiting_reply(_chat_user(customer)))

    async def _wait_for_link(self, delay: float) -> None:
        deadline = asyncio.get_running_loop().time() + delay
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
            if self.link.connected:
                return

    async def _send(self, customer: Customer, row: ToHelpdesk,
                    conversation: Conversation | None, delivery: Delivery) -> None:
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
                await self.on_helpdesk_event(parse_event("call_support", envelope))
        elif row.kind == "close":
            envelope = await self.link.request(session, "close_support",
                                               {"ticket_chat_id": conversation.ticket_chat_id})
            await self._closed(customer, conversation, envelope.data)
        elif row.kind == "review":
            await self.link.request(session, "review_support",
                                    {"ticket_chat_id": conversation.ticket_chat_id, **row.body})
        elif row.kind == "close_call":
            await self.link.request(session, "close_call_support",
                                    {"ticket_chat_id": conversation.ticket_chat_id})

    def _binder(self, customer: Customer, conversation: Conversation, delivery: Delivery):
        async def bind(ticket_chat_id: str) -> None:
            # the helpdesk has the first message too: both recorded before its reply is seen
            await delivery.done(opened=(conversation.id, ticket_chat_id))
            self._remember_ticket(conversation.id, ticket_chat_id)
            log.info("conversation opened", extra={"session_id": customer.session_id,
                                                   "ticket_chat_id": ticket_chat_id})
        return bind

    async def _refused(self, customer: Customer, row: ToHelpdesk, error: HelpdeskError) -> None:
        """The helpdesk said no: tell the customer plainly, never drop it silently."""
        log.warning("helpdesk refused %s: %s", row.kind, error.status_code, extra=_for(customer))
        async with self._lock(customer.id):
            conversation = await self.store.conversation(row.conversation_id) \
                if row.conversation_id else None
            if conversation is not None and conversation.ticket_chat_id is None:
                await self.store.set_conversation(conversation.id, state="failed")
            known_open = [c for c in await self.store.open_conversations(customer.id)
                          if c.state == "open"]
            if row.kind in ("message", "call") and error.status_code == 400 and known_open \
                    and conversation is not None and conversation.ticket_chat_id is None:
                await self._offer_conversations(customer, "conversation_limit")
            elif row.kind == "call":
                await self._notice(customer, "call_refused", reason=error.message)
            else:
                await self._notice(customer, "send_failed", reason=error.message)

    # --- helpdesk -> customer ----------------------------------------------------

    async def on_helpdesk_event(self, event: HelpdeskEvent) -> None:
        conversation = await self.store.conversation_by_ticket(event.ticket_chat_id)
        if conversation is None:
            log.warning("helpdesk event %s for a conversation this bridge does not know",
                        type(event).__name__, extra={"ticket_chat_id": event.ticket_chat_id})
            return
        async with self._lock(conversation.customer_id):
            customer = await self.store.customer(conversation.customer_id)
            if isinstance(event, HelpdeskMessage):
                await self._on_reply(customer, conversation, event)
            elif isinstance(event, HandlerChanged):
                await self.store.set_conversation(conversation.id, handler=event.handler,
                                                  agent_name=event.agent_name)
                await self._notice(customer, "agent_joined", conversation, event.dedupe_key,
                                   agent=event.agent_name or "an agent")
            elif isinstance(event, ConversationClosed):
                if conversation.state != "closed":
                    await self._notice(customer, "auto_closed", conversation, event.dedupe_key)
                    await self._closed(customer, conversation, None, locked=True)
            elif isinstance(event, CallStarted):
                await self._call_invite(customer, conversation, event)
            elif isinstance(event, CallEnded):
                self._set_call_state(conversation.id, event.reason, event.ticket_call_id)
                await self._notice(customer, "call_ended", conversation, event.dedupe_key)

    async def _on_reply(self, customer: Customer, conversation: Conversation,
                        message: HelpdeskMessage) -> None:
        language = customer.language
        if message.sender == "agent":
            name = conversation.agent_name or "Agent"
        else:
            name = self.texts.get("sate_name", language)
        reply = Outgoing(kind="reply", text=message.text, sender=message.sender, sender_name=name,
                         conversation_label=await self._label_if_inactive(customer, conversation),
                         attachments=attachment_links(message.attachment_metadata))
        if not await self._queue(customer, conversation, reply, message.dedupe_key):
            return  # seen before: an agent message on both channels, or a replay
        if message.closed_support:
            await self._closed(customer, conversation, None, locked=True)
        elif message.close_support:
            await self._close_prompt(customer, conversation, message.dedupe_key + ":close")

    async def _closed(self, customer: Customer, conversation: Conversation, data: Any,
                      locked: bool = False) -> None:
        """The conversation ended (confirmed, auto-closed, or closed_support): rate it."""
        if not locked:
            async with self._lock(customer.id):
                return await self._closed(customer, conversation, data, locked=True)
        fresh = await self.store.conversation(conversation.id)
        if fresh.state == "closed":
            return
        if fresh.prompt == "close_confirm" and fresh.prompt_ref:
            # Closed before the customer answered: the old question loses its buttons.
            await self._queue(customer, conversation, Outgoing(
                kind="edit", text="", edit_of=int(fresh.prompt_ref)))
        await self.store.set_conversation(conversation.id, state="closed", prompt=None,
                                          closed_at=utcnow())
        current = await self.store.customer(customer.id)
        if current.active_conversation_id == conversation.id:
            await self.store.set_customer(customer.id, active_conversation_id=None)
        if isinstance(data, dict) and isinstance(data.get("message"), str) and data["message"]:
            await self._queue(customer, conversation, Outgoing(
                kind="notice", text=data["message"]), f"closed-text:{conversation.id}")
        await self._prompt(customer, conversation, "rating", "rating_prompt",
                           [Button(f"{n} ★", f"rate:{conversation.id}:{n}") for n in range(1, 6)])
        if conversation.ticket_chat_id:
            await self.link.unwatch_conversation(customer.session_id, conversation.ticket_chat_id)
        if not await self.store.open_conversations(customer.id):
            self.link.forget_customer(customer.session_id)

    async def _close_prompt(self, customer: Customer, conversation: Conversation,
                            dedupe_key: str | None = None) -> None:
        language = customer.language
        await self._prompt(customer, conversation, "close_confirm", "close_prompt", [
            Button(self.texts.get("close_yes", language), f"close:{conversation.id}:yes"),
            Button(self.texts.get("close_no", language), f"close:{conversation.id}:no"),
        ], dedupe_key)

    async def _call_invite(self, customer: Customer, conversation: Conversation,
                           call: CallStarted) -> None:
        if not self.calls:
            await self._notice(customer, "call_not_configured", conversation, call.dedupe_key)
            return
        self._set_call_state(conversation.id, "live", call.ticket_call_id)
        # The token rides in the URL fragment, which browsers never send to a server; `end`
        # lets the page end this call of this conversation, and nothing else.
        end = self.http.seal(f"{conversation.id}-{call_key(call.ticket_call_id)}", CALL_LINK_TTL)
        url = f"{self.public_url}/call#" + urlencode({"room": call.room, "token": call.token,
                                                      "end": end})
        language = customer.language
        await self._queue(customer, conversation, Outgoing(
            kind="call_invite", text=self.texts.get("call_invite", language), url=url,
            url_label=self.texts.get("call_join", language)), call.dedupe_key)

    def _set_call_state(self, conversation_id: int, state: str,
                        ticket_call_id: str | None) -> None:
        """A call started ("live") or ended. An end naming another call than the latest
        one changes nothing."""
        key = call_key(ticket_call_id) if ticket_call_id else None
        latest = self._calls.get(conversation_id)
        if state != "live" and latest is not None and key not in (None, latest[0]):
            return
        self._calls[conversation_id] = (key or (latest[0] if latest else ""), state)

    def call_state(self, conversation_id: int, key: str) -> str | None:
        """"live", "closed" or "sate_left" for the call page of call `key` (a call_key());
        "closed" when a newer call has started since; None if this run has not seen it."""
        latest = self._calls.get(conversation_id)
        if latest is None:
            return None
        return latest[1] if latest[0] == key else "closed"

    async def end_call(self, conversation_id: int, key: str) -> bool:
        """The customer pressed "End call" on the page of call `key`: close_call_support,
        once, and only while that call is the conversation's latest."""
        conversation = await self.store.conversation(conversation_id)
        if conversation is None or conversation.ticket_chat_id is None:
            return False
        if self.call_state(conversation_id, key) in ("closed", "sate_left"):
            return True
        self._set_call_state(conversation_id, "closed", None)
        customer = await self.store.customer(conversation.customer_id)
        async with self._lock(customer.id):
            await self._request(customer, conversation, "close_call", {})
        return True

    # --- queueing things to show ---------------------------------------------------

    async def _queue(self, customer: Customer, conversation: Conversation | None,
                     outgoing: Outgoing, dedupe_key: str | None = None) -> bool:
        row = await self.store.enqueue_to_customer(
            customer.id, conversation.id if conversation else None, outgoing.to_json(), dedupe_key)
        if row is None:
            return False
        crash_point("to-customer-stored")
        self._to_customer.kick(customer.id)
        return True

    async def _notice(self, customer: Customer, key: str, conversation: Conversation | None = None,
                      dedupe_key: str | None = None, **values: Any) -> None:
        text = self.texts.get(key, customer.language, **values)
        await self._queue(customer, conversation, Outgoing(kind="notice", text=text, notice=key),
                          dedupe_key)

    async def _prompt(self, customer: Customer, conversation: Conversation, prompt: str, key: str,
                      buttons: list[Button], dedupe_key: str | None = None) -> None:
        outgoing = Outgoing(kind="prompt", prompt=prompt, buttons=buttons,
                            text=self.texts.get(key, customer.language),
                            conversation_label=await self._label_if_inactive(
                                await self.store.customer(customer.id), conversation))
        row = await self.store.enqueue_to_customer(customer.id, conversation.id,
                                                   outgoing.to_json(), dedupe_key)
        if row is None:
            return
        await self.store.set_conversation(conversation.id, prompt=prompt, prompt_ref=str(row.id))
        self._to_customer.kick(customer.id)

    async def _edit_prompt(self, customer: Customer, conversation: Conversation, text: str,
                           final: bool = False) -> None:
        """Replace the answered prompt (buttons gone) with what was chosen."""
        fresh = await self.store.conversation(conversation.id)
        if not fresh.prompt_ref:
            await self._queue(customer, conversation, Outgoing(kind="notice", text=text,
                                                               final=final))
            return
        await self._queue(customer, conversation, Outgoing(
            kind="edit", text=text, edit_of=int(fresh.prompt_ref), final=final))

    async def _offer_conversations(self, customer: Customer, key: str) -> None:
        open_now = [c for c in await self.store.open_conversations(customer.id)
                    if c.state == "open"]
        language = customer.language
        if not open_now:
            await self._notice(customer, "no_conversations")
            return
        fresh = await self.store.customer(customer.id)
        buttons = [Button(self._label(c, language) + (" ✓" if c.id == fresh.active_conversation_id
                                                      else ""), f"switch:{c.id}")
                   for c in open_now]
        await self._queue(customer, None, Outgoing(
            kind="prompt", prompt="conversations", buttons=buttons,
            text=self.texts.get(key, language, count=len(open_now))))

    def _label(self, conversation: Conversation, language: str | None) -> str:
        return self.texts.get("conversation_label", language, number=conversation.number)

    async def _label_if_inactive(self, customer: Customer, conversation: Conversation) -> str | None:
        """A label only where it tells something: another conversation is open too and this
        one is not the one the customer is writing in. (customer: read under its lock.)"""
        if customer.active_conversation_id == conversation.id:
            return None
        others = [c for c in await self.store.open_conversations(customer.id)
                  if c.id != conversation.id]
        return self._label(conversation, customer.language) if others else None

    # --- delivery to the platform --------------------------------------------------

    async def _drain_to_customer(self, customer_id: int) -> None:
        attempt = 0
        customer = await self.store.customer(customer_id)
        row = await self.store.next_to_customer(customer_id)
        while row is not None:
            adapter = self.adapters.get(customer.platform)
            if adapter is None:
                log.error("no adapter for platform %s; messages stay queued", customer.platform,
                          extra=_for(customer))
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
            threaded = adapter.threads and row.conversation_id is not None
            if threaded:
                outgoing.thread = (await self.store.conversation(row.conversation_id)).thread_ref
            try:
                ref = await self._show(adapter, customer, outgoing)
            except DeliveryError as error:
                if error.permanent:
                    self.metrics.errors.labels("customer_unreachable").inc()
                    log.warning("customer unreachable on %s (%s); not retrying",
                                customer.platform, error, extra=_for(customer))
                    await self.store.set_customer(customer.id, unreachable=True)
                    customer = await self.store.customer(customer_id)
                    row = await self.store.finish_to_customer(row, "failed")
                    continue
                if error.rejected:
                    self.metrics.errors.labels("message_rejected").inc()
                    log.error("%s refused a message for good: %s", customer.platform, error,
                              extra=_for(customer))
                    row = await self.store.finish_to_customer(row, "failed")
                    continue
                attempt += 1
                self.metrics.retries.labels(customer.platform, "rate_limited"
                                            if error.retry_after is not None else "error").inc()
                delay = error.retry_after if error.retry_after is not None else \
                    backoff(attempt, 0.5, RETRY_CAP)
                log.warning("delivery failed (%s); retrying in %.1fs", error, delay,
                            extra=_for(customer))
                await asyncio.sleep(delay)
                continue
            except Exception as error:  # not the platform's answer: this row cannot be shown
                attempt += 1
                if attempt < UNSHOWABLE_ATTEMPTS:
                    log.warning("a %s could not be shown on %s; retrying", outgoing.kind,
                                customer.platform, exc_info=True, extra=_for(customer))
                    await asyncio.sleep(0.5 * attempt)
                    continue
                attempt = 0
                row = await self._unshowable(customer, row, outgoing, error)
                continue
            attempt = 0
            delivered = row
            starts_thread = threaded and outgoing.thread is None and ref

            async def finish() -> ToCustomer | None:
                if starts_thread:  # the first word of a conversation with no thread yet
                    await self.store.set_conversation(delivered.conversation_id, thread_ref=ref)
                if outgoing.kind == "call_invite":  # its link holds the call's token
                    await self.store.replace_body(delivered.id, {**delivered.body, "url": None})
                return await self.store.finish_to_customer(delivered, "delivered", ref)

            row = await record(finish, f"{customer.platform} showed a {outgoing.kind}")
            self.metrics.relayed.labels(customer.platform, "to_customer").inc()
            self.metrics.latency.labels("to_customer").observe(seconds_since(delivered.created_at))
            if outgoing.kind == "reply" and delivered.conversation_id is not None:
                await self._mark_read(customer, delivered.conversation_id)

    @staticmethod
    async def _show(adapter: Adapter, customer: Customer, outgoing: Outgoing) -> str | None:
        """Deliver. An edit whose message never went out, or is gone (deleted by the
        customer), says its text as a new message; when only buttons were to go, nothing."""
        user = _chat_user(customer)
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

    async def _unshowable(self, customer: Customer, row: ToCustomer, outgoing: Outgoing | None,
                          error: Exception) -> ToCustomer | None:
        """A row that fails for a reason other than the platform (a payload nothing can
        render, a bug) must not stop the customer's queue: it is set aside as rejected, with
        the reason, and the customer is told plainly that a message could not be shown."""
        self.metrics.errors.labels("message_unshowable").inc()
        reason = redact(f"{type(error).__name__}: {error}")[:500]  # it is stored
        log.error("a %s could not be shown on %s and was set aside (%s)",
                  outgoing.kind if outgoing else "message", customer.platform, reason,
                  exc_info=error, extra=_for(customer))
        if outgoing is None or outgoing.notice != "message_not_shown":  # not about itself
            await self._notice(customer, "message_not_shown", dedupe_key=f"unshown:{row.id}")
        return await self.store.finish_to_customer(row, "rejected", error=reason)

    async def _mark_read(self, customer: Customer, conversation_id: int) -> None:
        ticket = self._tickets.get(conversation_id)
        if ticket is None:
            conversation = await self.store.conversation(conversation_id)
            if conversation is None or not conversation.ticket_chat_id:
                return
            ticket = self._remember_ticket(conversation.id, conversation.ticket_chat_id)
        # A read receipt is a courtesy: sent without waiting, so it never holds the queue.
        await self.link.notify(customer.session_id, "mark_conversation_read",
                               {"ticket_chat_id": ticket, "entity": "customer"})
