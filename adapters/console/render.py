"""Outgoing -> terminal text: prompts become numbered choices."""
from __future__ import annotations

from bridge.events import Outgoing


def render(message: Outgoing) -> str:
    label = f"[{message.conversation_label}] " if message.conversation_label else ""
    if message.kind == "reply":
        text = f"{label}{message.sender_name}: {message.text}"
        if message.attachments:
            urls = ", ".join(item.url for item in message.attachments)
            text += f"\n   (attachment: {urls})"
        return text
    if message.kind == "edit":
        return f"(updated) {message.text}"
    if message.kind == "call_invite":
        return f"{label}{message.text} {message.url_label}: {message.url}"
    text = f"{label}-- {message.text}"
    if message.buttons:
        choices = "   ".join(f"[{n}] {b.label}" for n, b in enumerate(message.buttons, 1))
        text += f"\n   {choices}"
    return text

