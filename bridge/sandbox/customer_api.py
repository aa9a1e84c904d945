"""The sandbox helpdesk's Socket.IO API: what a customer-side client (the bridge) sends,
and how the helpdesk answers it, SATE's scripted replies included."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import parse_qs

import socketio

from bridge.sandbox.wire import (
    NAMESPACE,
    OPEN_LIMIT,
    SandboxConversation,
    envelope,
    livekit_token,
    now_iso,
)


class CustomerApi:
    """The Socket.IO half of SandboxHelpdesk (its state and agent side are there)."""

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
            if self.behaviour.request_cost:
                async with self._one_at_a_time:
                    await asyncio.sleep(self.behaviour.request_cost)
            self.requests.append((name, data))
            self._trim(self.requests)
            if not isinstance(data, dict):
                return await self._respond(sid, name, envelope(sid, "Bad request", status=400))
            return await handler(sid, data)
        return wrapped

    async def _on_connect(self, sid: str, environ: dict, auth: Any = None) -> None:
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

    async def _not_found(self, sid: str, event: str) -> Any:
        return await self._respond(sid, event, envelope(sid, "Conversation not found", status=404))

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
            return await self._not_found(sid, "enter_support")
        await self.sio.enter_room(sid, ticket_chat_id, namespace=NAMESPACE)
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
                return await self._not_found(sid, "support")
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
            return await self._not_found(sid, "mark_conversation_read")
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
                return await self._not_found(sid, "call_support")
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
            return await self._not_found(sid, "close_call_support")
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
            return await self._not_found(sid, "close_support")
        conversation.open = False
        message = self._message(
            conversation, "Thank you for using our support. Your conversation has been closed.",
            "sate", close_support=True, closed_support=True)
        return await self._respond(sid, "close_support",
                                   envelope(sid, "Support conversation closed", message))

    async def _on_review_support(self, sid: str, data: dict):
        conversation = self.conversations.get(data.get("ticket_chat_id"))
        if conversation is None:
            return await self._not_found(sid, "review_support")
        rating = data.get("rating")
        if rating not in {"1", "2", "3", "4", "5"}:
            return await self._respond(sid, "review_support", envelope(
                sid, 'rating must be one of "1".."5"', status=400))
        conversation.review = {"rating": rating, "review": data.get("review")}
        return await self._respond(sid, "review_support", envelope(
            sid, "Review noted", {**conversation.review, "ticket_chat_id": conversation.ticket_chat_id}))
