"""A customer as a platform knows them, as the log names them, and their one lock."""
from __future__ import annotations

import asyncio
import weakref

from bridge.events import ChatUser
from bridge.store import Conversation, Customer


def chat_user(customer: Customer) -> ChatUser:
    return ChatUser(customer.platform, customer.account, customer.user_id, customer.chat_id,
                    customer.language)


def log_context(customer: Customer, conversation: Conversation | None = None) -> dict:
    """Log context: opaque ids only, never a platform user id or message text."""
    extra = {"session_id": customer.session_id}
    if conversation is not None and conversation.ticket_chat_id:
        extra["ticket_chat_id"] = conversation.ticket_chat_id
    return extra


class CustomerLocks:
    """One lock per customer keeps prompts and state changes in order (as mautrix does).
    Weak: a customer's lock lives while someone holds or waits on it, so a daemon that sees
    millions of customers over months does not keep a lock for each."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = \
            weakref.WeakValueDictionary()

    def __call__(self, customer_id: int) -> asyncio.Lock:
        lock = self._locks.get(customer_id)
        if lock is None:
            lock = self._locks[customer_id] = asyncio.Lock()
        return lock
