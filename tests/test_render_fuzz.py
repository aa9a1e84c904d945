"""Whatever text reaches a renderer, from a customer (echoed by SATE) or an agent: it is
rendered at once, without raising, and no placeholder of the renderer's own survives.

A security review froze the daemon with an inline code span holding NUL, a digit, NUL
(Slack's renderer expanded it into itself forever) and broke Telegram's with
`see note \\x007\\x00` (IndexError, retried forever)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings

from adapters.slack import blocks
from adapters.slack.mrkdwn import sections, to_mrkdwn
from adapters.telegram.markup import to_html
from bridge.events import ButtonPress, ChatUser, InboundMessage, Outgoing
from bridge.relay import _without_controls
from tests.test_protocol_fuzz import CONTROLS, hostile_texts


@pytest.mark.timeout(5)  # the old Slack renderer never returned
def test_a_code_span_that_looks_like_a_placeholder_is_just_text():
    assert to_mrkdwn("`\x000\x00`") == "`0`"
    assert to_mrkdwn("**bold `\x000\x00`** `x`") == "*bold `0`* `x`"


def test_telegram_takes_placeholder_lookalikes_as_text():
    assert to_html("see note \x007\x00") == "see note 7"  # was IndexError
    assert to_html("**`\x000\x00`**") == "<b><code>0</code></b>"


def test_a_link_with_an_ampersand_is_escaped_once():
    assert to_html("[pay](https://shop.example.com/?a=1&b=2)") == \
        '<a href="https://shop.example.com/?a=1&amp;b=2">pay</a>'  # was &amp;amp;


def test_slack_notification_text_cannot_ping_a_channel():
    for fallback, _blocks in blocks.render(Outgoing(kind="reply", text="<!channel> <@U0BOSS> hi",
                                                    sender="agent", sender_name="Eve")):
        assert "<!channel>" not in fallback and "<@U0BOSS>" not in fallback
        assert "&lt;!channel&gt;" in fallback


@settings(max_examples=500, deadline=None)
@given(text=hostile_texts)
def test_any_text_renders_for_slack_and_telegram(text):
    for rendered in [to_html(text), to_mrkdwn(text), *sections(text)]:
        assert "\x00" not in rendered
    for message in (Outgoing(kind="reply", text=text, sender="agent", sender_name=text),
                    Outgoing(kind="notice", text=text or "x")):
        for fallback, rendered_blocks in blocks.render(message):
            assert "<!" not in fallback and "\x00" not in str(rendered_blocks)


@settings(max_examples=300, deadline=None)
@given(text=hostile_texts, name=hostile_texts)
def test_what_customers_send_reaches_the_core_without_control_characters(text, name):
    user = ChatUser("telegram", "1", "2", "2")
    for event in (InboundMessage(user, text, "m1", attachment={"url": "https://x", "name": name}),
                  ButtonPress(user, "comment:1:text", text=text)):
        cleaned = _without_controls(event)
        values = [cleaned.text, (getattr(cleaned, "attachment", None) or {}).get("name")]
        assert not any(CONTROLS.search(v) for v in values if isinstance(v, str))
