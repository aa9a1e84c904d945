"""Arbitrary helpdesk payloads: parsing either yields a typed event or raises
MalformedPayload (which the link logs and skips); it never raises anything else."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.protocol import BROADCASTS, MalformedPayload, parse_envelope, parse_event

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
    assert isinstance(typed.dedupe_key, str)
