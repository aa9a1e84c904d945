"""Telegram updates -> the core's neutral events. Kept apart from sending (as opsdroid does)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from telegram import Location, Message, Update
from telegram import User as TelegramUser

from adapters.telegram.files import DOWNLOAD_LIMIT
from adapters.telegram.groups import Place, without_mention
from bridge.events import ButtonPress, ChatUser, Command, InboundMessage


def chat_user(account: str, user: TelegramUser, message: Message) -> ChatUser:
    """The customer who wrote (or pressed a button on) a message in a private chat. A chat
    of a company's business account is another customer than the same person's chat with
    the bot (Telegram: "independent from any potential bot chat"), answered through that
    business connection."""
    business = getattr(message, "business_connection_id", None)  # None: inaccessible
    user_id = f"{user.id}@{business}" if business else str(user.id)
    return ChatUser("telegram", account, user_id, str(Place(message.chat.id, business=business)),
                    user.language_code)


def written(update: Update) -> Message | None:
    """The message a customer wrote or edited, to the bot or to a business account."""
    return (update.message or update.edited_message or update.business_message
            or update.edited_business_message)


def is_edit(update: Update) -> bool:
    return update.edited_message is not None or update.edited_business_message is not None


# What a customer may send that the helpdesk cannot take: they are told so (adapter.py).
UNSENDABLE = {"poll": "polls", "dice": "dice", "game": "games", "story": "stories",
              "paid_media": "paid media", "giveaway": "giveaways", "invoice": "invoices",
              "checklist": "checklists"}


@dataclass(frozen=True)
class CustomerFile:
    file_id: str
    name: str
    mime_type: str
    size: int | None


def message_event(account: str, update: Update,
                  file_url: Callable[[str], str | None] = lambda _file_id: None,
                  thread: str | None = None, user: ChatUser | None = None,
                  bot_username: str | None = None) -> InboundMessage | None:
    """file_url(file_id): a bridge-served link to the file, or None when there is none.
    A file over what bots may download (too_large) goes without it: its caption only.
    thread: the topic it was written in, for a bot with a topic per conversation.
    In a group (groups.py): user, the member as a customer; bot_username, the mention of
    the bot, taken out of their words."""
    message = written(update)
    if message is None or message.from_user is None:
        return None
    edited = is_edit(update)
    if edited and message.location is not None:
        return None  # a live location moving: its first position was relayed
    words = without_mention(message.text or message.caption or "", bot_username)
    text = "\n".join(part for part in (words, _place_of(message)) if part)
    # Message ids are unique per chat; an edit gets its own id so it is relayed, once.
    message_id = f"{message.chat_id}:{message.message_id}"
    if edited:
        message_id += f":edit:{int(message.edit_date.timestamp()) if message.edit_date else 0}"
    attachment = None
    sent = file_of(message)
    if sent is not None and not too_large(sent):
        # A Telegram file URL contains the bot token: it must never reach the helpdesk.
        # The helpdesk gets a signed link served by the bridge; without one (no public
        # URL) the core tells the customer that attachments can't be sent.
        attachment = {"url": file_url(sent.file_id), "name": sent.name,
                      "mime_type": sent.mime_type}
    if not text.strip() and attachment is None:  # nothing to say (whitespace only)
        return None
    user = user or chat_user(account, message.from_user, message)
    return InboundMessage(user, text, message_id, attachment=attachment, edited=edited,
                          thread=thread, album=None if edited else message.media_group_id)


def file_of(message: Message) -> CustomerFile | None:
    """The file a message carries, of whichever kind, with a name and type for the
    helpdesk (Telegram names few of them)."""
    if message.animation is not None:  # a GIF: Telegram sends it as a document too
        found = message.animation
        return _file(found, found.file_name or "animation.mp4", found.mime_type, "video/mp4")
    if message.document is not None:
        found = message.document
        return _file(found, found.file_name or "document", found.mime_type,
                     "application/octet-stream")
    if message.photo:
        return _file(message.photo[-1], "photo.jpg", None, "image/jpeg")  # the largest size
    if message.video is not None:
        found = message.video
        return _file(found, found.file_name or "video.mp4", found.mime_type, "video/mp4")
    if message.video_note is not None:
        return _file(message.video_note, "video_note.mp4", None, "video/mp4")
    if message.voice is not None:
        return _file(message.voice, "voice.ogg", message.voice.mime_type, "audio/ogg")
    if message.audio is not None:
        found = message.audio
        return _file(found, found.file_name or "audio.mp3", found.mime_type, "audio/mpeg")
    if message.sticker is not None:
        found = message.sticker
        if found.is_animated:
            return _file(found, "sticker.tgs", None, "application/x-tgsticker")
        if found.is_video:
            return _file(found, "sticker.webm", None, "video/webm")
        return _file(found, "sticker.webp", None, "image/webp")
    return None


def too_large(sent: CustomerFile) -> bool:
    """Over what the Bot API lets bots download: the helpdesk could never fetch it."""
    return (sent.size or 0) > DOWNLOAD_LIMIT


def unsendable(message: Message) -> str | None:
    """What the message is, in the plural, when the helpdesk cannot take it ("polls")."""
    return next((plural for kind, plural in UNSENDABLE.items()
                 if getattr(message, kind, None) is not None), None)


def _file(found, name: str, mime_type: str | None, default_mime: str) -> CustomerFile:
    return CustomerFile(found.file_id, name, mime_type or default_mime,
                        getattr(found, "file_size", None))


def _place_of(message: Message) -> str:
    """A venue, a location or a contact, as text the helpdesk shows (with a map link)."""
    if message.venue is not None:
        venue = message.venue
        return f"📍 {venue.title}, {venue.address}\n{_map_link(venue.location)}"
    if message.location is not None:
        location = message.location
        return f"📍 {location.latitude}, {location.longitude}\n{_map_link(location)}"
    if message.contact is not None:
        contact = message.contact
        name = " ".join(part for part in (contact.first_name, contact.last_name) if part)
        return f"👤 {name}: {contact.phone_number}"
    return ""


def _map_link(location: Location) -> str:
    lat, lon = location.latitude, location.longitude
    return f"https://www.openstreetmap.org/?mlat={lat}&mlon={lon}#map=17/{lat}/{lon}"


def command_event(account: str, update: Update, name: str,
                  thread: str | None = None) -> Command | None:
    message = written(update)
    if message is None or message.from_user is None:
        return None
    return Command(chat_user(account, message.from_user, message), name, thread)


def press_event(account: str, update: Update) -> ButtonPress | None:
    query = update.callback_query
    if query is None or query.message is None or not query.data:
        return None
    return ButtonPress(chat_user(account, query.from_user, query.message), query.data)
