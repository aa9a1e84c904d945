"""Neutral data types between the core and the adapters. Nothing platform-specific here:
the core says *what* to show (a prompt with its choices), each adapter draws it natively."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property

from bridge.markdown import Document, parse
from bridge.sanitize import strip_controls


@dataclass(frozen=True)
class ChatUser:
    """Who wrote, as the platform knows them. Never sent to the helpdesk."""
    platform: str         # "telegram", "slack", "console"
    account: str          # the bot / workspace, so one bridge can serve several
    user_id: str
    chat_id: str          # where to answer (a private chat, a DM channel)
    language: str | None = None


@dataclass(frozen=True)
class InboundMessage:
    user: ChatUser
    text: str
    message_id: str                      # platform-unique: a repeat of it is ignored
    attachment: dict | None = None       # {"url", "name", "mime_type"} reachable by the helpdesk
    edited: bool = False
    # Platforms with threads (Slack). thread: the thread it was written in, whose
    # conversation it belongs to; None at top level. ref: this message's own reference; a
    # conversation it starts is threaded under it.
    thread: str | None = None
    ref: str | None = None
    # Several messages the platform shows as one (a Telegram album, its media_group_id):
    # they reach the helpdesk as one message with all their files.
    album: str | None = None


@dataclass(frozen=True)
class ButtonPress:
    user: ChatUser
    action: str        # the Button.action that was pressed, as the platform returned it
    text: str | None = None  # what the user typed with it (a form, such as Slack's modal)


def comment_action(rating_action: str) -> str:
    """The action that carries a comment typed in a form for the rating `rating_action`,
    sent as ButtonPress(action=..., text=comment) by a platform with forms (Slack); with
    no text, the rating goes without a comment."""
    _verb, conversation_id, _value = (rating_action.split(":") + ["", ""])[:3]
    return f"comment:{conversation_id}:text"


#: the commands the core understands, in the order a platform should list them
COMMANDS = ("start", "new", "conversations", "close", "call", "help")


@dataclass(frozen=True)
class Command:
    user: ChatUser
    name: str          # one of COMMANDS
    thread: str | None = None  # the platform thread it was typed in: it is about the
    #                            conversation shown there (a Telegram topic)


Inbound = InboundMessage | ButtonPress | Command
_INBOUND_KINDS = {"message": InboundMessage, "press": ButtonPress, "command": Command}


def inbound_to_json(event: Inbound) -> dict:
    """An inbound event as JSON, for a daemon that stores it for another
    (bridge/forwarding.py)."""
    kind = next(name for name, cls in _INBOUND_KINDS.items() if isinstance(event, cls))
    return {"kind": kind, **asdict(event)}


def inbound_from_json(data: dict) -> Inbound:
    data = dict(data)
    cls = _INBOUND_KINDS[data.pop("kind")]
    return cls(**{**data, "user": ChatUser(**data["user"])})


@dataclass(frozen=True)
class Button:
    label: str
    action: str        # at most 64 bytes (Telegram's callback_data limit)


@dataclass(frozen=True)
class Attachment:
    """A file to show the customer: a URL the platform can fetch, its name and type."""
    url: str
    name: str
    mime_type: str = ""


@dataclass
class Outgoing:
    """One thing to show a customer. Stored as JSON in the delivery queue."""
    kind: str                            # reply | notice | prompt | call_invite | edit
    # (an edit with empty text keeps the text and only removes the buttons)
    text: str
    sender: str | None = None            # reply: "sate" | "agent"
    sender_name: str | None = None       # reply: "SATE" or the agent's name
    conversation_label: str | None = None  # set when not the customer's active conversation
    prompt: str | None = None            # prompt: close_confirm | rating | comment | conversations
    buttons: list[Button] = field(default_factory=list)
    url: str | None = None               # call_invite: the call page
    url_label: str | None = None
    attachments: list[Attachment] = field(default_factory=list)  # reply: its files
    edit_of: int | None = None           # edit: queue id of the message to change
    edit_ref: str | None = None          # edit: that message's platform ref, filled at delivery
    edit_original: str | None = None     # edit: that message's text, filled at delivery
    notice: str | None = None            # notice: which one (its [texts] key, "agent_joined")
    final: bool = False                  # the last word of a conversation (after the rating)
    busy: bool = False                   # filled at delivery: the customer has a queue
    #                                      (their turn of the bot's budget comes after
    #                                      quiet customers': bridge/fair_share.py)
    thread: str | None = None            # the conversation's platform thread, filled at
    #                                      delivery for adapters with threads (Slack, Telegram
    #                                      topics). An adapter that opens a thread for a
    #                                      conversation without one sets it here: the core
    #                                      keeps it as that conversation's thread.
    thread_title: str | None = None      # filled with thread None: the conversation's first
    #                                      words, to name a thread the adapter opens for it

    @cached_property
    def document(self) -> Document:
        """The text as the adapters render it: Markdown, parsed once (bridge/markdown.py),
        without control characters (bridge/sanitize.py)."""
        return parse(strip_controls(self.text))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Outgoing":
        data = dict(data)
        data["buttons"] = [Button(**b) for b in data.get("buttons", [])]
        data["attachments"] = [Attachment(**a) for a in data.get("attachments", [])]
        if "attachment" in data:  # queued by a version that kept the helpdesk's raw metadata
            from bridge.protocol import attachment_links
            data["attachments"] += attachment_links(data.pop("attachment"))
        return cls(**data)
