"""Outgoing -> Block Kit. Each function returns the messages to post: (fallback text, blocks).

Buttons carry the core's action in `value`; their `action_id` says which prompt they
belong to (`helpdesk.<prompt>.<n>`), so the adapter knows a rating press (which opens
the comment modal) without reading the core's action strings.
"""
from __future__ import annotations

from adapters.slack import rich_text
from adapters.slack.mrkdwn import escape
from bridge.events import Outgoing
from bridge.markdown import Document, Span, parse
from bridge.sanitize import strip_controls
from bridge.styled import layout

ACTION_PREFIX = "helpdesk."
LINK_ACTION = "helpdesk.link"
COMMENT_MODAL = "helpdesk_comment"
COMMENT_INPUT = ("comment", "text")   # block_id, action_id of the modal's text field
FALLBACK_LIMIT = 300                  # notification text: a preview, not the message
NOTICES_IN_CONTEXT = {"agent_joined", "switched", "new_conversation"}

Message = tuple[str, list[dict]]


def _context(mrkdwn: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn}]}


def _plain(text: str, limit: int = 75) -> dict:
    """plain_text for a button label (Slack allows 75 characters)."""
    return {"type": "plain_text", "text": text[:limit], "emoji": True}


def _labelled(message: Outgoing) -> Document:
    label = message.conversation_label
    return message.document.with_prefix((Span(f"[{label}] "),) if label else ())


def _fallback(document: Document, before: str = "") -> str:
    """The notification text, plain. Slack reads it as mrkdwn: escaped, so that no reply
    can notify a whole channel (<!channel>) or someone by name (<@U…>)."""
    text = before + layout(document).text
    return escape(text if len(text) <= FALLBACK_LIMIT else text[:FALLBACK_LIMIT - 1] + "…")


def render(message: Outgoing) -> list[Message]:
    if message.kind == "reply":
        return _reply(message)
    if message.kind == "prompt":
        return [prompt(message)]
    document = _labelled(message)
    if message.kind == "call_invite":
        return [(_fallback(document), rich_text.blocks(document) + [{
            "type": "actions", "elements": [{
                "type": "button", "action_id": LINK_ACTION, "style": "primary",
                "text": _plain(message.url_label or "Join"), "url": message.url}]}])]
    if message.notice in NOTICES_IN_CONTEXT:
        return [(_fallback(document), [_context(escape(layout(document).text))])]
    return [(_fallback(document), group)
            for group in rich_text.messages(rich_text.blocks(document))]


def _reply(message: Outgoing) -> list[Message]:
    label = f"[{escape(message.conversation_label)}] " if message.conversation_label else ""
    who = _context(f"{label}*{escape(message.sender_name or '')}*")
    groups = rich_text.messages(rich_text.blocks(message.document)) or [[]]
    first = _fallback(message.document, f"{message.sender_name}: ")
    return [(first if index == 0 else "…", ([who] if index == 0 else []) + group)
            for index, group in enumerate(groups)]


def prompt(message: Outgoing) -> Message:
    buttons = []
    for index, button in enumerate(message.buttons):
        element = {"type": "button", "text": _plain(button.label), "value": button.action,
                   "action_id": f"{ACTION_PREFIX}{message.prompt}.{index}"}
        if message.prompt == "close_confirm":
            element["style"] = "primary" if index == 0 else "danger"
        buttons.append(element)
    document = _labelled(message)
    blocks = rich_text.blocks(document)
    if buttons:
        blocks.append({"type": "actions", "block_id": f"{ACTION_PREFIX}{message.prompt}",
                       "elements": buttons})
    return _fallback(document), blocks


def answered(text: str) -> Message:
    """A prompt after its choice: the words stay, the buttons go."""
    document = parse(strip_controls(text))
    return _fallback(document), rich_text.blocks(document)


def comment_modal(action: str, title: str, label: str, submit: str) -> dict:
    """The optional comment after a rating; private_metadata carries the comment action."""
    return {
        "type": "modal", "callback_id": COMMENT_MODAL, "private_metadata": action,
        "title": _plain(title, 24), "submit": _plain(submit, 24), "close": _plain("Skip", 24),
        "blocks": [{"type": "input", "block_id": COMMENT_INPUT[0], "optional": True,
                    "label": _plain(label, 2000),
                    "element": {"type": "plain_text_input", "action_id": COMMENT_INPUT[1],
                                "multiline": True, "max_length": 3000}}],
    }
