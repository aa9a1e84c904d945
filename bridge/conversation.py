"""The conversation with a customer: what their messages, commands and button presses do,
and what each of the helpdesk's events shows them.

Everything here runs under the customer's lock (bridge/relay.py takes it) and only writes
to the database: requests for the helpdesk go to the to-helpdesk queue (bridge/to_helpdesk.py
sends them), what the customer is shown to the to-customer queue (bridge/display.py).
"""
from __future__ import annotations

import logging
import re
from typing import Any, Callable

from bridge.adapter import Adapter
from bridge.calls import Calls
from bridge.crashpoints import crash_point
from bridge.customers import log_context
from bridge.display import Display
from bridge.events import Button, ButtonPress, Command, InboundMessage, Outgoing
from bridge.helpdesk import HelpdeskLink
from bridge.protocol import (
    CallEnded,
    CallStarted,
    ConversationClosed,
    HandlerChanged,
    HelpdeskError,
    HelpdeskEvent,
    HelpdeskMessage,
    attachment_links,
    dedupe_key,
)
from bridge.store import Conversation, Customer, Store, ToHelpdesk
from bridge.store.models import utcnow

log = logging.getLogger(__name__)

OPEN_LIMIT = 3  # open conversations per session, as the helpdesk allows
MAX_ID = 2 ** 31 - 1  # the largest id an integer column holds (PostgreSQL's)
# What a button press may carry: verb:conversation id[:choice] (the buttons made here)
_ACTION = re.compile(r"(close|rate|comment|switch):([0-9]{1,10})(?::([a-z0-9]{1,8}))?")


class ConversationFlow:
    def __init__(self, store: Store, display: Display, link: HelpdeskLink,
                 adapters: dict[str, Adapter], calls: Calls | None,
                 kick_to_helpdesk: Callable[[int], None], comment_wait: float = 300.0) -> None:
        """comment_wait: seconds a rating waits for its comment (0: it is sent at once, and
        no comment is asked for)."""
        self.store = store
        self.comment_wait = comment_wait
        self.display = display
        self.texts = display.texts
        self.link = link
        self.adapters = adapters
        self.calls = calls  # None: voice calls are not offered
        self._kick_to_helpdesk = kick_to_helpdesk

    # --- what the customer does ------------------------------------------------------

    async def on_message(self, customer: Customer, message: InboundMessage) -> None:
        if message.attachment is not None and not message.attachment.get("url"):
            await self.display.notice(customer, "attachments_unsupported")
            return
        dedupe = f"{message.user.platform}:{message.user.account}:{message.message_id}"
        text = message.text
        if message.edited:
            text = self.texts.get("edited_prefix", customer.language) + text
        body = {"text": text, "attachment": message.attachment}
        if message.album:
            body["album"] = message.album
        row = await self.store.accept_message(
            customer.id, body, dedupe,
            thread=message.thread, ref=message.ref, may_be_comment=bool(message.text))
        if isinstance(row, Conversation):  # a rating waited for its comment: this is it
            await self._settle_comment(customer, message.text, dedupe, awaiting=row)
            return
        if row is None:
            log.info("duplicate customer message ignored", extra=log_context(customer))
            return
        crash_point("to-helpdesk-stored")
        self._kick_to_helpdesk(customer.id)

    async def on_command(self, customer: Customer, command: Command) -> None:
        await self._settle_comment(customer, None)
        if command.thread is not None:  # typed in a conversation's thread: about that one
            in_thread = await self.store.thread_conversation(customer.id, command.thread)
            if in_thread is not None and in_thread.id != customer.active_conversation_id:
                await self.store.set_customer(customer.id, active_conversation_id=in_thread.id)
                customer = await self.store.customer(customer.id)
        name = command.name
        if name == "start":
            await self.display.notice(customer, "greeting")
        elif name == "new":
            open_now = await self.store.open_conversations(customer.id)
            if len(open_now) >= OPEN_LIMIT:
                await self.display.offer_conversations(customer, "conversation_limit")
                return
            await self.store.set_customer(customer.id, active_conversation_id=None)
            # in the thread the platform opened for it, if it did (a Telegram topic)
            await self.display.notice(customer, "new_conversation", thread=command.thread)
        elif name == "conversations":
            await self.display.offer_conversations(customer, "conversation_list")
        elif name == "close":
            active = await self._active(customer)
            if active is None:
                await self.display.notice(customer, "no_conversations")
                return
            await self.display.close_prompt(customer, active)
        elif name == "call":
            if self.calls is None:
                await self.display.notice(customer, "call_not_configured")
                return
            await self.request(customer, await self._active(customer), "call", {})
        else:
            await self._help(customer)

    async def on_press(self, customer: Customer, press: ButtonPress) -> None:
        # Checked before anything reaches SQL: the data comes back from the platform as the
        # client sent it, and an id out of the column's range is a database error.
        action = _ACTION.fullmatch(press.action)
        verb, conversation_id, value = action.groups("") if action else ("", "", "")
        conversation = None
        if conversation_id and int(conversation_id) <= MAX_ID:
            conversation = await self.store.conversation(int(conversation_id))
        # The owner check: a press on someone else's conversation (forged callback data),
        # or on a prompt that was already answered, does nothing but say so.
        if conversation is not None and conversation.customer_id == customer.id \
                and _late_comment(verb, value, conversation):
            await self._keep_late_comment(customer, conversation, press.text)
            return
        if conversation is None or conversation.customer_id != customer.id \
                or not _press_fits(verb, value, conversation):
            log.warning("refused a button press that does not fit (%s)", verb,
                        extra=log_context(customer))
            await self.display.notice(customer, "no_longer_open")
            return
        language = customer.language
        if verb == "close":
            await self.store.set_conversation(conversation.id, prompt=None)
            choice = self.texts.get("close_yes" if value == "yes" else "close_no", language)
            await self.display.edit_prompt(customer, conversation,
                                           f"{self.texts.get('close_prompt', language)} {choice}")
            if value == "yes":
                await self.request(customer, conversation, "close", {})
            else:
                await self.display.notice(customer, "close_kept_open", conversation)
        elif verb == "rate":
            review_now = not self.comment_wait
            if not await self.store.rate(conversation, int(value), review_now):
                await self.display.notice(customer, "no_longer_open")
                return
            await self.display.edit_prompt(customer, conversation, self.texts.get(
                "rated", language, rating=value), final=review_now)
            if review_now:
                self._kick_to_helpdesk(customer.id)
                return
            await self.display.prompt(customer, conversation, "comment", "comment_prompt",
                                      [Button(self.texts.get("comment_skip", language),
                                              f"comment:{conversation.id}:skip")])
        elif verb == "comment":  # skipped, or typed in a form (press.text; empty: none)
            await self._settle_comment(customer, press.text if value == "text" else None)
        elif verb == "switch":
            await self.store.set_customer(customer.id, active_conversation_id=conversation.id)
            await self.display.notice(customer, "switched",
                                      label=self.display.label(conversation, language))

    async def refuse_blocked(self, customer: Customer) -> None:
        """An operator blocked the customer: nothing is relayed, and they are told once
        (per block)."""
        log.info("not relayed: the customer is blocked", extra=log_context(customer))
        await self.display.notice(customer, "blocked", None,
                                  f"blocked:{customer.id}:{customer.blocked_at.timestamp():.0f}")

    async def request(self, customer: Customer, conversation: Conversation | None, kind: str,
                      body: dict, dedupe_key: str | None = None) -> None:
        """Queue a request for the helpdesk (message, close, review, call, close_call)."""
        await self.store.enqueue_request(customer.id, conversation.id if conversation else None,
                                         kind, body, dedupe_key)
        self._kick_to_helpdesk(customer.id)

    async def send_rating_alone(self, customer: Customer, conversation: Conversation) -> None:
        """The rating waited comment_wait for its comment (bridge/relay.py looks): it goes
        without one."""
        await self._settle_comment(customer, None, awaiting=conversation)

    async def _settle_comment(self, customer: Customer, comment: str | None,
                              dedupe_key: str | None = None,
                              awaiting: Conversation | None = None) -> bool:
        """If a rating waits for its optional comment (awaiting: already looked up), send
        the review now: with this text as the comment, or without one when the customer
        moved on (a command) or the wait is over. True if it was sent now."""
        awaiting = awaiting or await self.store.awaiting_comment(customer.id)
        if awaiting is None or not await self.store.send_review(awaiting, comment, dedupe_key):
            return False
        self._kick_to_helpdesk(customer.id)
        await self.display.edit_prompt(customer, awaiting, self.texts.get(
            "comment_thanks", customer.language), final=True)
        return True

    async def _keep_late_comment(self, customer: Customer, conversation: Conversation,
                                 comment: str | None) -> None:
        """A comment typed in a form after its rating went alone: the helpdesk takes one
        review per conversation, so the customer's words are kept in the log, and thanked."""
        log.info("a comment came after its rating was sent alone; not sent, kept here: %r",
                 comment or "", extra=log_context(customer))
        await self.display.notice(customer, "comment_thanks", conversation)

    async def _help(self, customer: Customer) -> None:
        adapter = self.adapters.get(customer.platform)
        await self.display.notice(customer, "help", **{
            name: adapter.command_hint(name) if adapter else f"/{name}"
            for name in ("new", "conversations", "close", "call")})

    async def _active(self, customer: Customer) -> Conversation | None:
        fresh = await self.store.customer(customer.id)
        if fresh.active_conversation_id is None:
            return None
        conversation = await self.store.conversation(fresh.active_conversation_id)
        return conversation if conversation and conversation.state in ("opening", "open") else None

    # --- what the helpdesk does ------------------------------------------------------

    async def on_event(self, customer: Customer, conversation: Conversation,
                       event: HelpdeskEvent) -> None:
        if isinstance(event, HelpdeskMessage):
            await self._on_reply(customer, conversation, event)
        elif isinstance(event, HandlerChanged):
            await self.store.set_conversation(conversation.id, handler=event.handler,
                                              agent_name=event.agent_name)
            await self.display.notice(customer, "agent_joined", conversation, dedupe_key(event),
                                      agent=event.agent_name or "an agent")
        elif isinstance(event, ConversationClosed):
            if conversation.state != "closed":
                await self.display.notice(customer, "auto_closed", conversation,
                                          dedupe_key(event))
                await self.closed(customer, conversation, None)
        elif isinstance(event, CallStarted):
            await self._call_invite(customer, conversation, event)
        elif isinstance(event, CallEnded):
            if self.calls is not None:
                await self.calls.ended(conversation.id, event.reason,
                                       event.ticket_call_id)
            await self.display.notice(customer, "call_ended", conversation, dedupe_key(event))

    async def _on_reply(self, customer: Customer, conversation: Conversation,
                        message: HelpdeskMessage) -> None:
        if message.sender == "agent":
            name = conversation.agent_name or "Agent"
        else:
            name = self.texts.get("sate_name", customer.language)
        reply = Outgoing(kind="reply", text=message.text, sender=message.sender, sender_name=name,
                         conversation_label=await self.display.label_if_inactive(
                             customer, conversation),
                         attachments=attachment_links(message.attachment_metadata))
        if not await self.display.queue(customer, conversation, reply, dedupe_key(message)):
            return  # seen before: an agent message on both channels, or a replay
        if message.closed_support:
            await self.closed(customer, conversation, None)
        elif message.close_support:
            await self.display.close_prompt(customer, conversation,
                                            dedupe_key(message) + ":close")

    async def closed(self, customer: Customer, conversation: Conversation, data: Any) -> None:
        """The conversation ended (confirmed, auto-closed, or closed_support): rate it.
        data: the helpdesk's answer to close_support, whose message is shown."""
        fresh = await self.store.conversation(conversation.id)
        if fresh.state == "closed":
            return
        if fresh.prompt == "close_confirm" and fresh.prompt_ref:
            # Closed before the customer answered: the old question loses its buttons.
            await self.display.queue(customer, conversation, Outgoing(
                kind="edit", text="", edit_of=int(fresh.prompt_ref)))
        await self.store.set_conversation(conversation.id, state="closed", prompt=None,
                                          closed_at=utcnow())
        current = await self.store.customer(customer.id)
        if current.active_conversation_id == conversation.id:
            await self.store.set_customer(customer.id, active_conversation_id=None)
        if isinstance(data, dict) and isinstance(data.get("message"), str) and data["message"]:
            await self.display.queue(customer, conversation, Outgoing(
                kind="notice", text=data["message"]), f"closed-text:{conversation.id}")
        await self.display.prompt(customer, conversation, "rating", "rating_prompt", [
            Button(f"{n} ★", f"rate:{conversation.id}:{n}") for n in range(1, 6)])
        if conversation.ticket_chat_id:
            await self.link.unwatch_conversation(customer.session_id, conversation.ticket_chat_id)
        if not await self.store.open_conversations(customer.id):
            self.link.forget_customer(customer.session_id)

    async def refused(self, customer: Customer, row: ToHelpdesk, error: HelpdeskError) -> None:
        """The helpdesk said no: tell the customer plainly, never drop it silently."""
        log.warning("helpdesk refused %s: %s", row.kind, error.status_code,
                    extra=log_context(customer))
        conversation = await self.store.conversation(row.conversation_id) \
            if row.conversation_id else None
        if conversation is not None and conversation.ticket_chat_id is None:
            await self.store.set_conversation(conversation.id, state="failed")
        known_open = [c for c in await self.store.open_conversations(customer.id)
                      if c.state == "open"]
        if row.kind in ("message", "call") and error.status_code == 400 and known_open \
                and conversation is not None and conversation.ticket_chat_id is None:
            await self.display.offer_conversations(customer, "conversation_limit")
        elif row.kind == "call":
            await self.display.notice(customer, "call_refused", reason=error.message)
        else:
            await self.display.notice(customer, "send_failed", reason=error.message)

    async def _call_invite(self, customer: Customer, conversation: Conversation,
                           call: CallStarted) -> None:
        if self.calls is None:
            await self.display.notice(customer, "call_not_configured", conversation,
                                      dedupe_key(call))
            return
        language = customer.language
        await self.display.queue(customer, conversation, Outgoing(
            kind="call_invite", text=self.texts.get("call_invite", language),
            url=await self.calls.started(conversation.id, call),
            url_label=self.texts.get("call_join", language)), dedupe_key(call))


def _late_comment(verb: str, value: str, conversation: Conversation) -> bool:
    """A comment typed in a form (Slack's) for a rating that was sent alone meanwhile."""
    return verb == "comment" and value == "text" and conversation.prompt != "comment" \
        and conversation.rated_at is not None


def _press_fits(verb: str, value: str, conversation: Conversation) -> bool:
    """The press answers the prompt the conversation is waiting on, with a valid choice."""
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
