"""The Telegram adapter: python-telegram-bot's Bot, inside the bridge's event loop.

Updates come from our own long-polling loop or webhook (receiving.py), which confirm one
to Telegram only once `dispatch` has had the core store it. Embedded in a company's own
Application (embed.py), the same dispatch runs from a PTB handler instead. Sending is
`deliver`, paced per chat and for the whole bot.
"""
from __future__ import annotations

import logging

from aiohttp import web
from aiolimiter import AsyncLimiter
from cachetools import LRUCache
from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ChatType, MessageEntityType
from telegram.error import BadRequest, Forbidden, InvalidToken, RetryAfter, TelegramError
from telegram.ext import AIORateLimiter, ExtBot

from adapters.telegram import groups, inbound
from adapters.telegram.entities import messages
from adapters.telegram.files import FILES_PATH, fetch_customer_file
from adapters.telegram.groups import GROUP_PACE, Place
from adapters.telegram.receiving import UpdateReceiver, retry_after
from adapters.telegram.settings import TelegramSettings
from adapters.telegram.topics import Topics
from adapters.telegram.typing_indicator import TypingIndicator
from bridge.adapter import Adapter, DeliveryError, EditTargetGone, Sink, Unstorable
from bridge.events import COMMANDS, ButtonPress, ChatUser, Command, Outgoing
from bridge.fair_share import FairShare
from bridge.http import HttpServer
from bridge.markdown import BOLD, Document, Span
from bridge.pacing import Pacer

log = logging.getLogger(__name__)

COMMAND_DESCRIPTIONS = {  # one for each of bridge.events.COMMANDS
    "start": "Start talking to support",
    "new": "Start a new conversation",
    "conversations": "Your open conversations",
    "close": "Close the current conversation",
    "call": "Start a voice call",
    "help": "How this works",
}
REMEMBERED = 10_000  # recent update ids kept, to skip a repeat
CHAT_BURST = 3  # messages; then one a second per chat
CHAT_EVERY = 1.1  # seconds: one a second, with room for the jitter of the way there
BOT_RATE = 28   # messages a second for the whole bot (Telegram: about 30)
UPDATE_ATTEMPTS = 3  # an update the core calls Unstorable this often is skipped


class SharedRateLimiter(AIORateLimiter):
    """python-telegram-bot's limiter, whose bot-wide rate can change while it runs: with
    several daemons, each sends at the share of Telegram's ~30/s that its customers are."""

    def set_overall_rate(self, rate: float) -> None:
        # A new bucket at the new rate (AIORateLimiter keeps it as _base_limiter, and reads
        # it on every request); at least one a second, so that nobody waits for ever.
        self._base_limiter = AsyncLimiter(max(1.0, rate), 1)


class TelegramAdapter(Adapter):
    name = "telegram"
    Settings = TelegramSettings

    def __init__(self, settings: TelegramSettings, *, bot: ExtBot | None = None,
                 **_options) -> None:
        self.settings = settings
        self.bot = bot or ExtBot(
            settings.token.get_secret_value(), base_url=f"{settings.api_url}/bot",
            base_file_url=f"{settings.api_url}/file/bot",
            # Telegram's ~30 messages/s per bot, with a little room so that requests
            # bunched up on the way (jitter) don't make a second of 31. max_retries=0: a
            # 429 comes back to the core, which waits its retry_after with the message
            # still queued.
            rate_limiter=SharedRateLimiter(overall_max_rate=BOT_RATE, max_retries=0))
        self._owns_bot = bot is None
        self._sink: Sink | None = None
        self._receiver = UpdateReceiver(self.bot, settings, self.dispatch)
        self._recent_updates: LRUCache[int, None] = LRUCache(REMEMBERED)
        self._failures: dict[int, int] = {}  # update_id -> Unstorable so far; gone once handled
        # The bot's ~30/s and each chat's pace, shared fairly between chats; PTB's limiter
        # stays behind it for every other call (edits, files, button answers).
        self._fair_share = FairShare(BOT_RATE, chat_burst=CHAT_BURST, chat_every=CHAT_EVERY)
        self._typing = TypingIndicator(self.bot, crowded=lambda: self._fair_share.crowded())
        self._topics = Topics(self.bot)
        self._group_pace = Pacer(*GROUP_PACE)
        self._http: HttpServer | None = None
        self.account = ""

    # --- running -----------------------------------------------------------------

    def threads_for(self, user: ChatUser) -> bool:
        """A conversation in its own topic: in a private chat with a bot with topics (unless
        Telegram refuses them there for now), and in a forum group, where the member wrote
        in a topic."""
        place = Place.of(user.chat_id)
        return place.thread is not None or (place.is_bot_chat
                                            and self._topics.usable(place.chat_id))

    def share_limits(self, fraction: float) -> None:
        limiter = self.bot.rate_limiter
        if isinstance(limiter, SharedRateLimiter):
            limiter.set_overall_rate(BOT_RATE * fraction)
        self._fair_share.set_rate(BOT_RATE * fraction)

    @property
    def receives_alone(self) -> bool:
        # getUpdates has one poller per bot; a webhook may land on any daemon
        return self._owns_bot and self.settings.mode == "polling"

    async def start(self, sink: Sink, http: HttpServer | None = None) -> None:
        self._sink = sink
        self._http = http
        if http is not None:
            http.serve_files(FILES_PATH, self._fetch_file)
        await self.bot.initialize()  # idempotent: an embedding app may have done it already
        self.account = str(self.bot.id)
        self._topics.start()
        await self.bot.set_my_commands(
            [BotCommand(name, COMMAND_DESCRIPTIONS[name]) for name in COMMANDS])
        if not self._owns_bot:
            return  # embedded: the company's Application receives updates (embed.py)
        await self._receiver.start(http)
        log.info("telegram: receiving by %s as bot %s%s", self.settings.mode, self.account,
                 ", a topic per conversation" if self._topics.enabled else "")

    async def check(self) -> tuple[bool, str]:
        try:
            async with self.bot:  # initialize() asks getMe
                return True, f"telegram accepted the bot token (@{self.bot.username})"
        except (InvalidToken, Forbidden):
            return False, "telegram refused the bot token"
        except TelegramError as error:
            return False, f"telegram: {error}"

    async def stop(self) -> None:
        self._typing.stop_all()
        await self._receiver.stop()
        if self._owns_bot:
            await self.bot.shutdown()

    # --- inbound -----------------------------------------------------------------

    def _remember(self, update_id: int) -> None:
        """A repeated update_id (a webhook retried, a poll replayed) is ignored, once it
        was handled: one that failed must be taken when Telegram brings it again."""
        self._recent_updates[update_id] = None

    async def dispatch(self, update: Update) -> None:
        """Hand one update to the core; returns once it is stored (raises if it was not).

        An update the core calls Unstorable UPDATE_ATTEMPTS times is logged and skipped:
        Telegram would bring it back forever (the next getUpdates, every webhook retry),
        holding up that chat. A customer whose message it was is told to send it again.
        Any other failure (the database away) is retried for as long as it lasts."""
        if update.update_id in self._recent_updates:
            return
        try:
            await self._handle(update)
        except Unstorable:
            failures = self._failures[update.update_id] = self._failures.get(
                update.update_id, 0) + 1
            if failures < UPDATE_ATTEMPTS:
                raise
            log.exception("telegram: update %s could not be stored in %d tries; skipped",
                          update.update_id, failures)
            await self._say_not_received(update)
        self._failures.pop(update.update_id, None)
        self._remember(update.update_id)

    async def _say_not_received(self, update: Update) -> None:
        message = inbound.written(update)
        if message is None or message.chat.type != ChatType.PRIVATE:
            return
        await self._tell(message, "not_received")

    async def _tell(self, message: Message, key: str, **values) -> None:
        """A word from the bridge itself ([texts] key), outside any conversation, in the
        chat of the customer's message; not retried."""
        text = self.texts.get(key, _language(message.from_user), **values)
        try:
            await self.bot.send_message(message.chat.id, text,
                                        business_connection_id=message.business_connection_id)
        except TelegramError as error:
            log.warning("telegram: could not tell a customer %s: %s", key, error)

    async def _handle(self, update: Update) -> None:
        if update.callback_query is not None:
            await self._on_press(update)
            return
        if update.business_connection is not None or update.deleted_business_messages:
            _log_business(update)
            return
        message = inbound.written(update)
        if message is None:
            return
        if message.chat.type != ChatType.PRIVATE:
            await self._on_group_message(update)
        else:
            await self._on_private_message(update, message)

    async def _on_private_message(self, update: Update, message: Message) -> None:
        """A customer's message in their chat with the bot, or with a business account
        connected to it; in its topic, for a bot with a topic per conversation."""
        if message.from_user is None or message.chat.id != message.from_user.id:
            # In a business account's chat, the company's own words (its people, or this
            # bot) are not the customer's.
            if message.business_connection_id is None:
                log.warning("telegram: a private-chat message not from that chat's user "
                            "ignored")
            return
        command = _command(update)
        thread = self._topics.thread_of(message)
        if command == "new" and self._topics.enabled:  # a new conversation: a new topic
            thread = await self._topics.open(
                message.chat.id, self.texts.get("new_topic", _language(message.from_user)),
                unnamed=True)
        if command is not None:
            event = inbound.command_event(self.account, update, command, thread)
        else:
            event = inbound.message_event(self.account, update, self._file_url, thread)
        if event is not None:
            await self._sink(event)
        if command is None:
            await self._topics.name_if_new(message.chat.id, thread, message.text or "")
        if not inbound.is_edit(update):
            await self._say_what_could_not_go(message)

    async def _say_what_could_not_go(self, message) -> None:
        """A file too large to fetch, or a kind of message the helpdesk cannot take: the
        customer is told, once the rest (a caption) is stored."""
        kind = inbound.unsendable(message)
        sent = inbound.file_of(message)
        if kind is not None:
            await self._tell(message, "cannot_send", kind=kind)
        elif sent is not None and inbound.too_large(sent):
            await self._tell(message, "file_too_large", limit="20 MB")

    def _file_url(self, file_id: str) -> str | None:
        if self._http is None:
            return None
        return self._http.file_link(FILES_PATH, file_id)

    async def _fetch_file(self, request: web.Request, file_id: str) -> web.StreamResponse:
        return await fetch_customer_file(self.bot, request, file_id)

    async def _on_press(self, update: Update) -> None:
        query = update.callback_query
        alert = None
        try:
            event = inbound.press_event(self.account, update)
            prompt = query.message
            if event is None or prompt is None:
                return
            chat = prompt.chat
            if chat.type == ChatType.PRIVATE:
                # In a private chat the chat's id is its user's: a press on a message in
                # someone else's chat is forged.
                if chat.id == query.from_user.id:
                    await self._sink(event)
            elif self.settings.groups == "conversations" and groups.is_group(prompt):
                opener = groups.opener_of(prompt)
                if opener is not None and opener != query.from_user.id:
                    # nothing is sent
                    alert = self.texts.get("only_opener", _language(query.from_user))
                    return
                await self._sink(ButtonPress(groups.member(self.account, prompt,
                                                           query.from_user), event.action))
        finally:
            # Every callback query is answered, or the button spins on the customer's screen.
            try:
                await query.answer(alert, show_alert=alert is not None)
            except TelegramError as error:
                log.info("telegram: answerCallbackQuery failed: %s", error)

    async def _on_group_message(self, update: Update) -> None:
        """A group is a support channel (groups = "conversations"): a member who mentions
        the bot or replies to it talks to the helpdesk, and other chatter is not read.
        Otherwise a mention is answered with a note to write in private."""
        message = update.message
        if message is None or message.from_user is None or message.from_user.is_bot \
                or not groups.is_group(message) \
                or not groups.addressed(message, self.bot.id, self.bot.username):
            return
        if self.settings.groups != "conversations":
            await message.reply_text(self.texts.get("write_in_private",
                                                    _language(message.from_user)))
            return
        member = groups.member(self.account, message, message.from_user)
        topic = groups.forum_topic(message)  # a forum's topic: a conversation of its own
        thread = str(topic) if topic is not None else None
        command = _command(update)
        if command is not None:
            event = Command(member, command, thread)
        else:
            event = inbound.message_event(self.account, update, self._file_url, thread,
                                          user=member, bot_username=self.bot.username)
        if event is not None:
            await self._sink(event)

    # --- delivery ----------------------------------------------------------------

    async def awaiting_reply(self, user: ChatUser) -> None:
        place = Place.of(user.chat_id)
        if place.business is None:  # there, "typing…" would show in the bot's own chat
            self._typing.start(place.chat_id)

    async def deliver(self, user: ChatUser, message: Outgoing) -> str | None:
        place = Place.of(user.chat_id)
        self._typing.stop(place.chat_id)
        if message.thread_title is not None and not message.thread_title.strip():
            # a topic to open, with no words to name it by
            message.thread_title = self.texts.get("new_topic", user.language)
        try:
            return await self._deliver(place, message)
        except RetryAfter as error:
            raise DeliveryError("telegram: flood control (429)",
                                retry_after=retry_after(error)) from None
        except Forbidden as error:
            raise DeliveryError(f"telegram: {error.message}", permanent=True) from None
        except BadRequest as error:
            raise DeliveryError(f"telegram: {error.message}", rejected=True) from None
        except TelegramError as error:  # NetworkError, TimedOut, 5xx: try again later
            raise DeliveryError(f"telegram: {error}") from None

    async def _deliver(self, place: Place, message: Outgoing) -> str | None:
        ref = await (self._edit(place, message) if message.kind == "edit"
                     else self._send(place, message))
        if message.final and message.thread is not None:
            await self._topics.close(place.chat_id, message.thread)
        return ref

    async def _edit(self, place: Place, message: Outgoing) -> str | None:
        # An edit is one message: the first piece, should the text be long.
        pieces = messages(message.document) if message.text else []
        try:
            if not pieces:  # only take the buttons away
                await self.bot.edit_message_reply_markup(
                    chat_id=place.chat_id, message_id=int(message.edit_ref), reply_markup=None,
                    **place.editing())
            else:
                text, entities = pieces[0]
                await self.bot.edit_message_text(
                    chat_id=place.chat_id, message_id=int(message.edit_ref), text=text,
                    entities=entities, **place.editing())
        except BadRequest as error:
            if "not found" in error.message.lower():
                raise EditTargetGone() from None
            if "not modified" not in error.message.lower():
                raise
        return message.edit_ref

    async def _send(self, place: Place, message: Outgoing) -> str | None:
        if message.thread is None and message.thread_title is not None and place.is_bot_chat:
            # a conversation not in a topic yet (none, where Telegram refuses one)
            message.thread = await self._topics.open(place.chat_id, message.thread_title)
        sent = None
        if message.kind == "reply" and message.attachments:
            sent = await self._send_attachments(place, message)
        if message.text or sent is None:
            sent = await self._send_text(place, message, _document_of(message))
        return sent

    async def _post(self, place: Place, message: Outgoing, send, *args, **kwargs):
        """send(chat, *args): in the conversation's topic, or the group topic where the
        member wrote, as an answer to that member's message."""
        thread = message.thread or (str(place.thread) if place.thread else None)
        return await self._topics.send(place.chat_id, thread, send, place.chat_id, *args,
                                       **place.sending(thread), **kwargs)

    async def _send_text(self, place: Place, message: Outgoing,
                         document: Document) -> str | None:
        pieces = messages(document)  # none: nothing to show (a reply of blank lines)
        keyboard = _keyboard(message)
        last = None
        for index, (text, entities) in enumerate(pieces):
            markup = keyboard if index == len(pieces) - 1 else None
            if place.in_group:
                await self._group_pace.wait(place.chat_id)
            await self._fair_share.turn(str(place.chat_id), message.busy)
            try:
                last = await self._post(place, message, self.bot.send_message, text,
                                        entities=entities, reply_markup=markup)
            except BadRequest as error:
                if "entities" not in error.message:
                    raise
                # Telegram refused the formatting: the words matter more than their look.
                log.warning("telegram refused a message's formatting (%s); sent it plain",
                            error.message)
                last = await self._post(place, message, self.bot.send_message, text,
                                        reply_markup=markup)
        return str(last.message_id) if last is not None else None

    async def _send_attachments(self, place: Place, message: Outgoing) -> str | None:
        """Agent attachments: each by the method that fits its type (Telegram fetches it),
        or as a link when Telegram can't. The reference of the last one sent."""
        sent = None
        for item in message.attachments:
            try:
                sent = await self._post(place, message, self._sender_for(item.mime_type),
                                        item.url, caption=item.name)
            except BadRequest:
                sent = await self._post(place, message, self.bot.send_message,
                                        f"{item.name}: {item.url}")
        return str(sent.message_id) if sent is not None else None

    def _sender_for(self, mime_type: str):
        """The Bot API method an agent's file goes by: a photo, a video, a voice note
        (Telegram plays OGG/Opus as one), other audio, or else a document."""
        if mime_type.startswith("image/") and mime_type != "image/gif":
            return self.bot.send_photo
        if mime_type.startswith("video/"):
            return self.bot.send_video
        if mime_type in ("audio/ogg", "audio/opus"):
            return self.bot.send_voice
        if mime_type.startswith("audio/"):
            return self.bot.send_audio
        return self.bot.send_document


def _language(user) -> str | None:
    return user.language_code if user is not None else None


def _log_business(update: Update) -> None:
    """A company connected or disconnected its Telegram Business account, or a customer
    deleted messages there: the helpdesk has no use for a deletion, so it is only logged."""
    connection = update.business_connection
    if connection is not None:
        log.info("telegram: business connection %s %s (may reply: %s)", connection.id,
                 "enabled" if connection.is_enabled else "disabled",
                 bool(connection.rights and connection.rights.can_reply))
        return
    deleted = update.deleted_business_messages
    log.info("telegram: %d message(s) deleted in a business chat; nothing for the helpdesk",
             len(deleted.message_ids))


def _command(update: Update) -> str | None:
    """"new" for "/new@support_bot and more"; None for anything else."""
    message = update.message or update.business_message
    if message is None or not message.text or not message.entities:
        return None
    first = message.entities[0]
    if first.type != MessageEntityType.BOT_COMMAND or first.offset != 0:
        return None
    name = message.text[1:first.length].split("@")[0].lower()
    if name not in COMMANDS:
        return None
    return name


def _document_of(message: Outgoing) -> Document:
    """The message's text, after its conversation's label (unless it is shown in that
    conversation's topic) and, for a reply, its sender."""
    label = message.conversation_label if message.thread is None else None
    prefix = (Span(f"[{label}] "),) if label else ()
    if message.kind == "reply" and message.text:
        prefix += (Span(f"{message.sender_name}:", frozenset({BOLD})), Span(" "))
    return message.document.with_prefix(prefix)


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
