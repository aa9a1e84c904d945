"""Whatever text reaches a renderer, from a customer (echoed by SATE) or an agent: it is
rendered at once, without raising, into messages the platform accepts.

A security review once froze the daemon with an inline code span holding NUL, a digit,
NUL (the regular-expression renderers of that time expanded their own placeholders), and
broke Telegram's with `see note \\x007\\x00`; those texts stay here as cases."""
from __future__ import annotations

from hypothesis import given, settings

from adapters.slack import blocks
from adapters.telegram.entities import messages
from bridge.events import ButtonPress, ChatUser, InboundMessage, Outgoing
from bridge.relay import _without_controls
from testing import slack_blocks, telegram_entities
from tests.test_protocol_fuzz import CONTROLS, hostile_texts


def test_placeholder_lookalikes_are_just_text():
    [(text, entities)] = messages(Outgoing(kind="notice", text="see note \x007\x00").document)
    assert (text, entities) == ("see note 7", [])
    [(text, entities)] = messages(Outgoing(kind="notice", text="**`\x000\x00`**").document)
    assert text == "0" and [e.type for e in entities] == ["code"]


def test_slack_notification_text_cannot_ping_a_channel():
    for fallback, _blocks in blocks.render(Outgoing(kind="reply", text="<!channel> <@U0BOSS> hi",
                                                    sender="agent", sender_name="Eve")):
        assert "<!channel>" not in fallback and "<@U0BOSS>" not in fallback
        assert "&lt;!channel&gt;" in fallback


@settings(max_examples=500, deadline=None)
@given(text=hostile_texts)
def test_any_text_renders_for_slack_and_telegram(text):
    for message in (Outgoing(kind="reply", text=text, sender="agent", sender_name=text),
                    Outgoing(kind="notice", text=text or "x")):
        for shown, entities in messages(message.document):
            assert "\x00" not in shown
            assert telegram_entities.problems(shown, [e.to_dict() for e in entities]) == []
        for fallback, rendered_blocks in blocks.render(message):
            assert "<!" not in fallback and "\x00" not in str(rendered_blocks)
            assert slack_blocks.problems(rendered_blocks) == []


@settings(max_examples=300, deadline=None)
@given(text=hostile_texts, name=hostile_texts)
def test_what_customers_send_reaches_the_core_without_control_characters(text, name):
    user = ChatUser("telegram", "1", "2", "2")
    for event in (InboundMessage(user, text, "m1", attachment={"url": "https://x", "name": name}),
                  ButtonPress(user, "comment:1:text", text=text)):
        cleaned = _without_controls(event)
        values = [cleaned.text, (getattr(cleaned, "attachment", None) or {}).get("name")]
        assert not any(CONTROLS.search(v) for v in values if isinstance(v, str))
