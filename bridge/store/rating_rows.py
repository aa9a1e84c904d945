"""A conversation's rating and its optional comment (docs/ratings.md): recorded, waited for
at most [ratings] comment_wait, and turned into one review request, exactly once, whichever
comes first: the comment, a skip, a command, or the end of the wait."""
from __future__ import annotations

from datetime import datetime

from bridge.store.driver import Duplicate
from bridge.store.helpdesk_queue import HelpdeskQueue
from bridge.store.models import Conversation, utcnow
from bridge.store.queries import SELECT_CONVERSATION

_RATE = ("UPDATE conversations SET rating = ?, rated_at = ?, prompt = ? "
         "WHERE id = ? AND prompt = 'rating' RETURNING id")
# The waiting ends once: the first of these to move the prompt on queues the review.
_STOP_WAITING = ("UPDATE conversations SET prompt = NULL "
                 "WHERE id = ? AND prompt = 'comment' RETURNING rating")
_WAITED_OUT = (f"{SELECT_CONVERSATION} WHERE prompt = 'comment' AND rated_at <= ? "
               "ORDER BY rated_at LIMIT ?")


class RatingRows(HelpdeskQueue):
    async def rate(self, conversation: Conversation, rating: int, review_now: bool) -> bool:
        """Record the customer's rating: from now on it waits for its comment, or
        (review_now) its review is queued in the same transaction, without a comment.
        False: the conversation was not waiting for a rating (a second press)."""
        async with self._transaction() as transaction:
            rated = await transaction.row(_RATE, rating, self._db.from_time(utcnow()),
                                          None if review_now else "comment", conversation.id)
            if rated is None:
                return False
            if review_now:
                await self._insert(transaction.row, conversation.customer_id, conversation.id,
                                   "review", {"rating": str(rating)}, None)
            return True

    async def send_review(self, conversation: Conversation, comment: str | None,
                          dedupe_key: str | None = None) -> bool:
        """The rating that waits for its comment is queued as the review, with `comment`
        (None: alone), and waits no more, in one transaction. False: it was no longer
        waiting (sent already), or dedupe_key is taken (the text was a message seen
        before, not a comment)."""
        try:
            async with self._transaction() as transaction:
                stopped = await transaction.row(_STOP_WAITING, conversation.id)
                if stopped is None:
                    return False
                body = {"rating": str(stopped[0])}
                if comment:
                    body["review"] = comment
                await self._insert(transaction.row, conversation.customer_id, conversation.id,
                                   "review", body, dedupe_key)
                return True
        except Duplicate:
            return False

    async def waited_out_ratings(self, rated_before: datetime,
                                 limit: int = 500) -> list[Conversation]:
        """Conversations whose rating still waits for a comment, rated before then."""
        return [self._conversation(found) for found in await self._db.read_all(
            _WAITED_OUT, self._db.from_time(rated_before), limit)]
