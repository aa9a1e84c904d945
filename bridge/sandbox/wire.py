"""What the sandbox helpdesk says on the wire: its envelopes, conversations, call tokens,
and the switches for the API's awkward behaviours (docs/protocol.md)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

NAMESPACE = "/helpdesk"
DEFAULT_API_KEY = "sandbox-key"
LIVEKIT_SECRET = b"sandbox-livekit-secret"
OPEN_LIMIT = 3


@dataclass
class Behaviour:
    respond_via: str = "event"          # requests answered by "event", "ack" or "both"
    echo_carries_id: bool = False       # support_echo's data holds the new ticket_chat_id
    agent_on_both_channels: bool = True  # agent replies on customer_support AND support
    replay_replies: bool = False        # every reply sent twice (a replayed event)
    sate_delay: float = 0.0             # seconds SATE "thinks" before replying
    silent: bool = False                # accept messages, never echo or answer
    # A busy helpdesk: requests handled one at a time, in arrival order, each taking this
    # many seconds (as a single-worker server would, whatever the connection).
    request_cost: float = 0.0


@dataclass
class SandboxConversation:
    ticket_chat_id: str
    session_id: str
    ticket_id: str
    open: bool = True
    handler: str = "sate"
    agent: dict | None = None
    call: dict | None = None
    messages: list[dict] = field(default_factory=list)
    reads: int = 0
    review: dict | None = None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def envelope(sid: str, message: str, data: Any = None, status: int = 200) -> dict:
    return {"status_code": status, "sid": sid, "message": message,
            "data": {} if data is None else data}


def livekit_token(room: str, identity: str, ttl: int = 3600) -> str:
    """A LiveKit-style access token (JWT, HS256) granting roomJoin for one room."""
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"iss": "sandbox", "sub": identity, "nbf": int(time.time()),
              "exp": int(time.time()) + ttl, "video": {"room": room, "roomJoin": True}}
    payload = b64(json.dumps(claims).encode())
    signature = hmac.new(LIVEKIT_SECRET, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"

