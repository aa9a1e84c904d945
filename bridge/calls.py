"""Voice calls as the call page follows them: each conversation's latest call and its
state, and the page's link. (The page itself: bridge/callpage.py.)

The link carries the LiveKit token in its fragment, which browsers never send to a server,
and a sealed, expiring `end` reference to one call of one conversation: an old link cannot
end a newer call. Which call is the latest, and its state, are stored with the
conversation: they hold across restarts, and on every daemon of a database.
"""
from __future__ import annotations

import hashlib
from urllib.parse import urlencode

from bridge.http import HttpServer
from bridge.protocol import CallStarted
from bridge.store import Store

LINK_TTL = 24 * 3600  # seconds a call page may end its call


def call_key(ticket_call_id: str) -> str:
    """A short, dot-free name for a call, for the sealed `end` reference."""
    return hashlib.sha256(ticket_call_id.encode()).hexdigest()[:16]


class Calls:
    def __init__(self, store: Store, http: HttpServer, public_url: str) -> None:
        self._store = store
        self._http = http
        self._public_url = public_url.rstrip("/")

    async def started(self, conversation_id: int, call: CallStarted) -> str:
        """The call is live; returns the page's link for it."""
        key = call_key(call.ticket_call_id)
        conversation = await self._store.conversation(conversation_id)
        if conversation is None or conversation.call_key != key:  # not heard before
            await self._store.set_conversation(conversation_id, call_key=key, call_state="live")
        end = self._http.seal(f"{conversation_id}-{key}", LINK_TTL)
        return f"{self._public_url}/call#" + urlencode(
            {"room": call.room, "token": call.token, "end": end})

    async def ended(self, conversation_id: int, reason: str, ticket_call_id: str | None) -> None:
        """The helpdesk ended a call ("closed", "sate_left"): the latest one, or the one
        named (an end naming an older call changes nothing)."""
        await self._store.call_ended(conversation_id, reason,
                                     call_key(ticket_call_id) if ticket_call_id else None)

    async def state(self, conversation_id: int, key: str) -> str | None:
        """"live", "closed" or "sate_left" for the page of call `key`; "closed" when a newer
        call has started since; None if no call of the conversation was recorded."""
        conversation = await self._store.conversation(conversation_id)
        if conversation is None or conversation.call_state is None:
            return None
        return conversation.call_state if conversation.call_key == key else "closed"

    async def end(self, conversation_id: int, key: str) -> bool:
        """The page of call `key` asks to end it: True when close_call_support must be sent
        (the call is still the latest and live, or none was recorded), once."""
        return await self._store.end_call_if_live(conversation_id, key)
