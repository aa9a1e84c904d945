"""Voice calls as the call page follows them: each conversation's latest call and its
state, and the page's link. (The page itself: bridge/callpage.py.)

The link carries the LiveKit token in its fragment, which browsers never send to a server,
and a sealed, expiring `end` reference to one call of one conversation: an old link cannot
end a newer call. Which call is the latest is kept in memory, so after a restart an old
link can end the live one (docs/security.md).
"""
from __future__ import annotations

import hashlib
from urllib.parse import urlencode

from cachetools import LRUCache

from bridge.http import HttpServer
from bridge.protocol import CallStarted

LINK_TTL = 24 * 3600  # seconds a call page may end its call
REMEMBERED = 10_000   # conversations whose latest call is kept


def call_key(ticket_call_id: str) -> str:
    """A short, dot-free name for a call, for the sealed `end` reference."""
    return hashlib.sha256(ticket_call_id.encode()).hexdigest()[:16]


class Calls:
    def __init__(self, http: HttpServer, public_url: str) -> None:
        self._http = http
        self._public_url = public_url.rstrip("/")
        # conversation id -> (its latest call's key, "live" | "closed" | "sate_left")
        self._latest: LRUCache[int, tuple[str, str]] = LRUCache(REMEMBERED)

    def started(self, conversation_id: int, call: CallStarted) -> str:
        """The call is live; returns the page's link for it."""
        self._set(conversation_id, "live", call.ticket_call_id)
        end = self._http.seal(f"{conversation_id}-{call_key(call.ticket_call_id)}", LINK_TTL)
        return f"{self._public_url}/call#" + urlencode(
            {"room": call.room, "token": call.token, "end": end})

    def ended(self, conversation_id: int, reason: str, ticket_call_id: str | None) -> None:
        """The helpdesk ended a call ("closed", "sate_left"): the latest one, or the one
        named (an end naming an older call changes nothing)."""
        self._set(conversation_id, reason, ticket_call_id)

    def state(self, conversation_id: int, key: str) -> str | None:
        """"live", "closed" or "sate_left" for the page of call `key`; "closed" when a newer
        call has started since; None if this run has not seen it."""
        latest = self._latest.get(conversation_id)
        if latest is None:
            return None
        return latest[1] if latest[0] == key else "closed"

    def end(self, conversation_id: int, key: str) -> bool:
        """The page of call `key` asks to end it: True when close_call_support must be sent
        (the call is still the latest and live, or this run never saw it)."""
        if self.state(conversation_id, key) in ("closed", "sate_left"):
            return False
        self._set(conversation_id, "closed", None)
        return True

    def _set(self, conversation_id: int, state: str, ticket_call_id: str | None) -> None:
        key = call_key(ticket_call_id) if ticket_call_id else None
        latest = self._latest.get(conversation_id)
        if state != "live" and latest is not None and key not in (None, latest[0]):
            return
        self._latest[conversation_id] = (key or (latest[0] if latest else ""), state)
