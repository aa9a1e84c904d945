"""One getUpdates batch, handled chat by chat at the same time.

A batch holds up to 100 updates from many customers. Handled one after another, each
waits for the one before it to be stored, and under load the batch's last customer waited
for all the others (seconds at 200 messages/s). Each chat's updates keep their order; the
chats don't wait for each other, as with Telegram's webhooks, which are sent concurrently.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Sequence

from telegram import Update

log = logging.getLogger(__name__)


async def dispatch_batch(updates: Sequence[Update],
                         dispatch: Callable[[Update], Awaitable[None]]) -> tuple[int | None, bool]:
    """Dispatch every chat's updates in order, chats concurrently. Returns the last
    update_id that may be confirmed to Telegram (every update up to it was stored; None:
    not even the first) and whether any update failed. A chat stops at its first failure:
    its later updates must not overtake it. Updates stored after an earlier failure are
    brought again by the next getUpdates and skipped then as repeats (dispatch remembers
    what it handled)."""
    by_chat: dict[object, list[Update]] = {}
    for update in updates:
        by_chat.setdefault(_chat_of(update), []).append(update)
    failed: list[int] = []

    async def in_order(chat_updates: list[Update]) -> None:
        for update in chat_updates:
            try:
                await dispatch(update)
            except Exception:
                # Not stored: not confirmed, so the next getUpdates brings it again.
                log.exception("telegram: update %s not stored; retrying", update.update_id)
                failed.append(update.update_id)
                return

    await asyncio.gather(*(in_order(chat_updates) for chat_updates in by_chat.values()))
    if not failed:
        return (updates[-1].update_id if updates else None), False
    first_failure = min(failed)
    stored = [u.update_id for u in updates if u.update_id < first_failure]
    return (stored[-1] if stored else None), True


def _chat_of(update: Update) -> object:
    chat = update.effective_chat
    if chat is not None:
        return chat.id
    return ("update", update.update_id)  # no chat: nothing to keep in order with
