"""The queue to the helpdesk: customers' messages and requests (close, review, call), each
kept until the helpdesk has acknowledged it, worked oldest first per customer."""
from __future__ import annotations

import json
import time
from typing import Any, Awaitable, Callable, Optional, Sequence

from bridge.store.conversation_rows import (
    AWAITING_COMMENT,
    SET_ACTIVE,
    THREAD_CONVERSATION,
    ConversationRows,
)
from bridge.store.driver import Duplicate, column_list, model
from bridge.store.models import Conversation, ToHelpdesk, utcnow
from bridge.store.queries import (
    CONVERSATION,
    FENCE,
    OPEN_STATES,
    TO_HELPDESK,
)

NextRequest = tuple[ToHelpdesk, Optional[Conversation]]  # a queued request and its conversation

_INSERT = ("INSERT INTO to_helpdesk (customer_id, conversation_id, kind, body, dedupe_key, "
           "status, attempts, created_at) VALUES (?, ?, ?, ?, ?, 'queued', 0, ?) RETURNING id")
# The usual message in one statement: into the active conversation if it is open.
_QUEUE_IN_OPEN = ("INSERT INTO to_helpdesk (customer_id, conversation_id, kind, body, "
                  "dedupe_key, status, attempts, created_at) "
                  "SELECT u.id, c.id, 'message', ?, ?, 'queued', 0, ? FROM customers u "
                  "JOIN conversations c ON c.id = u.active_conversation_id "
                  f"WHERE u.id = ? AND c.state IN {OPEN_STATES!r}")
_NO_COMMENT_AWAITED = (" AND NOT EXISTS (SELECT 1 FROM conversations w "
                       "WHERE w.customer_id = u.id AND w.prompt = 'comment')")
_QUEUE_IN_ACTIVE = f"{_QUEUE_IN_OPEN} RETURNING id, conversation_id"
_QUEUE_UNLESS_COMMENT = f"{_QUEUE_IN_OPEN}{_NO_COMMENT_AWAITED} RETURNING id, conversation_id"
_ACTIVE_CONVERSATION = (f"SELECT {column_list(CONVERSATION, 'c')} FROM conversations c "
                        "JOIN customers u ON u.active_conversation_id = c.id WHERE u.id = ?")
_MOVE = "UPDATE to_helpdesk SET conversation_id = ? WHERE id = ?"
_NEXT_WHERE = (f"SELECT {column_list(TO_HELPDESK, 't')}, {column_list(CONVERSATION, 'c')} "
               "FROM to_helpdesk t LEFT JOIN conversations c ON c.id = t.conversation_id "
               "WHERE t.customer_id = ? AND t.status = 'queued'")
_NEXT = f"{_NEXT_WHERE} ORDER BY t.id LIMIT 1"
_NEXT_FENCED = f"{_NEXT_WHERE} AND {FENCE} ORDER BY t.id LIMIT 1"
_FINISH = "UPDATE to_helpdesk SET status = ?, error = ?, done_at = ? WHERE id = ?"
_FINISH_FENCED = f"{_FINISH} AND {FENCE} RETURNING id"
_OPENED = "UPDATE conversations SET ticket_chat_id = ?, state = 'open' WHERE id = ?"
_COUNT_ATTEMPT = "UPDATE to_helpdesk SET attempts = attempts + 1 WHERE id = ?"
_LATEST_QUEUED = ("SELECT id, conversation_id, body, dedupe_key, created_at FROM to_helpdesk "
                  "WHERE customer_id = ? AND status = 'queued' AND kind = 'message' "
                  "ORDER BY id DESC LIMIT 1")
_SET_BODY = "UPDATE to_helpdesk SET body = ? WHERE id = ? AND status = 'queued'"
# A part gathered into another row: kept (done) for its dedupe key only.
_GATHERED = ("INSERT INTO to_helpdesk (customer_id, conversation_id, kind, body, dedupe_key, "
             "status, attempts, created_at, done_at) VALUES (?, ?, 'message', '{}', ?, "
             "'gathered', 0, ?, ?)")
ALBUM_WINDOW = 1.0  # seconds an album waits for more of its parts after each one
# A part joins its album only this long before the album may go: the sender reads the row
# at album_until at the earliest, so a part is never added to one already on its way.
ALBUM_MARGIN = 0.5


class HelpdeskQueue(ConversationRows):
    async def accept_message(self, customer_id: int, body: dict, dedupe_key: str | None,
                             thread: str | None = None, ref: str | None = None,
                             may_be_comment: bool = False) -> ToHelpdesk | Conversation | None:
        """Queue a customer message: in the conversation of the thread it was written in,
        else in their active conversation; a new conversation (threaded at `thread`, or
        under the message itself) when that one is closed or there is none. One
        transaction, so a crash leaves either both or neither. None: a duplicate.

        may_be_comment: if a rating waits for its optional comment, nothing is queued and
        that conversation comes back instead (the text is its comment). Asked here, in the
        same round trip, because it is asked of every message and is almost always no."""
        try:
            if body.get("album"):
                gathered = await self._gather_into_album(customer_id, body, dedupe_key)
                if gathered is not None:
                    return gathered
                body = {**body, "album_until": time.time() + ALBUM_WINDOW}
            if thread is None:
                queued = await self._queue_in_active_conversation(
                    customer_id, body, dedupe_key, may_be_comment)
                if queued is not None:
                    return queued
            async with self._transaction(changes_customer=customer_id) as transaction:
                if may_be_comment:
                    awaiting = await transaction.row(AWAITING_COMMENT, customer_id)
                    if awaiting is not None:
                        return self._conversation(awaiting)
                if thread is not None:
                    found = await transaction.row(THREAD_CONVERSATION, customer_id, thread)
                else:
                    found = await transaction.row(_ACTIVE_CONVERSATION, customer_id)
                target = self._conversation(found)
                if target is None or target.state not in OPEN_STATES:
                    target = await self._start_conversation(transaction, customer_id,
                                                            thread_ref=thread or ref)
                elif thread is not None:  # writing in a thread makes it the active one
                    await transaction.run(SET_ACTIVE, target.id, customer_id)
                return await self._insert(transaction.row, customer_id, target.id, "message",
                                          body, dedupe_key)
        except Duplicate:
            return None

    async def _gather_into_album(self, customer_id: int, body: dict,
                                 dedupe_key: str | None) -> ToHelpdesk | None:
        """A part of an album (several files sent as one, as Telegram does) joins the
        album's row while that row still waits for parts (ALBUM_WINDOW after the latest):
        the helpdesk gets one message with every file and the caption once, and answers it
        once. None when there is no such row (the part starts one). Raises Duplicate for a
        part seen before."""
        async with self._transaction(changes_customer=customer_id) as transaction:
            found = await transaction.row(_LATEST_QUEUED, customer_id)
            if found is None:
                return None
            row_id, conversation_id, album_body, album_key, created_at = found
            album_body = json.loads(album_body) if isinstance(album_body, str) else album_body
            now = time.time()
            if album_body.get("album") != body["album"] \
                    or now > album_body.get("album_until", 0) - ALBUM_MARGIN:
                return None
            moment = self._db.from_time(utcnow())
            await transaction.run(_GATHERED, customer_id, conversation_id, dedupe_key, moment,
                                  moment)
            merged = {**album_body, "album_until": now + ALBUM_WINDOW,
                      "text": "\n".join(t for t in (album_body["text"], body["text"]) if t),
                      "attachment": _files(album_body) + _files(body) or None}
            await transaction.run(_SET_BODY, json.dumps(merged), row_id)
            return ToHelpdesk(id=row_id, customer_id=customer_id,
                              conversation_id=conversation_id, kind="message", body=merged,
                              dedupe_key=album_key, status="queued", attempts=0, error=None,
                              created_at=self._db.to_time(created_at), done_at=None)

    async def _queue_in_active_conversation(self, customer_id: int, body: dict,
                                            dedupe_key: str | None,
                                            may_be_comment: bool) -> ToHelpdesk | None:
        """The usual case in one statement, committed by itself: the active conversation is
        open and no rating waits for a comment. None when it is not so (the transaction in
        accept_message sorts that out). One statement where the transaction takes five:
        round trips on PostgreSQL, SQLite's one writer held for each of them."""
        created_at = utcnow()
        queued = await self._db.write(
            _QUEUE_UNLESS_COMMENT if may_be_comment else _QUEUE_IN_ACTIVE,
            json.dumps(body), dedupe_key, self._db.from_time(created_at), customer_id)
        if queued is None:
            return None
        new_id, conversation_id = queued
        return ToHelpdesk(id=new_id, customer_id=customer_id, conversation_id=conversation_id,
                          kind="message", body=body, dedupe_key=dedupe_key, status="queued",
                          attempts=0, error=None, created_at=created_at, done_at=None)

    async def enqueue_request(self, customer_id: int, conversation_id: int, kind: str,
                              body: dict, dedupe_key: str | None = None) -> ToHelpdesk | None:
        try:
            return await self._insert(self._db.write, customer_id, conversation_id, kind,
                                      body, dedupe_key)
        except Duplicate:
            return None

    async def _insert(self, run: Callable[..., Awaitable[Sequence[Any] | None]],
                      customer_id: int, conversation_id: int | None, kind: str, body: dict,
                      dedupe_key: str | None) -> ToHelpdesk:
        """run: a transaction's statement, or the driver's own (committed by itself)."""
        created_at = utcnow()
        new_id = (await run(_INSERT, customer_id, conversation_id, kind, json.dumps(body),
                            dedupe_key, self._db.from_time(created_at)))[0]
        return ToHelpdesk(id=new_id, customer_id=customer_id, conversation_id=conversation_id,
                          kind=kind, body=body, dedupe_key=dedupe_key, status="queued",
                          attempts=0, error=None, created_at=created_at, done_at=None)

    async def move_to_new_conversation(self, row: ToHelpdesk) -> Conversation:
        """A queued message whose conversation closed meanwhile starts a new one."""
        async with self._transaction(changes_customer=row.customer_id) as transaction:
            conversation = await self._start_conversation(transaction, row.customer_id)
            await transaction.run(_MOVE, conversation.id, row.id)
            return conversation

    async def next_to_helpdesk(self, customer_id: int) -> NextRequest | None:
        """The customer's oldest queued request, with its conversation as it is now (none
        once a fenced Store has lost the customer's shard)."""
        token = self._token(self.shard_of(customer_id))
        found = await self._db.read(_NEXT, customer_id) if token is None \
            else await self._db.read(_NEXT_FENCED, customer_id, *token)
        if found is None:
            return None
        split = len(TO_HELPDESK)
        conversation = found[split:] if found[split] is not None else None
        return (model(ToHelpdesk, TO_HELPDESK, found[:split], self._db),
                self._conversation(conversation))

    async def finish_to_helpdesk(self, row: ToHelpdesk, status: str, error: str | None = None,
                                 opened: tuple[int, str] | None = None) -> NextRequest | None:
        """Mark a request done or failed, and return the customer's next one (a drain
        does them one after the other).

        opened: (conversation id, ticket_chat_id) of the conversation the request opened,
        recorded in the same transaction: a crash leaves the conversation without its id
        and the message queued, or both done, never the id known and the message queued."""
        finished = (status, error, self._db.from_time(utcnow()), row.id)
        if opened is None:
            await self._finish(self._db.write, _FINISH, _FINISH_FENCED, *finished,
                               shard=self.shard_of(row.customer_id))
        else:
            async with self._transaction() as transaction:
                conversation_id, ticket_chat_id = opened
                await transaction.run(_OPENED, ticket_chat_id, conversation_id)
                await self._finish(transaction.row, _FINISH, _FINISH_FENCED, *finished,
                                   shard=self.shard_of(row.customer_id))
        return await self.next_to_helpdesk(row.customer_id)

    async def count_attempt(self, row_id: int) -> None:
        await self._db.write(_COUNT_ATTEMPT, row_id)


def _files(body: dict) -> list[dict]:
    """A queued message's attachments as a list (one file is kept as itself)."""
    found = body.get("attachment")
    return found if isinstance(found, list) else [found] if found else []
