"""Adding the bridge to a bot that already exists.

    application = Application.builder().token(TOKEN).build()
    application.add_handler(CommandHandler("hello", hello))      # the company's own
    adapter = install(application, settings, entry_command="support")
    async with Bridge(bridge_settings, adapters=[adapter]):
        ...run the application as usual...

A chat enters support mode with /support; from then on its updates go to the helpdesk and
the bot's own handlers do not see them. /done, or the end of the conversation (after the
rating), leaves support mode. Everyone else keeps talking to the bot as before. The
bridge's buttons reach the bridge in any mode, so they keep working after a restart.
"""
from __future__ import annotations

from telegram import Update
from telegram.constants import ChatType
from telegram.ext import Application, ApplicationHandlerStop, ContextTypes, TypeHandler

from adapters.telegram.adapter import TelegramAdapter
from adapters.telegram.settings import TelegramSettings
from bridge.events import ChatUser, Command, Outgoing
from bridge.support_mode import SupportMode

BRIDGE_BUTTONS = ("close:", "rate:", "comment:", "switch:")
LEFT_SUPPORT = "You left support. Write /{command} to talk to us again."


class EmbeddedTelegramAdapter(TelegramAdapter):
    """The Telegram adapter on a company's own Application: it sends with their bot and
    receives through a handler that runs before theirs (group -1)."""

    def __init__(self, application: Application, settings: TelegramSettings,
                 entry_command: str) -> None:
        super().__init__(settings, bot=application.bot)
        self.entry_command = entry_command
        self.support_mode: SupportMode | None = None  # set by the Bridge
        application.add_handler(TypeHandler(Update, self._route), group=-1)

    def use_support_mode(self, support_mode: SupportMode) -> None:
        self.support_mode = support_mode

    async def _route(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = update.effective_chat
        if chat is None or chat.type != ChatType.PRIVATE:
            return  # groups: the company's bot decides
        query = update.callback_query
        if query is not None and (query.data or "").startswith(BRIDGE_BUTTONS):
            await self.dispatch(update)
            raise ApplicationHandlerStop
        text = (update.message.text or "") if update.message else ""
        command = text.split()[0].split("@")[0].lstrip("/") if text.startswith("/") else None
        user = update.effective_user
        if user is None:
            return
        if command == self.entry_command:
            await self.support_mode.enter("telegram", self.account, str(user.id))
            await self._sink(Command(ChatUser("telegram", self.account, str(user.id),
                                              str(chat.id), user.language_code), "start"))
            raise ApplicationHandlerStop
        if not await self.support_mode.holds("telegram", self.account, str(user.id)):
            return  # not in support mode: the bot's own handlers take it
        if command == "done":
            await self.support_mode.leave("telegram", self.account, str(user.id))
            await update.message.reply_text(LEFT_SUPPORT.format(command=self.entry_command))
            raise ApplicationHandlerStop
        await self.dispatch(update)
        raise ApplicationHandlerStop

    async def deliver(self, user: ChatUser, message: Outgoing) -> str | None:
        if message.final:
            # left before the customer can see the last word: what they write once they
            # have seen it goes to the company's bot, never to the ended conversation
            await self.support_mode.leave("telegram", self.account, user.user_id)
        return await super().deliver(user, message)


def install(application: Application, settings: TelegramSettings,
            entry_command: str = "support") -> TelegramAdapter:
    """Hook the bridge into an existing Application; pass the result to Bridge(adapters=)."""
    return EmbeddedTelegramAdapter(application, settings, entry_command)
