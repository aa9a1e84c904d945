"""Outgoing -> terminal text: Markdown laid out as plain lines (bridge/styled.py), prompts
become numbered choices."""
from __future__ import annotations

from bridge.events import Outgoing
from bridge.styled import layout


def render(message: Outgoing) -> str:
    label = f"[{message.conversation_label}] " if message.conversation_label else ""
    shown = layout(message.document).text
    if message.kind == "reply":
        text = f"{label}{message.sender_name}: {shown}"
        if message.attachments:
            urls = ", ".join(item.url for item in message.attachments)
            text += f"\n   (attachment: {urls})"
        return text
    if message.kind == "edit":
        return f"(updated) {shown}"
    if message.kind == "call_invite":
        return f"{label}{shown} {message.url_label}: {message.url}"
    text = f"{label}-- {shown}"
    if message.buttons:
        choices = "   ".join(f"[{n}] {b.label}" for n, b in enumerate(message.buttons, 1))
        text += f"\n   {choices}"
    return text
