"""The "typing…" indicator while a customer waits for an answer."""
from __future__ import annotations

import asyncio
from typing import Callable

from telegram.constants import ChatAction
from telegram.error import TelegramError
from telegram.ext import ExtBot

TYPING_AFTER = 1.0  # an answer quicker than this needs no "typing…" (it would be a wasted call)
TYPING_EVERY = 4.0
TYPING_CAP = 60.0


class TypingIndicator:
    def __init__(self, bot: ExtBot, crowded: Callable[[], bool] = lambda: False) -> None:
        """crowded: True while messages wait for the bot's budget (a courtesy must not take
        a turn from them)."""
        self._bot = bot
        self._crowded = crowded
        self._typing: dict[int, asyncio.Task] = {}

    def start(self, chat_id: int) -> None:
        self.stop(chat_id)
        self._typing[chat_id] = asyncio.create_task(self._type(chat_id))

    def stop(self, chat_id: int) -> None:
        task = self._typing.pop(chat_id, None)
        if task is not None:
            task.cancel()

    def stop_all(self) -> None:
        for chat_id in list(self._typing):
            self.stop(chat_id)

    async def _type(self, chat_id: int) -> None:
        """"typing…" lasts 5 s in Telegram: renew it every 4 s, for TYPING_CAP s at most.
        Shown only once the answer is late: a delivery cancels this task, and a typing call
        for every message cost as much as the message itself under load."""
        await asyncio.sleep(TYPING_AFTER)
        for _ in range(int(TYPING_CAP / TYPING_EVERY)):
            if self._crowded():
                await asyncio.sleep(TYPING_EVERY)
                continue
            try:
                await self._bot.send_chat_action(chat_id, ChatAction.TYPING)
            except TelegramError:
                return  # a courtesy; never worth a retry
            await asyncio.sleep(TYPING_EVERY)
