"""The sandbox helpdesk: a real Socket.IO server speaking the Eusate Helpdesk API.

Used by the tests, by `helpdesk-bridge demo` and by `helpdesk-bridge sandbox`. It keeps
its state (conversations, what it received) across stop()/start(), so a test can restart
it mid-conversation. The awkward behaviours of the API (docs/protocol.md) are switches in
Behaviour. The agent side is both Python methods (here) and an HTTP API under /sandbox/
(agent_api.py); the Socket.IO API the bridge speaks to is customer_api.py.

SATE is scripted: a message containing "resolved" makes SATE suggest closing, "human"
hands the conversation to an agent, "bye" makes SATE auto-close it; anything else gets
an answer quoting the message.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from typing import Any

import socketio
from aiohttp import web

from bridge.sandbox.agent_api import add_agent_api
from bridge.sandbox.customer_api import CustomerApi
from bridge.sandbox.wire import (
    DEFAULT_API_KEY,
    NAMESPACE,
    Behaviour,
    SandboxConversation,
    envelope,
    now_iso,
)
from bridge.tasks import Background

log = logging.getLogger(__name__)


class SandboxHelpdesk(CustomerApi):
    def __init__(self, api_keys: set[str] | None = None, behaviour: Behaviour | None = None,
                 agent_name: str = "Alice", history: int | None = None) -> None:
        """history: how many received messages and client events to keep (None: all, for
        tests to inspect; `helpdesk-bridge sandbox` keeps the last 10,000 to run for weeks)."""
        self.history = history
        self.api_keys = api_keys or {DEFAULT_API_KEY}
        self.behaviour = behaviour or Behaviour()
        self.agent_name = agent_name
        self.conversations: dict[str, SandboxConversation] = {}
        # by session too: "how many are open for this customer" is asked at every opening,
        # and a scan of all of them made 10,000 openings cost n² (bench/RESULTS.md)
        self._of_session: dict[str, list[SandboxConversation]] = {}
        self.received: list[dict] = []      # every customer message, in arrival order
        self.requests: list[tuple[str, dict]] = []  # every client event, in order
        self._one_at_a_time = asyncio.Lock()  # Behaviour.request_cost
        self.connects = 0
        self.refused = 0
        self.port: int | None = None
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.sio: socketio.AsyncServer | None = None
        self._tasks = Background()  # SATE thinking, agents answering

    # --- lifecycle ---------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _trim(self, log: list) -> None:
        """Keep the last `history` entries; trimmed in halves so an append stays cheap."""
        if self.history is not None and len(log) > 2 * self.history:
            del log[:len(log) - self.history]

    async def start(self, host: str = "127.0.0.1", port: int | None = None) -> str:
        """Serve on port (0 or None: any free one; a restart reuses the last one)."""
        self.sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins=[])
        self._register(self.sio)
        app = web.Application()
        self.sio.attach(app)
        self._serve(app)
        # No access log: the API key travels in the query string of every request.
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                     shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port if port is not None else (self.port or 0))
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self.url

    def _serve(self, app: web.Application) -> None:
        """The HTTP routes beside Socket.IO: the agent's side (bridge/sandbox/agent_api.py)."""
        add_agent_api(app, self)

    async def stop(self) -> None:
        await self._tasks.cancel()
        if self._runner is not None:
            await self.drop_connections()
            await self._runner.cleanup()
            self._runner = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def drop_connections(self) -> None:
        """Cut every client at the Engine.IO level, as a network failure would."""
        for eio_sid in list(self.sio.eio.sockets):
            # A client that has just said goodbye can leave a socket whose disconnect
            # never completes (seen with a bare python-socketio client): don't wait on it.
            try:
                await asyncio.wait_for(self.sio.eio.disconnect(eio_sid), 2)
            except asyncio.TimeoutError:
                pass

    # --- agent side --------------------------------------------------------------

    def _conversation(self, ticket_chat_id: str) -> SandboxConversation:
        try:
            return self.conversations[ticket_chat_id]
        except KeyError:
            raise LookupError(f"no conversation {ticket_chat_id}") from None

    async def agent_reply(self, ticket_chat_id: str, text: str,
                          attachment_metadata: Any = None) -> dict:
        conversation = self._conversation(ticket_chat_id)
        data = self._message(conversation, text, "agent", attachment_metadata=attachment_metadata)
        reply = envelope("", "New message", data)
        await self._emit("customer_support", reply, room=self._customer_room(conversation))
        if self.behaviour.agent_on_both_channels:
            await self._emit("support", reply, room=ticket_chat_id)
        return data

    async def take_over(self, ticket_chat_id: str, username: str | None = None) -> None:
        conversation = self._conversation(ticket_chat_id)
        conversation.handler = "agent"
        conversation.agent = {"id": f"agent_{uuid.uuid4().hex[:8]}",
                              "username": username or self.agent_name}
        data = {"ticket_chat_id": ticket_chat_id, "handler": "agent", "agent": conversation.agent}
        await self._emit("support_handler_changed", envelope("", "Handler changed", data),
                         room=ticket_chat_id)

    async def suggest_close(self, ticket_chat_id: str) -> None:
        conversation = self._conversation(ticket_chat_id)
        data = self._message(conversation, "It looks like your issue is solved.", "sate",
                             close_support=True)
        await self._emit("support", envelope("", "Message sent successfully", data),
                         room=ticket_chat_id)

    async def auto_close(self, ticket_chat_id: str) -> None:
        conversation = self._conversation(ticket_chat_id)
        conversation.open = False
        data = {"ticket_id": conversation.ticket_id, "ticket_chat_id": ticket_chat_id,
                "status": "closed"}
        await self._emit("customer_support_closed", envelope("", "Conversation closed", data),
                         room=self._customer_room(conversation))

    async def sate_left_call(self, ticket_chat_id: str) -> None:
        conversation = self._conversation(ticket_chat_id)
        call_id = conversation.call["ticket_call_id"] if conversation.call else None
        conversation.call = None
        await self._emit("sate_left_call", envelope("", "SATE left the call", {
            "ticket_chat_id": ticket_chat_id, "ticket_call_id": call_id}), room=ticket_chat_id)

    async def emit_raw(self, event: str, payload: Any, room: str | None = None) -> None:
        """Send anything at all (malformed payloads for the tests)."""
        await self.sio.emit(event, payload, namespace=NAMESPACE, room=room)

    def add_conversation(self, conversation: SandboxConversation) -> None:
        """A conversation exists (opened here, or elsewhere: the web widget, in tests)."""
        self.conversations[conversation.ticket_chat_id] = conversation
        self._of_session.setdefault(conversation.session_id, []).append(conversation)

    def session_conversations(self, session_id: str) -> list[SandboxConversation]:
        return list(self._of_session.get(session_id, ()))


    # --- helpers -----------------------------------------------------------------

    def _message(self, conversation: SandboxConversation, text: str, sender: str,
                 attachment_metadata: Any = None, close_support: bool = False,
                 closed_support: bool = False) -> dict:
        stamp = now_iso()
        data = {"message": text, "ticket_chat_id": conversation.ticket_chat_id, "sender": sender,
                "attachment": attachment_metadata is not None,
                "attachment_metadata": attachment_metadata, "close_support": close_support,
                "closed_support": closed_support, "date_created": stamp, "date_updated": stamp}
        conversation.messages.append(data)
        return data

    @staticmethod
    def _customer_room(conversation: SandboxConversation) -> str:
        return f"customer:{conversation.session_id}"

    async def _emit(self, event: str, payload: dict, room: str) -> None:
        await self.sio.emit(event, payload, room=room, namespace=NAMESPACE)
        if self.behaviour.replay_replies:
            await self.sio.emit(event, payload, room=room, namespace=NAMESPACE)
