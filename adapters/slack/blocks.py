"""Outgoing -> Block Kit. Each function returns the messages to post: (fallback text, blocks).

Buttons carry the core's action in `value`; their `action_id` says which prompt they
belong to (`helpdesk.<prompt>.<n>`), so the adapter knows a rating press (which opens
the comment modal) without reading the core's action strings.
"""
from __future__ import annotations

from adapters.slack.mrkdwn import escape, sections, to_mrkdwn
from bridge.events import Outgoing

ACTION_PREFIX = "helpdesk."
LINK_ACTION = "helpdesk.link"
COMMENT_MODAL = "helpdesk_comment"
COMMENT_INPUT = ("comment", "text")   # block_id, action_id of the modal's text field
FALLBACK_LIMIT = 300                  # notification text: a preview, not the message
SECTIONS_PER_MESSAGE = 20             # Slack allows 50 blocks; keep messages readable
NOTICES_IN_CONTEXT = {"agent_joined", "switched", "new_conversation"}

Message = tuple[str, list[dict]]


def _section(mrkdwn: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}


def _context(mrkdwn: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn}]}


def _plain(text: str, limit: int = 75) -> dict:
    """plain_text for a button label (Slack allows 75 characters)."""
    return {"type": "plain_text", "text": text[:limit], "emoji": True}


def _label(message: Outgoing) -> str:
    return f"[{escape(message.conversation_label)}] " if message.conversation_label else ""


def _fallback(text: str) -> str:
    """The notification text. Slack reads it as mrkdwn too: escaped, so that no reply can
    notify a whole channel (<!channel>) or someone by name (<@U…>)."""
    return escape(text if len(text) <= FALLBACK_LIMIT else text[:FALLBACK_LIMIT - 1] + "…")


def render(message: Outgoing) -> list[Message]:
    if message.kind == "reply":
        return _reply(message)
    if message.kind == "prompt":
        return [prompt(message)]
    if message.kind == "call_invite":
        return [(_fallback(message.text), [_section(to_mrkdwn(message.text)), {
            "type": "actions", "elements": [{
                "type": "button", "action_id": LINK_ACTION, "style": "primary",
                "text": _plain(message.url_label or "Join"), "url": message.url}]}])]
    if message.notice in NOTICES_IN_CONTEXT:
        return [(_fallback(message.text), [_context(_label(message) + to_mrkdwn(message.text))])]
    return [(_fallback(message.text), [_section(_label(message) + piece)
                                       for piece in sections(message.text)][:SECTIONS_PER_MESSAGE])]


def _reply(message: Outgoing) -> list[Message]:
    who = f"{_label(message)}*{escape(message.sender_name or '')}*"
    pieces = sections(message.text) if message.text else []
    messages: list[Message] = []
    for start in range(0, max(len(pieces), 1), SECTIONS_PER_MESSAGE):
        blocks = [_context(who)] if start == 0 else []
        blocks += [_section(piece) for piece in pieces[start:start + SECTIONS_PER_MESSAGE]]
        text = f"{message.sender_name}: {message.text}" if start == 0 else message.text
        messages.append((_fallback(text), blocks))
    return messages


def prompt(message: Outgoing) -> Message:
    buttons = []
    for index, button in enumerate(message.buttons):
        element = {"type": "button", "text": _plain(button.label), "value": button.action,
                   "action_id": f"{ACTION_PREFIX}{message.prompt}.{index}"}
        if message.prompt == "close_confirm":
            element["style"] = "primary" if index == 0 else "danger"
        buttons.append(element)
    blocks = [_section(_label(message) + to_mrkdwn(message.text))]
    if buttons:
        blocks.append({"type": "actions", "block_id": f"{ACTION_PREFIX}{message.prompt}",
                       "elements": buttons})
    return _fallback(message.text), blocks


def answered(text: str) -> Message:
    """A prompt after its choice: the words stay, the buttons go."""
    return _fallback(text), [_section(to_mrkdwn(text))]


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
