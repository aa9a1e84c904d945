"""The sandbox helpdesk: a real Socket.IO server speaking the Eusate Helpdesk API.

Used by the tests, by `helpdesk-bridge demo` and by `helpdesk-bridge sandbox`. It keeps
its state (conversations, what it received) across stop()/start(), so a test can restart
it mid-conversation. The awkward behaviours of the API (docs/protocol.md) are switches in
Behaviour. The agent side is both Python methods and an HTTP API under /sandbox/.

SATE is scripted: a message containing "resolved" makes SATE suggest closing, "human"
hands the conversation to an agent, "bye" makes SATE auto-close it; anything else gets
an answer quoting the message.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import logging
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs

import socketio
from aiohttp import web

from bridge.tasks import Background

log = logging.getLogger(__name__)

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


class SandboxHelpdesk:
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
        self.connects = 0
        self.refused = 0
        self.entered_since_drop: set[str] = set()  # conversation rooms, for bench.scale
        self.connect_attempts: deque[float] = deque(maxlen=10_000)  # time.time() of each
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
        self._add_agent_api(app)
        # No access log: the API key travels in the query string of every request.
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                     shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port if port is not None else (self.port or 0))
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self.url

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
        self.entered_since_drop = set()
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

    # --- the Socket.IO API -------------------------------------------------------

    def _register(self, sio: socketio.AsyncServer) -> None:
        handlers = {
            "enter_customer_support": self._on_enter_customer_support,
            "enter_support": self._on_enter_support,
            "leave_support": self._on_leave_support,
            "support": self._on_support,
            "mark_conversation_read": self._on_mark_read,
            "call_support": self._on_call_support,
            "close_call_support": self._on_close_call_support,
            "close_support": self._on_close_support,
            "review_support": self._on_review_support,
        }
        sio.on("connect", self._on_connect, namespace=NAMESPACE)
        for name, handler in handlers.items():
            sio.on(name, self._recording(name, handler), namespace=NAMESPACE)

    def _recording(self, name: str, handler):
        async def wrapped(sid: str, data: Any = None):
            self.requests.append((name, data))
            self._trim(self.requests)
            if not isinstance(data, dict):
                return await self._respond(sid, name, envelope(sid, "Bad request", status=400))
            return await handler(sid, data)
        return wrapped

    async def _on_connect(self, sid: str, environ: dict, auth: Any = None) -> None:
        self.connect_attempts.append(time.time())
        query = parse_qs(environ.get("QUERY_STRING", ""))
        token = (query.get("token") or [""])[0]
        source = (query.get("token_source") or [""])[0]
        if source != "api" or token not in self.api_keys:
            self.refused += 1
            raise socketio.exceptions.ConnectionRefusedError(
                "Unauthorized", {"status_code": 401, "message": "Invalid API key"})
        self.connects += 1

    async def _respond(self, sid: str, event: str, reply: dict) -> Any:
        """A request's response: a server event, an ack, or both, as configured."""
        if self.behaviour.respond_via in ("event", "both"):
            await self.sio.emit(event, reply, to=sid, namespace=NAMESPACE)
        return self._ack(reply)

    def _ack(self, reply: dict | None) -> Any:
        """What a handler returns: the reply as the acknowledgement, or no acknowledgement
        at all (python-socketio would otherwise send an empty one; a server whose handler
        ignores the callback sends none, and the client must not pile up callbacks)."""
        if reply is not None and self.behaviour.respond_via in ("ack", "both"):
            return reply
        return self.sio.not_handled

    async def _on_enter_customer_support(self, sid: str, data: dict):
        session_id = data.get("session_id")
        if not isinstance(session_id, str) or not session_id:
            return await self._respond(sid, "enter_customer_support",
                                       envelope(sid, "session_id is required", status=400))
        await self.sio.enter_room(sid, f"customer:{session_id}", namespace=NAMESPACE)
        return await self._respond(sid, "enter_customer_support",
                                   envelope(sid, "Joined customer support room"))

    async def _on_enter_support(self, sid: str, data: dict):
        ticket_chat_id = data.get("ticket_chat_id")
        if ticket_chat_id not in self.conversations:
            return await self._respond(sid, "enter_support",
                                       envelope(sid, "Conversation not found", status=404))
        await self.sio.enter_room(sid, ticket_chat_id, namespace=NAMESPACE)
        self.entered_since_drop.add(ticket_chat_id)
        return await self._respond(sid, "enter_support", envelope(sid, "Joined support room"))

    async def _on_leave_support(self, sid: str, data: dict):
        ticket_chat_id = data.get("ticket_chat_id")
        if isinstance(ticket_chat_id, str):
            await self.sio.leave_room(sid, ticket_chat_id, namespace=NAMESPACE)
        return await self._respond(sid, "leave_support", envelope(sid, "Left support room"))

    def _open_count(self, session_id: str) -> int:
        return sum(1 for c in self.session_conversations(session_id) if c.open)

    async def _new_conversation(self, sid: str, session_id: str) -> SandboxConversation:
        number = next(self._ids)
        conversation = SandboxConversation(ticket_chat_id=f"conv_{number:04d}_{uuid.uuid4().hex[:6]}",
                                           session_id=session_id, ticket_id=f"ticket_{number:04d}")
        self.add_conversation(conversation)
        # The opener hears the first reply before it has called enter_support.
        await self.sio.enter_room(sid, conversation.ticket_chat_id, namespace=NAMESPACE)
        return conversation

    async def _on_support(self, sid: str, data: dict):
        session_id, text = data.get("session_id"), data.get("message")
        if not isinstance(session_id, str) or not session_id or not isinstance(text, str) \
                or not isinstance(data.get("attachment", False), bool):
            return await self._respond(sid, "support", envelope(sid, "Bad request", status=400))
        ticket_chat_id = data.get("ticket_chat_id")
        if ticket_chat_id is None:
            if self._open_count(session_id) >= OPEN_LIMIT:
                return await self._respond(sid, "support", envelope(
                    sid, f"A session can have at most {OPEN_LIMIT} open conversations",
                    status=400))
            conversation = await self._new_conversation(sid, session_id)
        else:
            conversation = self.conversations.get(ticket_chat_id)
            if conversation is None or conversation.session_id != session_id:
                return await self._respond(sid, "support",
                                           envelope(sid, "Conversation not found", status=404))
            if not conversation.open:
                return await self._respond(sid, "support",
                                           envelope(sid, "Conversation is closed", status=400))
        self._message(conversation, text, "customer",
                      attachment_metadata=data.get("attachment_metadata"))
        self.received.append({"session_id": session_id, "ticket_chat_id": conversation.ticket_chat_id,
                              "message": text, "attachment_metadata": data.get("attachment_metadata")})
        self._trim(self.received)
        if self.behaviour.silent:
            return self._ack(None)
        echo_data = {"ticket_chat_id": conversation.ticket_chat_id} \
            if self.behaviour.echo_carries_id else {}
        echo = envelope(sid, "support_echo", echo_data)
        if self.behaviour.respond_via in ("event", "both"):
            await self.sio.emit("support_echo", echo, to=sid, namespace=NAMESPACE)
        if conversation.handler == "sate":
            self._tasks.start(self._sate_answer(conversation, text))
        return self._ack(echo)

    async def _sate_answer(self, conversation: SandboxConversation, text: str) -> None:
        if self.behaviour.sate_delay:
            await asyncio.sleep(self.behaviour.sate_delay)
        lowered = text.lower()
        room = conversation.ticket_chat_id
        if "human" in lowered:
            await self._sate_says(conversation, "Let me get a human colleague for you.")
            await self.take_over(room)
            await self.agent_reply(room, f"Hi, {conversation.agent['username']} here. How can I help?")
        elif "resolved" in lowered:
            await self._sate_says(conversation, "Great, glad that's sorted!", close_support=True)
        elif "bye" in lowered:
            await self._sate_says(conversation, "Goodbye!")
            await self.auto_close(room)
        else:
            await self._sate_says(conversation, f'You said: "{text}". What else can I do?')

    async def _sate_says(self, conversation: SandboxConversation, text: str, **flags: bool) -> None:
        data = self._message(conversation, text, "sate", **flags)
        await self._emit("support", envelope("", "Message sent successfully", data),
                         room=conversation.ticket_chat_id)

    async def _on_mark_read(self, sid: str, data: dict):
        conversation = self.conversations.get(data.get("ticket_chat_id"))
        if conversation is None:
            return await self._respond(sid, "mark_conversation_read",
                                       envelope(sid, "Conversation not found", status=404))
        if data.get("entity") != "customer":
            return await self._respond(sid, "mark_conversation_read",
                                       envelope(sid, "entity must be customer", status=400))
        conversation.reads += 1
        return await self._respond(sid, "mark_conversation_read", envelope(sid, "Marked as read"))

    async def _on_call_support(self, sid: str, data: dict):
        session_id = data.get("session_id")
        ticket_chat_id = data.get("ticket_chat_id")
        if not isinstance(session_id, str) or not session_id:
            return await self._respond(sid, "call_support", envelope(sid, "Bad request", status=400))
        if ticket_chat_id is None:
            if self._open_count(session_id) >= OPEN_LIMIT:
                return await self._respond(sid, "call_support", envelope(
                    sid, f"A session can have at most {OPEN_LIMIT} open conversations", status=400))
            conversation = await self._new_conversation(sid, session_id)
        else:
            conversation = self.conversations.get(ticket_chat_id)
            if conversation is None:
                return await self._respond(sid, "call_support",
                                           envelope(sid, "Conversation not found", status=404))
        if conversation.handler != "sate":
            return await self._respond(sid, "call_support", envelope(
                sid, "Voice calls are only available while SATE is handling the conversation",
                status=400))
        if conversation.call is not None:
            return await self._respond(sid, "call_support",
                                       envelope(sid, "A call is already in progress", status=400))
        room = conversation.ticket_chat_id
        conversation.call = {"ticket_call_id": f"call_{uuid.uuid4().hex[:10]}",
                             "call_start_time": now_iso()}
        data = {"token": livekit_token(room, session_id), "room": room, "ticket_chat_id": room,
                **conversation.call}
        reply = envelope(sid, "Call started", data)
        await self._emit("call_support", reply, room=room)
        return reply if self.behaviour.respond_via in ("ack", "both") else None

    async def _on_close_call_support(self, sid: str, data: dict):
        conversation = self.conversations.get(data.get("ticket_chat_id"))
        if conversation is None:
            return await self._respond(sid, "close_call_support",
                                       envelope(sid, "Conversation not found", status=404))
        call = conversation.call or {}
        conversation.call = None
        reply = envelope(sid, "Call ended", {
            "room": conversation.ticket_chat_id, "ticket_chat_id": conversation.ticket_chat_id,
            "ticket_call_id": call.get("ticket_call_id"),
            "call_start_time": call.get("call_start_time"), "call_end_time": now_iso()})
        await self._emit("close_call_support", reply, room=conversation.ticket_chat_id)
        return reply if self.behaviour.respond_via in ("ack", "both") else None

    async def _on_close_support(self, sid: str, data: dict):
        conversation = self.conversations.get(data.get("ticket_chat_id"))
        if conversation is None:
            return await self._respond(sid, "close_support",
                                       envelope(sid, "Conversation not found", status=404))
        conversation.open = False
        message = self._message(
            conversation, "Thank you for using our support. Your conversation has been closed.",
            "sate", close_support=True, closed_support=True)
        return await self._respond(sid, "close_support",
                                   envelope(sid, "Support conversation closed", message))

    async def _on_review_support(self, sid: str, data: dict):
        conversation = self.conversations.get(data.get("ticket_chat_id"))
        if conversation is None:
            return await self._respond(sid, "review_support",
                                       envelope(sid, "Conversation not found", status=404))
        rating = data.get("rating")
        if rating not in {"1", "2", "3", "4", "5"}:
            return await self._respond(sid, "review_support", envelope(
                sid, 'rating must be one of "1".."5"', status=400))
        conversation.review = {"rating": rating, "review": data.get("review")}
        return await self._respond(sid, "review_support", envelope(
            sid, "Review noted", {**conversation.review, "ticket_chat_id": conversation.ticket_chat_id}))

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

    # --- HTTP agent API ----------------------------------------------------------

    def _add_agent_api(self, app: web.Application) -> None:
        async def call(request: web.Request, action) -> web.Response:
            body = await request.json() if request.can_read_body else {}
            try:
                result = await action(body)
            except LookupError as error:
                return web.json_response({"ok": False, "error": str(error)}, status=404)
            except (KeyError, TypeError) as error:
                return web.json_response({"ok": False, "error": f"bad request: {error}"}, status=400)
            return web.json_response({"ok": True, "result": result})

        def route(path: str, action) -> None:
            async def handler(request: web.Request) -> web.Response:
                return await call(request, action)
            app.router.add_post(f"/sandbox/{path}", handler)

        route("agent/reply", lambda b: self.agent_reply(b["ticket_chat_id"], b["message"],
                                                        b.get("attachment_metadata")))
        route("agent/takeover", lambda b: self.take_over(b["ticket_chat_id"], b.get("username")))
        route("agent/suggest-close", lambda b: self.suggest_close(b["ticket_chat_id"]))
        route("agent/auto-close", lambda b: self.auto_close(b["ticket_chat_id"]))
        route("agent/sate-left-call", lambda b: self.sate_left_call(b["ticket_chat_id"]))
        route("admin/drop-connections", lambda b: self.drop_connections())
        route("admin/emit", lambda b: self.emit_raw(b["event"], b["payload"], b.get("room")))

        async def set_behaviour(body: dict) -> dict:
            known = {f.name for f in fields(Behaviour)}
            for key, value in body.items():
                if key not in known:
                    raise KeyError(key)
                setattr(self.behaviour, key, value)
            return asdict(self.behaviour)

        route("admin/behaviour", set_behaviour)

        async def state(_request: web.Request) -> web.Response:
            return web.json_response({
                "conversations": {k: asdict(v) for k, v in self.conversations.items()},
                "received": self.received, "connects": self.connects})

        app.router.add_get("/sandbox/state", state)

        async def rooms(_request: web.Request) -> web.Response:
            """Counts every room's members: read once after a re-join, not polled (poll
            /sandbox/rejoined for that)."""
            joined = self.sio.manager.rooms.get(NAMESPACE, {})
            return web.json_response({
                "conversation_rooms_joined": sum(1 for room, members in joined.items()
                                                 if members and room in self.conversations),
                "connect_attempts": list(self.connect_attempts)})

        app.router.add_get("/sandbox/rooms", rooms)

        async def rejoined(_request: web.Request) -> web.Response:
            """Conversation rooms entered since the last drop: cheap enough to poll every
            20 ms while 10,000 are re-joined (/sandbox/rooms counts every room's members,
            and polling it took a fifth of the sandbox's CPU in that window)."""
            return web.json_response({"conversation_rooms": len(self.entered_since_drop)})

        app.router.add_get("/sandbox/rejoined", rejoined)
