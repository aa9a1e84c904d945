"""Slack payloads -> the core's neutral events. Kept apart from sending (as opsdroid does).

Slack sends text with `&`, `<`, `>` escaped and links as `<url|label>`; the helpdesk gets
plain text. A customer's file becomes a bridge-served signed link (file_url), never Slack's
private URL, which only works with the bot token.
"""
from __future__ import annotations

import html
import re
from typing import Callable

from bridge.events import COMMANDS, ButtonPress, ChatUser, Command, InboundMessage

RELAYED_SUBTYPES = (None, "file_share", "thread_broadcast")
_LABELLED_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)\|([^>]+)>")
_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)>")
COMMAND_WORDS = {"close": "close", "call": "call", "help": "help", "list": "conversations",
                 "conversations": "conversations", "new": "new"}


def plain_text(text: str) -> str:
    text = _LABELLED_LINK.sub(lambda m: m.group(2) if m.group(2) == m.group(1)
                              else f"{m.group(2)} ({m.group(1)})", text)
    text = _LINK.sub(r"\1", text)
    return html.unescape(text)


def from_person(event: dict, bot_user_id: str) -> bool:
    """A message a customer wrote: not a bot's (ours included), not an edit or a deletion."""
    return (event.get("subtype") in RELAYED_SUBTYPES and not event.get("bot_id")
            and isinstance(event.get("user"), str) and event["user"] != bot_user_id)


def message_event(team: str, event: dict,
                  file_url: Callable[[str], str | None] = lambda _file_id: None,
                  channel_thread: bool = False) -> InboundMessage | None:
    """channel_thread: written in a support channel, where each thread is a customer of
    its own (channel_customer)."""
    channel, ts = event.get("channel"), event.get("ts")
    if not isinstance(channel, str) or not isinstance(ts, str):
        return None
    text = plain_text(event.get("text") or "") if isinstance(event.get("text"), str) else ""
    attachment = None
    files = event.get("files") if isinstance(event.get("files"), list) else []
    files = [f for f in files if isinstance(f, dict) and isinstance(f.get("id"), str) and f["id"]]
    if files:
        first = files[0]
        attachment = {"url": file_url(first["id"]), "name": _string(first, "name") or "file",
                      "mime_type": _string(first, "mimetype") or "application/octet-stream"}
    if not text.strip() and attachment is None:
        return None
    thread = event.get("thread_ts")
    thread = thread if isinstance(thread, str) and thread != ts else None
    who = channel_customer(team, channel, thread or ts) if channel_thread \
        else ChatUser("slack", team, event["user"], channel)
    return InboundMessage(who, text, f"{channel}:{ts}", attachment=attachment, thread=thread,
                          ref=ts)


def channel_customer(team: str, channel: str, thread: str) -> ChatUser:
    """In a support channel the helpdesk's customer is the thread: whoever writes in it
    continues its one conversation, and a busy channel holds as many open conversations
    as it has threads (the helpdesk's limit of 3 is per customer). docs/customers.md."""
    return ChatUser("slack", team, f"{channel}/{thread}", channel)


def in_support_channel(event: dict) -> bool:
    """A public or private channel (shared ones included), not a DM or a group DM."""
    return event.get("channel_type") in ("channel", "group")


def is_channel(channel: object) -> bool:
    """A public or private channel's id (C…, G…), not a DM's (D…), where an event names
    no channel_type (a mention, a button, a slash command)."""
    return isinstance(channel, str) and channel[:1] in ("C", "G")


def command_events(team: str, user: str, dm_channel: str, text: str,
                   trigger: str) -> list[Command | InboundMessage]:
    """`/support` -> a new conversation; `/support close|call|help|list` -> that command;
    `/support <a question>` -> a new conversation that starts with the question."""
    who = ChatUser("slack", team, user, dm_channel)
    word = text.strip().partition(" ")[0]
    name = COMMAND_WORDS.get(word.lower())
    if not word:
        return [Command(who, "new")]
    if name in COMMANDS:
        return [Command(who, name)]
    return [Command(who, "new"), InboundMessage(who, plain_text(text.strip()), f"command:{trigger}")]


def press_event(team: str, user: str, dm_channel: str, action: dict) -> ButtonPress | None:
    value = action.get("value")
    if not isinstance(value, str) or not value:
        return None
    return ButtonPress(ChatUser("slack", team, user, dm_channel), value)


def comment_event(team: str, user: str, dm_channel: str, view: dict,
                  block_id: str, action_id: str) -> ButtonPress | None:
    """The comment modal, submitted: the comment action with what was typed (may be
    empty: then the rating goes without a comment)."""
    action = view.get("private_metadata")
    if not isinstance(action, str) or not action.startswith("comment:"):
        return None
    typed = dig(view, "state", "values", block_id, action_id, "value")
    typed = typed.strip() if isinstance(typed, str) else ""
    return ButtonPress(ChatUser("slack", team, user, dm_channel), action, text=typed or None)


def _string(data: dict, key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def dig(data: object, *keys: str) -> object:
    """data[k1][k2]…, or None where the shape is not as Slack documents it."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def team_of(body: dict) -> str:
    """The workspace a request or event comes from."""
    team = body.get("team_id") or body.get("team") or ""
    return team.get("id", "") if isinstance(team, dict) else str(team)
