"""A local Slack for the adapter's tests: the Web API (slack-sdk points at it through its
base_url), and the two ways Slack delivers to an app:

- HTTP: events as JSON, slash commands and interactions as form posts, to the app's
  request URL, signed exactly as Slack signs them (`v0:<timestamp>:<body>`, HMAC-SHA256
  with the signing secret, in X-Slack-Signature / X-Slack-Request-Timestamp);
- Socket Mode: `apps.connections.open` hands out a WebSocket URL; the server says `hello`,
  sends envelopes (`envelope_id`, `type`, `payload`) and waits for the app's acks.

Answers have Slack's shapes: `{"ok": true, ...}` with `ts`, `channel`, `message`;
errors as `{"ok": false, "error": "..."}`, `ratelimited` with HTTP 429 and Retry-After.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import mimetypes
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from testing import slack_blocks
from testing.local import serve

TEAM = "T0ACME"
BOT_USER = "U0BRIDGE"
BOT_ID = "B0BRIDGE"


@dataclass
class Call:
    method: str
    params: dict
    team: str | None = None  # the workspace whose token made the call


class SlackError(Exception):
    """Raised by a Web API method: answered as {"ok": false, "error": ...}."""


@dataclass
class Injected:
    error: str
    status: int = 200
    retry_after: int | None = None


def sign(secret: str, timestamp: int, body: bytes) -> str:
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class FakeSlack:
    def __init__(self, bot_token: str, app_token: str = "", signing_secret: str = "") -> None:
        self.bot_token, self.app_token, self.signing_secret = bot_token, app_token, signing_secret
        self.calls: list[Call] = []
        self.errors: dict[str, list[Injected]] = {}
        self.messages: dict[str, list[dict]] = {}     # channel -> messages, in order
        self.views: list[dict] = []
        self.uploads: dict[str, dict] = {}            # file id -> {"name", "content", ...}
        self.customer_files: dict[str, tuple[str, bytes]] = {}  # id -> (name, content)
        self.responses: list[dict] = []               # what was POSTed to a response_url
        self.ephemerals: list[dict] = []              # chat.postEphemeral, as asked
        self.cdn_requests: list[str] = []             # names asked of /cdn/, in order
        self.acks: dict[str, dict] = {}               # socket mode: envelope id -> ack
        self.app_url = ""                             # HTTP mode: the app's request URL
        self.mode = "http"                            # how say/press/command reach the app
        self.url = ""
        self._ts = itertools.count(1)
        self._events = itertools.count(1)
        self._socket: web.WebSocketResponse | None = None
        self._socket_ready = asyncio.Event()
        self._ack_arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # --- the test's side -------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(client_max_size=1024 ** 3)  # Slack takes uploads up to 1 GB
        app.router.add_route("*", "/api/{method}", self._api)  # some methods are GETs
        app.router.add_put("/upload/{file_id}", self._upload)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/private/{file_id}", self._private_file)
        app.router.add_post("/respond/{id}", self._respond)
        app.router.add_get("/cdn/{name}", self._cdn)
        app.router.add_get("/socket", self._socket_mode)
        self._add_routes(app)
        self._runner, port = await serve(app)
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def _add_routes(self, app: web.Application) -> None:
        """More of Slack, for a subclass."""

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def fail_next(self, method: str, error: str, status: int = 200,
                  retry_after: int | None = None, times: int = 1) -> None:
        self.errors.setdefault(method, []).extend(
            [Injected(error, status, retry_after)] * times)

    def calls_of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    @staticmethod
    def dm(user: str, team: str = TEAM) -> str:
        """The user's DM with the app (DM ids are per workspace)."""
        return ("D" if team == TEAM else f"D{team[-3:]}") + user[1:]

    def next_ts(self) -> str:
        n = next(self._ts)
        return f"{1_700_000_000 + n}.{n:06d}"

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate()
            if found:
                return found
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out after {timeout}s; messages: {self.messages}")

    def find(self, user: str, needle: str, team: str = TEAM) -> dict | None:
        return next((m for m in self.messages.get(self.dm(user, team), [])
                     if needle in m["text"] or needle in shown_text(m)), None)

    async def wait_for_text(self, user: str, needle: str, timeout: float = 10.0,
                            team: str = TEAM) -> dict:
        return await self.wait_for(lambda: self.find(user, needle, team), timeout)

    # --- what customers do ---------------------------------------------------------------

    def message_event(self, user: str, text: str, thread_ts: str | None = None,
                      ts: str | None = None, team: str = TEAM, **extra: Any) -> dict:
        ts = ts or self.next_ts()
        channel = self.dm(user, team)
        event = {"type": "message", "channel": channel, "user": user, "text": text,
                 "ts": ts, "event_ts": ts, "channel_type": "im",
                 "client_msg_id": str(uuid.uuid4()), "team": team, **extra}
        if thread_ts:
            event["thread_ts"] = thread_ts
        message = {key: value for key, value in event.items()
                   if key not in ("channel_type", "event_ts")}
        self.messages.setdefault(channel, []).append(message)
        return self.event_body(event, team)

    def bot_user_of(self, _team: str) -> str:
        return BOT_USER

    def event_body(self, event: dict, team: str = TEAM) -> dict:
        """An Events API envelope for the app installed in `team`."""
        return {"token": "legacy-verification-token", "team_id": team, "api_app_id": "A0BRIDGE",
                "event": event, "type": "event_callback",
                "event_id": f"Ev{next(self._events):08d}", "event_time": int(time.time()),
                "authorizations": [{"team_id": team, "user_id": self.bot_user_of(team),
                                    "is_bot": True}]}

    def channel_message(self, user: str, channel: str, text: str,
                        thread_ts: str | None = None, user_team: str = TEAM,
                        channel_type: str = "channel", **extra: Any) -> dict:
        """A message in a channel the app's bot is in, as the Events API sends it; from a
        member of another organisation (user_team) in a Slack Connect channel."""
        ts = self.next_ts()
        event = {"type": "message", "channel": channel, "user": user, "text": text, "ts": ts,
                 "event_ts": ts, "channel_type": channel_type, "team": user_team,
                 "user_team": user_team, "source_team": user_team,
                 "client_msg_id": str(uuid.uuid4()), **extra}
        if thread_ts:
            event["thread_ts"] = thread_ts
        self.messages.setdefault(channel, []).append(
            {k: v for k, v in event.items() if k not in ("channel_type", "event_ts")})
        return {"token": "legacy-verification-token", "team_id": TEAM, "api_app_id": "A0BRIDGE",
                "event": event, "type": "event_callback", "is_ext_shared_channel":
                    user_team != TEAM, "event_id": f"Ev{next(self._events):08d}",
                "event_time": int(time.time()),
                "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}]}

    def in_channel(self, channel: str, needle: str,
                   thread_ts: str | None = None) -> dict | None:
        """The app's message in a channel (in a thread) that shows needle."""
        return next((m for m in self.messages.get(channel, []) if m.get("user") == BOT_USER
                     and (thread_ts is None or m.get("thread_ts") == thread_ts)
                     and (needle in m["text"] or needle in shown_text(m))), None)

    def press_payload(self, user: str, message: dict, index: int,
                      channel: str | None = None) -> dict:
        buttons = buttons_of(message)
        button = buttons[index]
        return {"type": "block_actions", "team": {"id": TEAM, "domain": "acme"},
                "user": {"id": user, "username": user.lower(), "team_id": TEAM},
                "api_app_id": "A0BRIDGE", "token": "legacy-verification-token",
                "container": {"type": "message", "message_ts": message["ts"],
                              "channel_id": channel or message["channel"], "is_ephemeral": False},
                "trigger_id": f"{next(self._events)}.trigger", "channel": {
                    "id": channel or message["channel"], "name": "directmessage"},
                "message": message, "response_url": f"{self.url}/respond/{uuid.uuid4().hex}",
                "actions": [{"type": "button", "action_id": button["action_id"],
                             "block_id": button["block_id"], "text": button["text"],
                             "value": button.get("value"), "action_ts": str(time.time())}]}

    def command_form(self, user: str, text: str, command: str = "/support",
                     channel: str = "C0GENERAL") -> dict:
        return {"token": "legacy-verification-token", "team_id": TEAM, "team_domain": "acme",
                "channel_id": channel, "channel_name": channel.lower(), "user_id": user,
                "user_name": user.lower(), "command": command, "text": text,
                "api_app_id": "A0BRIDGE", "is_enterprise_install": "false",
                "response_url": f"{self.url}/respond/{uuid.uuid4().hex}",
                "trigger_id": f"{next(self._events)}.trigger"}

    def view_submission(self, user: str, view: dict, typed: str) -> dict:
        block = next(b for b in view["blocks"] if b["type"] == "input")
        state = {block["block_id"]: {block["element"]["action_id"]: {
            "type": "plain_text_input", "value": typed or None}}}
        return {"type": "view_submission", "team": {"id": TEAM, "domain": "acme"},
                "user": {"id": user, "username": user.lower(), "team_id": TEAM},
                "api_app_id": "A0BRIDGE", "token": "legacy-verification-token",
                "trigger_id": f"{next(self._events)}.trigger",
                "view": {**view, "id": f"V{next(self._events):08d}", "team_id": TEAM,
                         "state": {"values": state}, "hash": uuid.uuid4().hex}}

    # --- a customer's actions, delivered by HTTP or Socket Mode (self.mode) --------------

    async def say(self, user: str, text: str, thread_ts: str | None = None, **extra: Any) -> dict:
        """The customer writes in their DM with the app; returns the event sent."""
        body = self.message_event(user, text, thread_ts, **extra)
        await self.send(body)
        return body

    async def send(self, body: dict) -> None:
        """An Events API envelope, by HTTP or Socket Mode."""
        await self._deliver("events_api", body, "event")

    async def say_in_channel(self, user: str, channel: str, text: str, **options: Any) -> dict:
        """A person writes in a channel; returns the event sent."""
        body = self.channel_message(user, channel, text, **options)
        await self._deliver("events_api", body, "event")
        return body

    async def press(self, user: str, message: dict, index: int, **options: Any) -> None:
        await self._deliver("interactive", self.press_payload(user, message, index, **options),
                            "interaction")

    async def command(self, user: str, text: str = "", **options: Any) -> None:
        await self._deliver("slash_commands", self.command_form(user, text, **options), "form")

    async def submit(self, user: str, view: dict, typed: str) -> None:
        await self._deliver("interactive", self.view_submission(user, view, typed),
                            "interaction")

    async def _deliver(self, envelope_type: str, body: dict, http_kind: str) -> None:
        if self.mode == "socket":
            await self.send_envelope(envelope_type, body)
            return
        send = {"event": self.send_event, "form": self.send_form,
                "interaction": self.send_interaction}[http_kind]
        status, text = await send(body)
        assert status == 200, f"the app answered {status}: {text}"

    # --- delivering to the app: HTTP --------------------------------------------------

    async def post_signed(self, body: bytes, content_type: str, timestamp: int | None = None,
                          signature: str | None = None, headers: dict | None = None
                          ) -> tuple[int, str]:
        timestamp = int(time.time()) if timestamp is None else timestamp
        all_headers = {"Content-Type": content_type,
                       "X-Slack-Request-Timestamp": str(timestamp),
                       "X-Slack-Signature": signature or sign(self.signing_secret, timestamp,
                                                              body),
                       **(headers or {})}
        async with aiohttp.ClientSession() as session:
            async with session.post(self.app_url, data=body, headers=all_headers) as response:
                return response.status, await response.text()

    async def send_event(self, body: dict, **options: Any) -> tuple[int, str]:
        return await self.post_signed(json.dumps(body).encode(), "application/json", **options)

    async def send_form(self, form: dict, **options: Any) -> tuple[int, str]:
        return await self.post_signed(urlencode(form).encode(),
                                      "application/x-www-form-urlencoded", **options)

    async def send_interaction(self, payload: dict, **options: Any) -> tuple[int, str]:
        return await self.send_form({"payload": json.dumps(payload)}, **options)

    # --- delivering to the app: Socket Mode -------------------------------------------

    async def wait_for_socket(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._socket_ready.wait(), timeout)

    async def send_envelope(self, kind: str, payload: dict, timeout: float = 10.0) -> dict:
        """Send one envelope over the app's socket; returns its ack."""
        await self.wait_for_socket(timeout)
        envelope_id = str(uuid.uuid4())
        await self._socket.send_json({
            "envelope_id": envelope_id, "type": kind, "payload": payload,
            "accepts_response_payload": kind != "events_api", "retry_attempt": 0,
            "retry_reason": ""})
        return await self.wait_for(lambda: self.acks.get(envelope_id), timeout)

    async def _socket_mode(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._socket = socket
        await socket.send_json({"type": "hello", "num_connections": 1, "debug_info": {
            "host": "fake-slack", "approximate_connection_time": 18060},
            "connection_info": {"app_id": "A0BRIDGE"}})
        self._socket_ready.set()
        async for frame in socket:
            if frame.type == aiohttp.WSMsgType.TEXT:
                ack = json.loads(frame.data)
                if "envelope_id" in ack:
                    self.acks[ack["envelope_id"]] = ack
        self._socket_ready.clear()
        return socket

    # --- the Web API ---------------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict:
        """slack-sdk sends some methods' arguments as JSON, others as a form or a query."""
        params = dict(request.query)
        if request.method == "GET":
            pass
        elif request.content_type == "application/json":
            params.update(await request.json())
        else:
            params.update(await request.post())
        return params

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        self.caller_team = self._authorized(method, request)
        self.calls.append(Call(method, params, self.caller_team))
        if self.caller_team is None:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        injected = self.errors.get(method)
        if injected:
            error = injected.pop(0)
            headers = {"Retry-After": str(error.retry_after)} if error.retry_after else {}
            return web.json_response({"ok": False, "error": error.error},
                                     status=error.status, headers=headers)
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        try:
            return web.json_response({"ok": True, **handler(params)})
        except SlackError as error:
            return web.json_response({"ok": False, "error": str(error)})

    def _authorized(self, method: str, request: web.Request) -> str | None:
        """The workspace the request's token speaks for; None: not a token we know."""
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        expected = self.app_token if method == "apps.connections.open" else self.bot_token
        return TEAM if token == expected else None

    def _auth_test(self, _params: dict) -> dict:
        return {"url": "https://acme.slack.com/", "team": "ACME", "user": "helpdesk",
                "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID, "is_enterprise_install": False}

    def _apps_connections_open(self, _params: dict) -> dict:
        return {"url": self.url.replace("http://", "ws://") + "/socket"}

    def _conversations_open(self, params: dict) -> dict:
        return {"no_op": True, "already_open": True,
                "channel": {"id": self.dm(params["users"], self.caller_team or TEAM)}}

    def _chat_postMessage(self, params: dict) -> dict:
        _check_blocks(params)
        ts = self.next_ts()
        message = {"type": "message", "user": BOT_USER, "bot_id": BOT_ID, "ts": ts,
                   "channel": params["channel"], "text": params.get("text", ""),
                   "blocks": _json(params.get("blocks")) or []}
        if params.get("thread_ts"):
            message["thread_ts"] = params["thread_ts"]
        self.messages.setdefault(params["channel"], []).append(message)
        shown = {k: v for k, v in message.items() if k != "channel"}
        return {"channel": params["channel"], "ts": ts, "message": shown}

    def _chat_update(self, params: dict) -> dict:
        _check_blocks(params)
        for message in self.messages.get(params["channel"], []):
            if message["ts"] == params["ts"]:
                message["text"] = params.get("text", message["text"])
                if "blocks" in params:
                    message["blocks"] = _json(params["blocks"]) or []
                message["edited"] = {"user": BOT_USER, "ts": self.next_ts()}
                return {"channel": params["channel"], "ts": params["ts"],
                        "text": message["text"], "message": dict(message)}
        raise SlackError("message_not_found")

    def _conversations_replies(self, params: dict) -> dict:
        thread = params["ts"]
        found = [m for m in self.messages.get(params["channel"], [])
                 if m["ts"] == thread or m.get("thread_ts") == thread]
        if not found:
            raise SlackError("thread_not_found")
        return {"messages": found[:int(params.get("limit") or 1000)], "has_more": False}

    def _chat_postEphemeral(self, params: dict) -> dict:
        self.ephemerals.append(params)
        return {"message_ts": self.next_ts()}

    def _views_open(self, params: dict) -> dict:
        view = _json(params["view"])
        self.views.append({**view, "trigger_id": params["trigger_id"]})
        return {"view": {**view, "id": f"V{next(self._events):08d}"}}

    def _files_getUploadURLExternal(self, params: dict) -> dict:
        file_id = f"F{next(self._events):08d}"
        self.uploads[file_id] = {"name": params["filename"], "length": int(params["length"])}
        return {"upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}

    def _files_completeUploadExternal(self, params: dict) -> dict:
        files = _json(params["files"])
        for item in files:
            self.uploads[item["id"]].update(channel=params.get("channel_id"),
                                            thread_ts=params.get("thread_ts"),
                                            title=item.get("title"), completed=True)
        return {"files": [{"id": item["id"], "title": item.get("title")} for item in files]}

    def _files_info(self, params: dict) -> dict:
        name, content = self.customer_files[params["file"]]
        mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return {"file": {"id": params["file"], "name": name, "mimetype": mimetype,
                         "size": len(content),
                         "url_private": f"{self.url}/private/{params['file']}",
                         "url_private_download": f"{self.url}/private/{params['file']}"}}

    async def _upload(self, request: web.Request) -> web.Response:
        upload = self.uploads[request.match_info["file_id"]]
        upload["content"] = await request.read()
        return web.Response(text=f"OK - {len(upload['content'])}")

    async def _private_file(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.bot_token}":
            return web.Response(status=302, headers={"Location": "https://acme.slack.com/"})
        name, content = self.customer_files[request.match_info["file_id"]]
        return web.Response(body=content, content_type=mimetypes.guess_type(name)[0]
                            or "application/octet-stream")

    async def _cdn(self, request: web.Request) -> web.Response:
        """Somewhere else on the internet: where the helpdesk keeps an agent's files.
        `big-N.bin` is N bytes (pattern(N)); `redirect` sends the client to ?to=."""
        name = request.match_info["name"]
        self.cdn_requests.append(name)
        if name.startswith("missing"):
            return web.Response(status=404)
        if name == "redirect":
            return web.Response(status=302, headers={"Location": request.query["to"]})
        if name.startswith("big-"):
            return web.Response(body=pattern(int(name[4:].split(".")[0])))
        return web.Response(body=f"contents of {name}".encode())

    async def _respond(self, request: web.Request) -> web.Response:
        self.responses.append(await request.json())
        return web.Response(text="ok")


def pattern(size: int) -> bytes:
    """size bytes that are not all alike, so a cut or shuffled copy does not compare equal."""
    block = bytes(range(251))  # a prime length: no power-of-two buffer lines up with it
    return (block * (size // len(block) + 1))[:size]


def shown_text(message: dict) -> str:
    """The words a Slack client shows for a message's blocks (the texts of its sections,
    headers, context lines, rich-text elements and buttons), in order."""
    def texts(value) -> list[str]:
        if isinstance(value, list):
            return [t for v in value for t in texts(v)]
        if not isinstance(value, dict):
            return []
        own = [value["text"]] if isinstance(value.get("text"), str) else []
        return own + texts(value.get("text")) + texts(value.get("elements"))
    return "".join(texts(message.get("blocks", [])))


def buttons_of(message: dict) -> list[dict]:
    return [{**element, "block_id": block.get("block_id", "")}
            for block in message.get("blocks", []) if block["type"] == "actions"
            for element in block["elements"]]


def _check_blocks(params: dict) -> None:
    if "blocks" in params and slack_blocks.problems(_json(params["blocks"]) or []):
        raise SlackError("invalid_blocks")


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
