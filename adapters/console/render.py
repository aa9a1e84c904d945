"""Outgoing -> terminal text: prompts become numbered choices."""
from __future__ import annotations

from bridge.events import Outgoing


def render(message: Outgoing) -> str:
    label = f"[{message.conversation_label}] " if message.conversation_label else ""
    if message.kind == "reply":
        text = f"{label}{message.sender_name}: {message.text}"
        if message.attachment:
            text += f"\n   (attachment: {_attachment_url(message.attachment)})"
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


def _attachment_url(metadata) -> str:
    items = metadata if isinstance(metadata, list) else [metadata]
    urls = [str(item.get("url")) for item in items if isinstance(item, dict) and item.get("url")]
    return ", ".join(urls) or "unnamed file"
