"""Groups as customer channels (`[telegram] groups = "conversations"`): in a customer
company's group, a member who mentions the bot or replies to it talks to the helpdesk.

Each member of each group is a customer of their own (user id "<group>/<member>"): their
conversations are theirs, apart from what they write to the bot in private, and from
other members'. Where to answer is kept in the customer's chat id, "<group>/<message>"
(or "<group>/<message>/<topic>" in a forum group): the member's latest message to the
bot, which the answer replies to, in the topic it was written in. The core moves a
customer's chat with each message they write, so that place is always the latest one, on
any daemon.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from telegram import Message, ReplyParameters
from telegram.constants import ChatType, MessageEntityType

from bridge.events import ChatUser

GROUP_PACE = (20, 60.0)  # Telegram: at most 20 messages a minute to one group


@dataclass(frozen=True)
class Place:
    """Where to show a customer's messages: a chat; in a group the member's message to
    answer and the forum topic it is in; in a company's business account's chat, that
    business connection ("<chat>@<connection>")."""
    chat_id: int
    reply_to: int | None = None
    thread: int | None = None
    business: str | None = None

    @classmethod
    def of(cls, chat_id: str) -> "Place":
        where, _, business = chat_id.partition("@")
        parts = [int(part) for part in where.split("/")]
        return cls(*parts, business=business or None)

    def __str__(self) -> str:
        parts = [self.chat_id, self.reply_to, self.thread]
        where = "/".join(str(part) for part in parts if part is not None)
        return f"{where}@{self.business}" if self.business else where

    @property
    def in_group(self) -> bool:
        return self.reply_to is not None

    @property
    def is_bot_chat(self) -> bool:
        """A customer's private chat with the bot itself."""
        return self.reply_to is None and self.business is None

    def sending(self, thread: str | None = None) -> dict:
        """send_message's arguments that put an answer in its place, when it goes to the
        forum topic `thread`."""
        if self.business is not None:
            return {"business_connection_id": self.business}
        if self.reply_to is None or (self.thread is not None and thread != str(self.thread)):
            return {}  # (the member's latest message is in another topic)
        # Sent even should the member have deleted the message it answers.
        return {"reply_parameters": ReplyParameters(self.reply_to,
                                                    allow_sending_without_reply=True)}

    def editing(self) -> dict:
        """edit_message_*'s arguments for a message in this place."""
        return {"business_connection_id": self.business} if self.business else {}


def is_group(message: Message) -> bool:
    return message.chat.type in (ChatType.GROUP, ChatType.SUPERGROUP)


def member(account: str, message: Message, user) -> ChatUser:
    """A group member as the customer they are in that group; the place to answer them is
    the message they just wrote."""
    chat = message.chat
    return ChatUser("telegram", account, f"{chat.id}/{user.id}",
                    str(Place(chat.id, message.message_id, forum_topic(message))),
                    user.language_code)


def forum_topic(message: Message) -> int | None:
    """The topic of a forum group a message was written in (None: General, or no forum)."""
    return message.message_thread_id if message.chat.is_forum and message.is_topic_message \
        else None


def addressed(message: Message, bot_id: int, username: str | None) -> bool:
    """The member wrote to the bot: mentioned it, or replied to one of its messages."""
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == bot_id:
        return True
    mention = f"@{username}".lower() if username else None
    entities = message.parse_entities() if message.text \
        else message.parse_caption_entities() if message.caption else {}
    for entity, text in entities.items():
        if entity.type == MessageEntityType.MENTION and text.lower() == mention:
            return True
        if entity.type == MessageEntityType.TEXT_MENTION and entity.user \
                and entity.user.id == bot_id:
            return True
        if entity.type == MessageEntityType.BOT_COMMAND and mention \
                and text.lower().endswith(mention):
            return True
    return False


def without_mention(text: str, username: str | None) -> str:
    """The member's words without "@support_bot", which the helpdesk need not see."""
    if not username:
        return text
    return re.sub(rf"\s*@{re.escape(username)}\b", "", text, flags=re.IGNORECASE).strip()


def opener_of(prompt: Message) -> int | None:
    """Whose conversation a message with buttons belongs to: the member it answers."""
    replied = prompt.reply_to_message
    if replied is None or replied.from_user is None:
        return None
    return replied.from_user.id
