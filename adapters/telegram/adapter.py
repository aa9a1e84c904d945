"""The Telegram adapter: python-telegram-bot's Application inside the bridge's event loop."""
from __future__ import annotations

import logging
import warnings
from datetime import timedelta

from telegram import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from telegram.constants import ChatType, ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from adapters.telegram import inbound
from adapters.telegram.markup import LIMIT, split, to_html
from adapters.telegram.settings import TelegramSettings
from bridge.adapter import Adapter, DeliveryError, Sink
from bridge.events import ChatUser, Outgoing

log = logging.getLogger(__name__)

COMMAND_DESCRIPTIONS = {
    "start": "Start talking to support",
    "new": "Start a new conversation",
    "conversations": "Your open conversations",
    "close": "Close the current conversation",
    "call": "Start a voice call",
    "help": "How this works",
}
GROUP_NOTE = "Please write to me in a private chat, so your conversation stays private."


class TelegramAdapter(Adapter):
    name = "telegram"
    Settings = TelegramSettings

    def __init__(self, settings: TelegramSettings, **_options) -> None:
        self.settings = settings
        self.application: Application | None = None
        self._sink: Sink | None = None
        self.account = ""

    # --- running -----------------------------------------------------------------

    async def start(self, sink: Sink) -> None:
        self._sink = sink
        api = self.settings.api_url
        self.application = (
            Application.builder()
            .token(self.settings.token.get_secret_value())
            .base_url(f"{api}/bot")
            .base_file_url(f"{api}/file/bot")
            # Telegram's ~30 messages/s per bot. max_retries=0: a 429 comes back to the
            # core, which waits the retry_after and keeps the message queued meanwhile.
            .rate_limiter(AIORateLimiter(max_retries=0))
            .build())
        self._add_handlers(self.application)
        await self.application.initialize()
        self.account = str(self.application.bot.id)
        await self.application.bot.set_my_commands(
            [BotCommand(name, text) for name, text in COMMAND_DESCRIPTIONS.items()])
        await self.application.start()
        await self.application.updater.start_polling(
            timeout=self.settings.poll_timeout, poll_interval=0,
            allowed_updates=["message", "edited_message", "callback_query"])
        log.info("telegram: polling as bot %s", self.account)

    async def stop(self) -> None:
        if self.application is None:
            return
        if self.application.updater and self.application.updater.running:
            await self.application.updater.stop()
        if self.application.running:
            await self.application.stop()
        await self.application.shutdown()

    def _add_handlers(self, application: Application) -> None:
        private = filters.ChatType.PRIVATE
        for name in inbound.COMMANDS:
            application.add_handler(CommandHandler(name, self._on_command, filters=private))
        application.add_handler(MessageHandler(
            private & ~filters.COMMAND & (filters.TEXT | filters.PHOTO | filters.Document.ALL),
            self._on_message))
        application.add_handler(CallbackQueryHandler(self._on_press))
        application.add_handler(MessageHandler(
            filters.ChatType.GROUPS & filters.Entity("mention"), self._on_group_mention))

    # --- inbound -----------------------------------------------------------------

    async def _on_message(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        event = inbound.message_event(self.account, update)
        if event is not None:
            await self._sink(event)

    async def _on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        name = update.message.text.split()[0].lstrip("/").split("@")[0]
        event = inbound.command_event(self.account, update, name, " ".join(context.args or []))
        if event is not None:
            await self._sink(event)

    async def _on_press(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        event = inbound.press_event(self.account, update)
        try:
            if event is not None and update.callback_query.message.chat.type == ChatType.PRIVATE:
                await self._sink(event)
        finally:
            # Every callback query is answered, or the button spins on the customer's screen.
            await update.callback_query.answer()

    async def _on_group_mention(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        username = self.application.bot.username
        if update.message and username and f"@{username}" in (update.message.text or ""):
            await update.message.reply_text(GROUP_NOTE)

    # --- delivery ----------------------------------------------------------------

    async def deliver(self, user: ChatUser, message: Outgoing) -> str | None:
        try:
            return await self._deliver(int(user.chat_id), message)
        except RetryAfter as error:
            raise DeliveryError("telegram: flood control (429)",
                                retry_after=_retry_after(error)) from None
        except Forbidden as error:
            raise DeliveryError(f"telegram: {error.message}", permanent=True) from None
        except BadRequest as error:
            raise DeliveryError(f"telegram: {error.message}", rejected=True) from None
        except (NetworkError, TelegramError) as error:  # timeouts, 5xx: try again later
            raise DeliveryError(f"telegram: {error}") from None

    async def _deliver(self, chat_id: int, message: Outgoing) -> str | None:
        bot = self.application.bot
        if message.kind == "edit" and message.edit_ref:
            try:
                edited = await bot.edit_message_text(
                    chat_id=chat_id, message_id=int(message.edit_ref),
                    text=to_html(message.text), parse_mode=ParseMode.HTML)
                return str(edited.message_id) if hasattr(edited, "message_id") else message.edit_ref
            except BadRequest as error:
                if "not modified" in error.message.lower():
                    return message.edit_ref
                if "not found" not in error.message.lower():
                    raise
                # the prompt is gone (deleted by the user): say it as a new message
        if message.kind == "reply" and message.attachment:
            sent = await self._send_attachment(chat_id, message)
            if sent is not None and not message.text:
                return sent
        return await self._send_text(chat_id, _text_of(message), _keyboard(message))

    async def _send_text(self, chat_id: int, text: str,
                         keyboard: InlineKeyboardMarkup | None) -> str:
        bot = self.application.bot
        chunks = split(text)
        last = None
        for index, chunk in enumerate(chunks):
            markup = keyboard if index == len(chunks) - 1 else None
            formatted = to_html(chunk)
            try:
                if len(formatted) > LIMIT:
                    raise BadRequest("too long after formatting")
                last = await bot.send_message(chat_id, formatted, parse_mode=ParseMode.HTML,
                                              reply_markup=markup)
            except BadRequest as error:
                if "parse entities" not in error.message and "too long" not in error.message:
                    raise
                # Telegram refused our HTML: the words matter more than the formatting.
                for piece in split(chunk, LIMIT):
                    last = await bot.send_message(chat_id, piece, reply_markup=markup)
        return str(last.message_id)

    async def _send_attachment(self, chat_id: int, message: Outgoing) -> str | None:
        """Agent attachments: as a photo or document; a link if Telegram can't fetch it."""
        for item in _attachments(message.attachment):
            url, name = item["url"], item.get("name") or "file"
            try:
                if item.get("mime_type", "").startswith("image/"):
                    sent = await self.application.bot.send_photo(chat_id, url, caption=name)
                else:
                    sent = await self.application.bot.send_document(chat_id, url, caption=name)
            except BadRequest:
                sent = await self.application.bot.send_message(chat_id, f"{name}: {url}")
            return str(sent.message_id)
        return None


def _retry_after(error: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 warns that the type will become timedelta
        warnings.simplefilter("ignore")
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _text_of(message: Outgoing) -> str:
    label = f"[{message.conversation_label}] " if message.conversation_label else ""
    if message.kind == "reply":
        return f"{label}**{message.sender_name}:** {message.text}" if message.text else label
    return f"{label}{message.text}"


def _keyboard(message: Outgoing) -> InlineKeyboardMarkup | None:
    if message.kind == "call_invite" and message.url:
        return InlineKeyboardMarkup([[InlineKeyboardButton(message.url_label or "Join",
                                                           url=message.url)]])
    if not message.buttons:
        return None
    buttons = [InlineKeyboardButton(b.label, callback_data=b.action) for b in message.buttons]
    # Two choices side by side, a 1-5 rating on one row, a list of conversations stacked.
    rows = [buttons] if len(buttons) <= 5 and message.prompt != "conversations" \
        else [[b] for b in buttons]
    return InlineKeyboardMarkup(rows)


def _attachments(metadata) -> list[dict]:
    items = metadata if isinstance(metadata, list) else [metadata]
    found = []
    for item in items:
        if isinstance(item, dict):
            url = item.get("url") or item.get("file_url") or item.get("link")
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                found.append({"url": url, "name": item.get("name") or item.get("file_name"),
                              "mime_type": item.get("mime_type") or item.get("type") or ""})
    return found
