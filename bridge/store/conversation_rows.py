"""Conversations: a customer's helpdesk conversations, numbered for them, one of them the
active one (where a message written outside any thread goes)."""
from __future__ import annotations

import json
from typing import Any

from bridge.store.driver import Transaction
from bridge.store.models import Conversation, utcnow
from bridge.store.queries import IS_OPEN, SELECT_CONVERSATION, Queries

_BY_ID = f"{SELECT_CONVERSATION} WHERE id = ?"
_BY_TICKET = f"{SELECT_CONVERSATION} WHERE ticket_chat_id = ?"
_OPEN = f"{SELECT_CONVERSATION} WHERE customer_id = ? AND {IS_OPEN} ORDER BY id"
THREAD_CONVERSATION = (f"{SELECT_CONVERSATION} WHERE customer_id = ? AND thread_ref = ? "
                       "ORDER BY id DESC LIMIT 1")
_FIRST_MESSAGE = ("SELECT body FROM to_helpdesk WHERE conversation_id = ? AND kind = 'message' "
                  "ORDER BY id LIMIT 1")
AWAITING_COMMENT = (f"{SELECT_CONVERSATION} WHERE customer_id = ? AND prompt = 'comment' "
                     "ORDER BY id DESC LIMIT 1")
_HIGHEST_NUMBER = "SELECT max(number) FROM conversations WHERE customer_id = ?"
_INSERT = ("INSERT INTO conversations (customer_id, number, state, handler, thread_ref, "
           "created_at) VALUES (?, ?, 'opening', 'sate', ?, ?) RETURNING id")
SET_ACTIVE = "UPDATE customers SET active_conversation_id = ? WHERE id = ?"
_CALL_ENDED = "UPDATE conversations SET call_state = ? WHERE id = ? AND call_key = ?"
# A call ends once: only while it is the latest and live (or the call was never recorded).
_END_CALL = ("UPDATE conversations SET call_state = 'closed' WHERE id = ? "
             "AND (call_state IS NULL OR (call_key = ? AND call_state = 'live')) RETURNING id")


class ConversationRows(Queries):
    async def conversation(self, conversation_id: int) -> Conversation | None:
        return self._conversation(await self._db.read(_BY_ID, conversation_id))

    async def thread_conversation(self, customer_id: int, thread: str) -> Conversation | None:
        """The (latest) conversation shown in that platform thread."""
        return self._conversation(await self._db.read(THREAD_CONVERSATION, customer_id, thread))

    async def first_words(self, conversation_id: int) -> str:
        """What the customer wrote first in the conversation ("" when it is not kept)."""
        found = await self._db.read(_FIRST_MESSAGE, conversation_id)
        if found is None:
            return ""
        body = json.loads(found[0]) if isinstance(found[0], str) else found[0]
        return str(body.get("text") or "")

    async def conversation_by_ticket(self, ticket_chat_id: str) -> Conversation | None:
        return self._conversation(await self._db.read(_BY_TICKET, ticket_chat_id))

    async def open_conversations(self, customer_id: int) -> list[Conversation]:
        return [self._conversation(found)
                for found in await self._db.read_all(_OPEN, customer_id)]

    async def awaiting_comment(self, customer_id: int) -> Conversation | None:
        """The conversation whose rating waits for its optional comment, if any."""
        return self._conversation(await self._db.read(AWAITING_COMMENT, customer_id))

    async def set_conversation(self, conversation_id: int, **fields: Any) -> None:
        await self._update(Conversation, conversation_id, fields)

    async def call_ended(self, conversation_id: int, state: str, key: str | None) -> None:
        """The helpdesk ended a call: the latest one (key None), or the one named, if it
        is still the latest."""
        if key is None:
            await self._update(Conversation, conversation_id, {"call_state": state})
        else:
            await self._write(_CALL_ENDED, state, conversation_id, key)

    async def end_call_if_live(self, conversation_id: int, key: str) -> bool:
        """Mark call `key` closed, if it is the latest and live: True when it was."""
        return await self._write(_END_CALL, conversation_id, key) is not None

    async def start_conversation(self, customer_id: int) -> Conversation:
        """A new conversation row (state "opening"), made the customer's active one."""
        async with self._transaction(changes_customer=customer_id) as transaction:
            return await self._start_conversation(transaction, customer_id)

    async def _start_conversation(self, transaction: Transaction, customer_id: int,
                                  thread_ref: str | None = None) -> Conversation:
        """In a transaction that names customer_id as changed (the active conversation)."""
        highest = (await transaction.row(_HIGHEST_NUMBER, customer_id))[0]
        number, created_at = (highest or 0) + 1, utcnow()
        new_id = (await transaction.row(_INSERT, customer_id, number, thread_ref,
                                        self._db.from_time(created_at)))[0]
        await transaction.run(SET_ACTIVE, new_id, customer_id)
        return Conversation(id=new_id, customer_id=customer_id, ticket_chat_id=None,
                            number=number, state="opening", handler="sate", agent_name=None,
                            prompt=None, prompt_ref=None, rating=None, thread_ref=thread_ref,
                            created_at=created_at, closed_at=None)
