"""The helpdesk's wire format: envelopes in, typed events out. Pure functions, no I/O.

Payloads are read leniently (docs/protocol.md: fields may be missing, null or extra) but
anything we cannot act on safely raises MalformedPayload, which the link logs and skips.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from bridge.events import Attachment
from bridge.sanitize import strip_controls


class MalformedPayload(ValueError):
    pass


class HelpdeskError(Exception):
    """The helpdesk answered a request with a status other than 200."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"helpdesk answered {status_code}: {message}")
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True)
class Envelope:
    status_code: int
    message: str
    data: Any

    @property
    def ok(self) -> bool:
        return self.status_code == 200

    def raise_for_status(self) -> "Envelope":
        if not self.ok:
            raise HelpdeskError(self.status_code, self.message or "no reason given")
        return self

    @property
    def ticket_chat_id(self) -> str | None:
        value = self.data.get("ticket_chat_id") if isinstance(self.data, dict) else None
        return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class HelpdeskMessage:
    ticket_chat_id: str
    sender: str              # "sate" | "agent"
    text: str
    date_created: str        # normalised to UTC ISO 8601, "" when the helpdesk sent none
    attachment_metadata: Any = None
    close_support: bool = False
    closed_support: bool = False


@dataclass(frozen=True)
class HandlerChanged:
    ticket_chat_id: str
    handler: str
    agent_name: str | None
    agent_id: str | None


@dataclass(frozen=True)
class ConversationClosed:
    ticket_chat_id: str
    status: str | None


@dataclass(frozen=True)
class CallStarted:
    ticket_chat_id: str
    token: str
    room: str
    ticket_call_id: str


@dataclass(frozen=True)
class CallEnded:
    ticket_chat_id: str
    ticket_call_id: str | None
    reason: str  # "closed" (close_call_support) | "sate_left"


HelpdeskEvent = HelpdeskMessage | HandlerChanged | ConversationClosed | CallStarted | CallEnded


def dedupe_key(event: HelpdeskEvent) -> str:
    """What makes an event the same event when it comes again (on both channels, or
    replayed): the to-customer queue shows each key once."""
    match event:
        case HelpdeskMessage():
            # content identity: no message id is documented (docs/protocol.md, Duplicates)
            raw = "\x1f".join([event.ticket_chat_id, event.sender, event.date_created,
                               event.text])
            return "msg:" + hashlib.sha256(raw.encode()).hexdigest()
        case HandlerChanged():
            who = event.agent_id or event.agent_name
            return f"handler:{event.ticket_chat_id}:{event.handler}:{who}"
        case ConversationClosed():
            return f"closed:{event.ticket_chat_id}"
        case CallStarted():
            return f"call:{event.ticket_call_id}"
        case CallEnded():
            return f"callend:{event.ticket_chat_id}:{event.ticket_call_id}"
    raise TypeError(f"not a helpdesk event: {type(event).__name__}")


# A helpdesk event stored for the daemon that works its customer (bridge/forwarding.py).
HELPDESK_EVENT = "helpdesk_event"
_EVENT_TYPES = {kind.__name__: kind for kind in (
    HelpdeskMessage, HandlerChanged, ConversationClosed, CallStarted, CallEnded)}


def event_to_json(event: HelpdeskEvent) -> dict:
    return {"kind": HELPDESK_EVENT, "type": type(event).__name__, "fields": asdict(event)}


def event_from_json(data: dict) -> HelpdeskEvent:
    """KeyError or TypeError when `data` is not what event_to_json wrote."""
    return _EVENT_TYPES[data["type"]](**data["fields"])

# Server events that carry news for a customer (the rest only answer requests).
BROADCASTS = ("support", "customer_support", "customer_support_closed",
              "support_handler_changed", "call_support", "close_call_support", "sate_left_call")


def parse_envelope(payload: Any) -> Envelope:
    if not isinstance(payload, dict):
        raise MalformedPayload(f"expected an object, got {type(payload).__name__}")
    status = payload.get("status_code", 200)
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool):
        raise MalformedPayload("status_code is not a number")
    if "data" in payload:
        data = payload["data"]
    elif "ticket_chat_id" in payload:  # a bare payload without the envelope
        data = payload
    else:
        data = None
    message = payload.get("message")
    return Envelope(status, message if isinstance(message, str) else "", data)


def normalise_time(value: Any) -> str:
    """ISO 8601 with or without a zone -> UTC ISO; a zone-less time is taken as UTC."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise MalformedPayload("date_created is not a string")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc).isoformat()
    except (ValueError, OverflowError):  # year 9999 with a negative offset overflows
        raise MalformedPayload("date_created is not a usable ISO 8601 time") from None


def _text(data: dict, key: str, required: bool = True) -> str | None:
    value = data.get(key)
    if isinstance(value, str) and value:
        return value
    if required:
        raise MalformedPayload(f"{key} is missing")
    return None


def _flag(data: dict, key: str) -> bool:
    value = data.get(key)
    return value is True or value == "true"


def parse_event(name: str, envelope: Envelope) -> HelpdeskEvent:
    """A broadcast's envelope -> typed event. The envelope must have status 200."""
    data = envelope.data
    if not isinstance(data, dict):
        raise MalformedPayload(f"{name}: data is not an object")
    ticket = _text(data, "ticket_chat_id")
    if name in ("support", "customer_support", "close_support"):
        text = data.get("message")
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise MalformedPayload(f"{name}: message is not a string")
        sender = data.get("sender") or ("agent" if name == "customer_support" else "sate")
        if sender not in ("sate", "agent"):
            raise MalformedPayload(f"{name}: unknown sender")
        attachment = data.get("attachment_metadata")
        if not text and not attachment and not _flag(data, "closed_support"):
            raise MalformedPayload(f"{name}: empty message")
        return HelpdeskMessage(ticket, sender, strip_controls(text),
                               normalise_time(data.get("date_created")), attachment,
                               _flag(data, "close_support"), _flag(data, "closed_support"))
    if name == "support_handler_changed":
        agent = data.get("agent") if isinstance(data.get("agent"), dict) else {}
        agent_name = _text(agent, "username", False)
        return HandlerChanged(ticket, _text(data, "handler", False) or "agent",
                              strip_controls(agent_name) if agent_name else None,
                              _text(agent, "id", False))
    if name == "customer_support_closed":
        return ConversationClosed(ticket, _text(data, "status", False))
    if name == "call_support":
        return CallStarted(ticket, _text(data, "token"), _text(data, "room", False) or ticket,
                           _text(data, "ticket_call_id"))
    if name == "close_call_support":
        return CallEnded(ticket, _text(data, "ticket_call_id", False), "closed")
    if name == "sate_left_call":
        return CallEnded(ticket, _text(data, "ticket_call_id", False), "sate_left")
    raise MalformedPayload(f"unknown event {name}")


def attachment_links(metadata: Any) -> list[Attachment]:
    """The files in a message's attachment_metadata, as far as they can be fetched. The
    API does not fix the shape: one object or a list, with url, file_url or link, name or
    file_name, mime_type or type. Only string values, and only http(s) URLs: any other
    scheme is not even shown as a link. A file without a name is named after its URL."""
    items = metadata if isinstance(metadata, list) else [metadata]
    found = []
    for item in items:
        if isinstance(item, dict):
            url = _first_string(item, "url", "file_url", "link")
            if url.lower().startswith(("http://", "https://")) and url.isprintable():
                name = _first_string(item, "name", "file_name") \
                    or url.split("?")[0].rstrip("/").rsplit("/", 1)[-1] or "file"
                found.append(Attachment(url, name, _first_string(item, "mime_type", "type")))
    return found


def _first_string(item: dict, *keys: str) -> str:
    for key in keys:
        value = item.get(key)
        if isinstance(value, str) and value:
            return strip_controls(value)
    return ""
