"""Arbitrary helpdesk payloads: parsing either yields a typed event or raises
MalformedPayload (which the link logs and skips); it never raises anything else. A typed
event stored as JSON for another daemon comes back the same."""
from __future__ import annotations

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.protocol import (
    BROADCASTS,
    MalformedPayload,
    attachment_links,
    dedupe_key,
    event_from_json,
    event_to_json,
    parse_envelope,
    parse_event,
)

CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)

known_fields = st.fixed_dictionaries({}, optional={
    "ticket_chat_id": json_values | st.text(min_size=1, max_size=12),
    "message": json_values, "sender": st.sampled_from(["sate", "agent", "robot", None]),
    "date_created": st.sampled_from([
        "2024-01-15T10:31:00Z", "2024-01-15T10:31:00", "2024-01-15T10:31:00+02:00", "soon", "",
        None, "9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00", "2024-02-30"])
    | st.datetimes().map(lambda d: d.isoformat()) | st.text(max_size=30) | json_values,
    "close_support": json_values, "closed_support": json_values, "attachment_metadata": json_values,
    "handler": json_values, "agent": json_values, "token": json_values, "room": json_values,
    "ticket_call_id": json_values, "status": json_values,
})

envelopes = st.fixed_dictionaries({}, optional={
    "status_code": st.sampled_from([200, 400, 401, 404, 500, "200", "x", None, True]),
    "sid": json_values, "message": json_values, "data": known_fields | json_values,
}) | json_values


@settings(max_examples=600, deadline=None)
@given(event=st.sampled_from(BROADCASTS + ("close_support", "unknown")), payload=envelopes)
def test_any_payload_parses_or_is_malformed(event, payload):
    try:
        envelope = parse_envelope(payload)
    except MalformedPayload:
        return
    try:
        typed = parse_event(event, envelope)
    except MalformedPayload:
        return
    assert typed.ticket_chat_id and isinstance(typed.ticket_chat_id, str)
    assert isinstance(dedupe_key(typed), str)
    # stored for the daemon working its customer (bridge/forwarding.py), it is the same event
    assert event_from_json(json.loads(json.dumps(event_to_json(typed)))) == typed


# Texts with what a hostile sender puts in them: control characters (NUL above all, which
# the renderers use for their placeholders), digits, and Markdown's own characters.
hostile_texts = st.lists(st.sampled_from(
    list("\x00\x01\x07\x08\x0b\x1b\x1f\x7f\t\n\r0123456789`*_~[]()<>&|!@ ab") + ["https://"]),
    max_size=40).map("".join)


@settings(max_examples=400, deadline=None)
@given(event=st.sampled_from(("support", "customer_support", "support_handler_changed")),
       text=hostile_texts, name=hostile_texts | json_values)
def test_texts_from_the_helpdesk_arrive_without_control_characters(event, text, name):
    data = {"ticket_chat_id": "t1", "message": text, "sender": "agent",
            "agent": {"username": name}, "handler": "agent"}
    try:
        typed = parse_event(event, parse_envelope({"status_code": 200, "data": data}))
    except MalformedPayload:
        return
    for shown in (getattr(typed, "text", None), getattr(typed, "agent_name", None)):
        assert shown is None or not CONTROLS.search(shown), shown


wrongly_typed = st.fixed_dictionaries({}, optional={
    key: json_values | st.text(max_size=12) | st.sampled_from(["https://f.example.com/a.png"])
    for key in ("url", "file_url", "link", "name", "file_name", "mime_type", "type")})


@settings(max_examples=400, deadline=None)
@given(metadata=wrongly_typed | st.lists(wrongly_typed, max_size=3) | json_values)
def test_attachment_fields_of_any_type_give_strings_or_nothing(metadata):
    for item in attachment_links(metadata):
        assert all(isinstance(value, str) for value in (item.url, item.name, item.mime_type))
        assert item.url.lower().startswith(("http://", "https://")) and item.name
        assert not CONTROLS.search(item.name + item.mime_type)
