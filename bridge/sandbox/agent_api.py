"""The sandbox helpdesk's HTTP API for the agent's side, under /sandbox/: what an agent
or an admin does, for scripts and for `helpdesk-bridge sandbox` users."""
from __future__ import annotations

from dataclasses import asdict, fields
from typing import TYPE_CHECKING

from aiohttp import web

from bridge.sandbox.wire import Behaviour

if TYPE_CHECKING:
    from bridge.sandbox.helpdesk import SandboxHelpdesk


def add_agent_api(app: web.Application, sandbox: "SandboxHelpdesk") -> None:
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

    route("agent/reply", lambda b: sandbox.agent_reply(b["ticket_chat_id"], b["message"],
                                                    b.get("attachment_metadata")))
    route("agent/takeover", lambda b: sandbox.take_over(b["ticket_chat_id"], b.get("username")))
    route("agent/suggest-close", lambda b: sandbox.suggest_close(b["ticket_chat_id"]))
    route("agent/auto-close", lambda b: sandbox.auto_close(b["ticket_chat_id"]))
    route("agent/sate-left-call", lambda b: sandbox.sate_left_call(b["ticket_chat_id"]))
    route("admin/drop-connections", lambda b: sandbox.drop_connections())
    route("admin/emit", lambda b: sandbox.emit_raw(b["event"], b["payload"], b.get("room")))

    async def set_behaviour(body: dict) -> dict:
        known = {f.name for f in fields(Behaviour)}
        for key, value in body.items():
            if key not in known:
                raise KeyError(key)
            setattr(sandbox.behaviour, key, value)
        return asdict(sandbox.behaviour)

    route("admin/behaviour", set_behaviour)

    async def state(_request: web.Request) -> web.Response:
        return web.json_response({
            "conversations": {k: asdict(v) for k, v in sandbox.conversations.items()},
            "received": sandbox.received, "connects": sandbox.connects})

    app.router.add_get("/sandbox/state", state)
