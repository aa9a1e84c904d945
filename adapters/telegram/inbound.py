"""Telegram updates -> the core's neutral events. Kept apart from sending (as opsdroid does)."""
from __future__ import annotations

from typing import Callable

from telegram import Message, Update
from telegram import User as TelegramUser

from bridge.events import ButtonPress, ChatUser, Command, InboundMessage


def chat_user(account: str, user: TelegramUser, chat_id: int) -> ChatUser:
    return ChatUser("telegram", account, str(user.id), str(chat_id), user.language_code)


def message_event(account: str, update: Update,
                  file_url: Callable[[str], str | None] = lambda _file_id: None
                  ) -> InboundMessage | None:
    """file_url(file_id): a bridge-served link to the file, or None when there is none."""
    message: Message | None = update.message or update.edited_message
    if message is None or message.from_user is None:
        return None
    edited = update.edited_message is not None
    text = message.text or message.caption or ""
    # Message ids are unique per chat; an edit gets its own id so it is relayed, once.
    message_id = f"{message.chat_id}:{message.message_id}"
    if edited:
        message_id += f":edit:{int(message.edit_date.timestamp()) if message.edit_date else 0}"
    attachment = None
    if message.photo or message.document:
        # A Telegram file URL contains the bot token: it must never reach the helpdesk.
        # The helpdesk gets a signed link served by the bridge; without one (no public
        # URL) the core tells the customer that attachments can't be sent.
        if message.document:
            file_id = message.document.file_id
            name = message.document.file_name or "document"
            mime = message.document.mime_type or "application/octet-stream"
        else:
            file_id, name, mime = message.photo[-1].file_id, "photo.jpg", "image/jpeg"
        attachment = {"url": file_url(file_id), "name": name, "mime_type": mime}
    if not text.strip() and attachment is None:  # nothing to say (whitespace only)
        return None
    return InboundMessage(chat_user(account, message.from_user, message.chat_id), text,
                          message_id, attachment=attachment, edited=edited)


def command_event(account: str, update: Update, name: str) -> Command | None:
    message = update.message
    if message is None or message.from_user is None:
        return None
    return Command(chat_user(account, message.from_user, message.chat_id), name)


def press_event(account: str, update: Update) -> ButtonPress | None:
    query = update.callback_query
    if query is None or query.message is None or not query.data:
        return None
    return ButtonPress(chat_user(account, query.from_user, query.message.chat.id), query.data)
