"""A topic per conversation, for a bot with topics in private chats (`has_topics_enabled`
in getMe, Bot API 9.3): each helpdesk conversation is shown in its own topic, named after
its first words. Topics were unreliable while Telegram rolled them out (telegram-bot-api
#847: "message thread not found", BOT_FORUM_CREATE_FORBIDDEN), so whatever Telegram
refuses here falls back to the plain chat: a message is never lost to a topic.
"""
from __future__ import annotations

import logging
from typing import Awaitable, Callable, TypeVar

from cachetools import LRUCache, TTLCache
from telegram.error import BadRequest, TelegramError
from telegram.ext import ExtBot

log = logging.getLogger(__name__)

NAME_LENGTH = 128  # Telegram's limit for a topic's name
REFUSED_FOR = 600.0  # seconds a chat whose topics Telegram refused is served without them
T = TypeVar("T")


def topic_name(words: str) -> str:
    """A topic's name from a conversation's first words (not blank): its first line,
    shortened."""
    line = next((line.strip() for line in words.splitlines() if line.strip()), "")
    if len(line) > NAME_LENGTH:
        line = line[:NAME_LENGTH - 1].rstrip() + "…"
    return line


def thread_not_found(error: BadRequest) -> bool:
    return "thread not found" in error.message.lower()


class Topics:
    def __init__(self, bot: ExtBot) -> None:
        self._bot = bot
        self.enabled = False
        self._refused: TTLCache[int, None] = TTLCache(10_000, REFUSED_FOR)  # chat ids
        # Topics opened by /new, named when their first message comes (in this process:
        # after a restart such a topic keeps the name it was opened with).
        self._unnamed: LRUCache[tuple[int, int], None] = LRUCache(10_000)

    def start(self) -> None:
        """After the bot's getMe: are topics on in its private chats?"""
        self.enabled = bool(getattr(self._bot.bot, "has_topics_enabled", False))

    def thread_of(self, message) -> str | None:
        """The conversation thread a customer's private message was written in."""
        if not self.enabled or not message.is_topic_message or not message.message_thread_id:
            return None
        return str(message.message_thread_id)

    def usable(self, chat_id: int) -> bool:
        """Topics are on, and Telegram has not lately refused them in this chat."""
        return self.enabled and chat_id not in self._refused

    async def open(self, chat_id: int, words: str, unnamed: bool = False) -> str | None:
        """A new topic for a conversation; None (the plain chat) when Telegram refuses."""
        if not self.usable(chat_id):
            return None
        try:
            topic = await self._bot.create_forum_topic(chat_id, topic_name(words))
        except BadRequest as error:
            log.warning("telegram refused a topic (%s); this chat goes without topics for "
                        "%.0f minutes", error.message, REFUSED_FOR / 60)
            self._refused[chat_id] = None
            return None
        if unnamed:
            self._unnamed[(chat_id, topic.message_thread_id)] = None
        return str(topic.message_thread_id)

    async def name_if_new(self, chat_id: int, thread: str | None, words: str) -> None:
        """A topic opened by /new is named after the first message written in it."""
        key = (chat_id, int(thread)) if thread else None
        if key is None or key not in self._unnamed or not words.strip():
            return
        del self._unnamed[key]
        try:
            await self._bot.edit_forum_topic(chat_id, int(thread), name=topic_name(words))
        except TelegramError as error:
            log.info("telegram: a topic could not be renamed: %s", error)

    async def close(self, chat_id: int, thread: str) -> None:
        """A closed conversation's topic is closed too, where Telegram allows it."""
        try:
            await self._bot.close_forum_topic(chat_id, int(thread))
        except TelegramError as error:
            log.info("telegram: a topic could not be closed: %s", error)

    async def send(self, chat_id: int, thread: str | None,
                   send: Callable[..., Awaitable[T]], *args, **kwargs) -> T:
        """send(..., message_thread_id=thread); should Telegram not find that topic, the
        same message in the plain chat."""
        if thread is None or chat_id in self._refused:
            return await send(*args, **kwargs)
        try:
            return await send(*args, message_thread_id=int(thread), **kwargs)
        except BadRequest as error:
            if not thread_not_found(error):
                raise
            log.warning("telegram did not find a conversation's topic; sent to the plain chat")
            self._refused[chat_id] = None
            return await send(*args, **kwargs)
