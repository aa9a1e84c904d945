"""What a customer is shown, queued for delivery: replies, notices, prompts with their
buttons, and edits of answered prompts. Each is a row of the to-customer queue (the outbox
in bridge/to_customer.py delivers it); a dedupe key makes a repeat show nothing."""
from __future__ import annotations

from typing import Any, Callable

from bridge.crashpoints import crash_point
from bridge.events import Button, Outgoing
from bridge.store import Conversation, Customer, Store
from bridge.texts import Texts


class Display:
    def __init__(self, store: Store, texts: Texts, kick: Callable[[int], None]) -> None:
        self.store = store
        self.texts = texts
        self._kick = kick  # there is something to deliver to this customer

    async def queue(self, customer: Customer, conversation: Conversation | None,
                    outgoing: Outgoing, dedupe_key: str | None = None) -> bool:
        """False if dedupe_key was seen before (then nothing is queued)."""
        row = await self.store.enqueue_to_customer(
            customer.id, conversation.id if conversation else None, outgoing.to_json(), dedupe_key)
        if row is None:
            return False
        crash_point("to-customer-stored")
        self._kick(customer.id)
        return True

    async def notice(self, customer: Customer, key: str, conversation: Conversation | None = None,
                     dedupe_key: str | None = None, thread: str | None = None,
                     **values: Any) -> None:
        """thread: where to show a notice that belongs to no conversation (yet)."""
        text = self.texts.get(key, customer.language, **values)
        await self.queue(customer, conversation,
                         Outgoing(kind="notice", text=text, notice=key, thread=thread), dedupe_key)

    async def prompt(self, customer: Customer, conversation: Conversation, prompt: str, key: str,
                     buttons: list[Button], dedupe_key: str | None = None) -> None:
        """A question with buttons; the conversation remembers it is waiting for an answer."""
        outgoing = Outgoing(kind="prompt", prompt=prompt, buttons=buttons,
                            text=self.texts.get(key, customer.language),
                            conversation_label=await self.label_if_inactive(
                                await self.store.customer(customer.id), conversation))
        row = await self.store.enqueue_to_customer(customer.id, conversation.id,
                                                   outgoing.to_json(), dedupe_key)
        if row is None:
            return
        await self.store.set_conversation(conversation.id, prompt=prompt, prompt_ref=str(row.id))
        self._kick(customer.id)

    async def close_prompt(self, customer: Customer, conversation: Conversation,
                           dedupe_key: str | None = None) -> None:
        language = customer.language
        await self.prompt(customer, conversation, "close_confirm", "close_prompt", [
            Button(self.texts.get("close_yes", language), f"close:{conversation.id}:yes"),
            Button(self.texts.get("close_no", language), f"close:{conversation.id}:no"),
        ], dedupe_key)

    async def edit_prompt(self, customer: Customer, conversation: Conversation, text: str,
                          final: bool = False) -> None:
        """Replace the answered prompt (buttons gone) with what was chosen."""
        fresh = await self.store.conversation(conversation.id)
        if not fresh.prompt_ref:
            await self.queue(customer, conversation, Outgoing(kind="notice", text=text,
                                                              final=final))
            return
        await self.queue(customer, conversation, Outgoing(
            kind="edit", text=text, edit_of=int(fresh.prompt_ref), final=final))

    async def offer_conversations(self, customer: Customer, key: str) -> None:
        open_now = [c for c in await self.store.open_conversations(customer.id)
                    if c.state == "open"]
        language = customer.language
        if not open_now:
            await self.notice(customer, "no_conversations")
            return
        fresh = await self.store.customer(customer.id)
        buttons = [Button(self.label(c, language) + (" ✓" if c.id == fresh.active_conversation_id
                                                     else ""), f"switch:{c.id}")
                   for c in open_now]
        await self.queue(customer, None, Outgoing(
            kind="prompt", prompt="conversations", buttons=buttons,
            text=self.texts.get(key, language, count=len(open_now))))

    def label(self, conversation: Conversation, language: str | None) -> str:
        return self.texts.get("conversation_label", language, number=conversation.number)

    async def label_if_inactive(self, customer: Customer, conversation: Conversation) -> str | None:
        """A label only where it tells something: another conversation is open too and this
        one is not the one the customer is writing in. (customer: read under its lock.)"""
        if customer.active_conversation_id == conversation.id:
            return None
        others = [c for c in await self.store.open_conversations(customer.id)
                  if c.id != conversation.id]
        return self.label(conversation, customer.language) if others else None
