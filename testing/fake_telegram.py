"""A local HTTP server that speaks the Telegram Bot API, for the adapter's tests.

python-telegram-bot points at it through its base URL. Requests arrive as PTB sends them
(form fields whose values are JSON-encoded); answers have Telegram's shapes: `ok`/`result`,
users with `is_bot`, dates in seconds, `chat_instance` in callback queries, and errors as
`{"ok": false, "error_code", "description", "parameters": {"retry_after"}}`.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from testing import telegram_entities
from testing.local import serve

BOT_ID = 777000111
JPEG = b"\xff\xd8 jpeg \xff\xd9"


@dataclass
class Call:
    method: str
    params: dict


@dataclass
class Injected:
    status: int
    description: str
    retry_after: int | None = None


class FakeTelegram:
    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.updates: list[dict] = []
        self.errors: dict[str, list[Injected]] = {}
        self.sent: dict[int, dict[int, dict]] = {}   # chat id -> message id -> message
        self.stored_at: dict[tuple[int, int], float] = {}  # (chat id, message id) -> monotonic
        self._update_ids = itertools.count(1000)
        self._message_ids = itertools.count(1)
        self._new_update = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.webhook: dict | None = None
        self.latency: dict[str, float] = {}  # method -> seconds it takes to answer
        # file id -> (file_path getFile answers, the content, the file_size it states)
        self.files: dict[str, tuple[str, bytes, int | None]] = {}
        # Topics in private chats (Bot API 9.3): on when getMe says has_topics_enabled.
        self.topics_enabled = False
        self.topics: dict[int, dict[int, dict]] = {}  # chat id -> thread id -> topic
        self._thread_ids = itertools.count(5000)
        self.written: dict[tuple[int, int], dict] = {}  # (chat, message id) -> from a user
        self.chats: dict[int, dict] = {}  # chat id -> as users' messages show it

    # --- the test's side -------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.*}", self._download)
        self._runner, port = await serve(app)
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        self._new_update.set()
        if self._runner:
            await self._runner.cleanup()

    def fail(self, method: str, status: int, description: str,
             retry_after: int | None = None, times: int = 1) -> None:
        """The next `times` calls of method answer with this error."""
        self.errors.setdefault(method, []).extend(
            [Injected(status, description, retry_after)] * times)

    @staticmethod
    def user(user_id: int, first_name: str = "Ann", language: str = "en") -> dict:
        return {"id": user_id, "is_bot": False, "first_name": first_name,
                "username": first_name.lower(), "language_code": language}

    @staticmethod
    def private_chat(user_id: int, first_name: str = "Ann") -> dict:
        return {"id": user_id, "type": "private", "first_name": first_name,
                "username": first_name.lower()}

    def push(self, update: dict) -> int:
        """Deliver an update as Telegram would: to the webhook if one is set (retrying
        until it answers 200), otherwise to the next getUpdates."""
        update_id = next(self._update_ids)
        update = {"update_id": update_id, **update}
        for kind in ("message", "business_message"):
            if kind in update:  # what a bot's answer may reply to
                written = update[kind]
                self.written[(written["chat"]["id"], written["message_id"])] = written
                self.chats[written["chat"]["id"]] = written["chat"]
        if self.webhook:
            self._posting = getattr(self, "_posting", asyncio.Lock())
            asyncio.get_running_loop().create_task(self._post_to_webhook(update))
        else:
            self.updates.append(update)
            self._new_update.set()
        return update_id

    async def _post_to_webhook(self, update: dict) -> None:
        import aiohttp

        async with self._posting:  # Telegram sends one chat's updates in order
            async with aiohttp.ClientSession() as http:
                for _attempt in range(5):
                    async with http.post(self.webhook["url"], json=update, headers={
                            "X-Telegram-Bot-Api-Secret-Token": self.webhook["secret_token"]}
                                         ) as response:
                        if response.status == 200:
                            return
                    await asyncio.sleep(0.2)

    def text(self, user_id: int, text: str, first_name: str = "Ann", language: str = "en",
             chat: dict | None = None) -> dict:
        message = {"message_id": next(self._message_ids), "date": int(time.time()),
                   "from": self.user(user_id, first_name, language),
                   "chat": chat or self.private_chat(user_id, first_name), "text": text}
        entities = []
        if text.startswith("/"):
            command = text.split()[0]
            entities.append({"type": "bot_command", "offset": 0, "length": len(command)})
        entities += [{"type": "mention", "offset": len(telegram_entities.utf16(
            text[:found.start()])) // 2, "length": len(found.group())}
            for found in re.finditer(r"(?<![/\w])@\w{5,32}", text)]
        if entities:
            message["entities"] = entities
        return message

    def say(self, user_id: int, text: str, **kwargs: Any) -> int:
        return self.push({"message": self.text(user_id, text, **kwargs)})

    def to_business(self, user_id: int, text: str, connection: str,
                    sender: int | None = None) -> dict:
        """A message in the chat of user with a company's business account (written by
        the user, or by `sender` of the company), as the bot connected to it receives it."""
        message = self.text(sender or user_id, text, chat=self.private_chat(user_id))
        message["business_connection_id"] = connection
        self.push({"business_message": message})
        return message

    def topic_by_user(self, user_id: int, name: str) -> int:
        """A topic the customer opened in their chat with the bot; its thread id."""
        thread = next(self._thread_ids)
        self.topics.setdefault(user_id, {})[thread] = {"name": name, "closed": False}
        return thread

    def say_in_topic(self, user_id: int, thread: int, text: str) -> int:
        message = self.text(user_id, text)
        message.update(message_thread_id=thread, is_topic_message=True)
        return self.push({"message": message})

    def sent_in(self, chat_id: int, thread: int | None) -> list[dict]:
        """What the bot sent in a topic of the chat (None: outside any topic)."""
        return [m for m in self.sent_to(chat_id) if m.get("message_thread_id") == thread]

    def press(self, user_id: int, message: dict, data: str) -> int:
        """A callback query from user on a message the bot sent."""
        return self.push({"callback_query": {
            "id": str(next(self._update_ids)), "from": self.user(user_id),
            "message": message, "chat_instance": "-84123456789", "data": data}})

    def sent_to(self, chat_id: int) -> list[dict]:
        return list(self.sent.get(chat_id, {}).values())

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for(self, predicate, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            await asyncio.sleep(0.02)
        raise AssertionError("the fake Telegram never saw what the test waited for; calls: "
                             + ", ".join(f"{c.method}{c.params}" for c in self.calls[-15:]))

    async def wait_for_text(self, chat_id: int, fragment: str, timeout: float = 10.0) -> dict:
        return await self.wait_for(lambda: next(
            (m for m in self.sent_to(chat_id) if fragment in m.get("text", "")), None), timeout)

    # --- the Bot API -------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        method = request.match_info["method"]
        params = await self._params(request)
        self.calls.append(Call(method, params))
        injected = self.errors.get(method)
        if injected:
            error = injected.pop(0)
            return self._error(error.status, error.description, error.retry_after)
        if method in self.latency:
            await asyncio.sleep(self.latency[method])
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return self._error(404, "Not Found: method not found")
        result = await handler(params)
        if isinstance(result, web.Response):
            return result
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    async def _params(request: web.Request) -> dict:
        if request.content_type == "application/json":
            return await request.json()
        form = await request.post()
        params = {}
        for key, value in form.items():
            if isinstance(value, str):
                try:
                    params[key] = json.loads(value)
                except ValueError:
                    params[key] = value
            else:
                params[key] = {"filename": value.filename}
        return params

    @staticmethod
    def _error(status: int, description: str, retry_after: int | None = None) -> web.Response:
        body = {"ok": False, "error_code": status, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return web.json_response(body, status=status)

    def _bot_user(self) -> dict:
        bot = {"id": BOT_ID, "is_bot": True, "first_name": "Support", "username": "support_bot",
               "can_join_groups": True, "can_read_all_group_messages": False,
               "supports_inline_queries": False}
        if self.topics_enabled:
            bot.update(has_topics_enabled=True, allows_users_to_create_topics=True)
        return bot

    async def _api_getMe(self, _params: dict) -> dict:
        return self._bot_user()

    async def _api_deleteWebhook(self, _params: dict) -> bool:
        self.webhook = None
        return True

    async def _api_setMyCommands(self, _params: dict) -> bool:
        return True

    async def _api_setWebhook(self, params: dict) -> bool:
        self.webhook = params
        return True

    async def _api_getUpdates(self, params: dict) -> list[dict]:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        deadline = time.monotonic() + min(timeout, 2.0)
        while True:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
            if self.updates or time.monotonic() >= deadline:
                return self.updates[:100]
            self._new_update.clear()
            try:
                await asyncio.wait_for(self._new_update.wait(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                pass

    def _store(self, chat_id: int, message: dict) -> dict:
        self.sent.setdefault(chat_id, {})[message["message_id"]] = message
        self.stored_at[(chat_id, message["message_id"])] = time.monotonic()
        return message

    def _message(self, params: dict, **content: Any) -> dict | web.Response:
        chat_id = int(params["chat_id"])
        message = {"message_id": next(self._message_ids), "date": int(time.time()),
                   "from": self._bot_user(), "chat": self._chat(chat_id), **content}
        if params.get("business_connection_id"):  # sent on behalf of a business account
            message["business_connection_id"] = params["business_connection_id"]
        if params.get("message_thread_id"):
            thread = int(params["message_thread_id"])
            if thread not in self.topics.get(chat_id, {}):
                return self._error(400, "Bad Request: message thread not found")
            message.update(message_thread_id=thread, is_topic_message=True)
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        replying = params.get("reply_parameters")
        if replying:
            answered = self.written.get((chat_id, int(replying["message_id"])))
            if answered is None and not replying.get("allow_sending_without_reply"):
                return self._error(400, "Bad Request: message to be replied not found")
            if answered is not None:
                message["reply_to_message"] = answered
        return self._store(chat_id, message)

    def _chat(self, chat_id: int) -> dict:
        """The chat as users' messages showed it (a group), else a private chat."""
        return self.chats.get(chat_id) or self.private_chat(chat_id)

    async def _api_sendMessage(self, params: dict) -> dict | web.Response:
        text = str(params.get("text", ""))
        refused = self._refused_text(text, params)
        if refused is not None:
            return refused
        return self._message(params, text=text, parse_mode=params.get("parse_mode"),
                             **_entities_of(params))

    def _refused_text(self, text: str, params: dict) -> web.Response | None:
        """Telegram's answer to a text it will not show as sent, or None."""
        if len(telegram_entities.utf16(text)) // 2 > telegram_entities.MAX_LENGTH:
            return self._error(400, "Bad Request: message is too long")
        if params.get("parse_mode") == "HTML" and not _balanced_html(text):
            return self._error(400, "Bad Request: can't parse entities: Unexpected end tag")
        if "entities" in params:
            found = telegram_entities.problems(text, _entities_of(params).get("entities", []))
            if found:
                return self._error(400, f"Bad Request: can't parse entities: {found[0]}")
        return None

    async def _api_editMessageText(self, params: dict) -> dict | web.Response:
        chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
        message = self.sent.get(chat_id, {}).get(message_id)
        if message is None:
            return self._error(400, "Bad Request: message to edit not found")
        refused = self._refused_text(str(params["text"]), params)
        if refused is not None:
            return refused
        message["text"] = str(params["text"])
        message.pop("entities", None)
        message.update(_entities_of(params))
        message["edit_date"] = int(time.time())
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        else:
            message.pop("reply_markup", None)
        return message

    async def _api_editMessageReplyMarkup(self, params: dict) -> dict | web.Response:
        chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
        message = self.sent.get(chat_id, {}).get(message_id)
        if message is None:
            return self._error(400, "Bad Request: message to edit not found")
        message.pop("reply_markup", None)
        return message

    async def _api_getFile(self, params: dict) -> dict:
        path, content, size = self.files.get(
            params["file_id"], (f"photos/{params['file_id']}.jpg", JPEG, len(JPEG)))
        found = {"file_id": params["file_id"], "file_unique_id": "uniq", "file_path": path}
        return {**found, "file_size": size} if size is not None else found

    async def _download(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=404)
        path = request.match_info["path"]
        self.calls.append(Call("download", {"path": path}))
        content = next((c for p, c, _size in self.files.values() if p == path), JPEG)
        return web.Response(body=content, content_type="image/jpeg")

    async def _api_createForumTopic(self, params: dict) -> dict | web.Response:
        chat_id = int(params["chat_id"])
        if chat_id > 0 and not self.topics_enabled:
            return self._error(400, "Bad Request: BOT_FORUM_CREATE_FORBIDDEN")
        name = str(params["name"])
        if not 1 <= len(name) <= 128:
            return self._error(400, "Bad Request: TOPIC_TITLE_EMPTY")
        thread = next(self._thread_ids)
        self.topics.setdefault(chat_id, {})[thread] = {"name": name, "closed": False}
        return {"message_thread_id": thread, "name": name, "icon_color": 7322096}

    def _topic(self, params: dict) -> dict | None:
        return self.topics.get(int(params["chat_id"]), {}).get(int(params["message_thread_id"]))

    async def _api_editForumTopic(self, params: dict) -> bool | web.Response:
        topic = self._topic(params)
        if topic is None:
            return self._error(400, "Bad Request: message thread not found")
        topic["name"] = str(params.get("name") or topic["name"])
        return True

    async def _api_closeForumTopic(self, params: dict) -> bool | web.Response:
        topic = self._topic(params)
        if topic is None:
            return self._error(400, "Bad Request: message thread not found")
        topic["closed"] = True
        return True

    async def _api_answerCallbackQuery(self, _params: dict) -> bool:
        return True

    async def _api_sendChatAction(self, _params: dict) -> bool:
        return True

    async def _api_sendPhoto(self, params: dict) -> dict:
        return self._message(params, photo=[{"file_id": "p1", "file_unique_id": "u1",
                                             "width": 1, "height": 1}],
                             caption=params.get("caption"), source=params.get("photo"))

    async def _api_sendDocument(self, params: dict) -> dict:
        return self._message(params, document={"file_id": "d1", "file_unique_id": "u2"},
                             caption=params.get("caption"), source=params.get("document"))

    async def _api_sendVideo(self, params: dict) -> dict:
        return self._message(params, video={"file_id": "v1", "file_unique_id": "u3",
                                            "width": 1, "height": 1, "duration": 1},
                             caption=params.get("caption"), source=params.get("video"))

    async def _api_sendAudio(self, params: dict) -> dict:
        return self._message(params, audio={"file_id": "a1", "file_unique_id": "u4",
                                            "duration": 1},
                             caption=params.get("caption"), source=params.get("audio"))

    async def _api_sendVoice(self, params: dict) -> dict:
        return self._message(params, voice={"file_id": "o1", "file_unique_id": "u5",
                                            "duration": 1},
                             caption=params.get("caption"), source=params.get("voice"))


def _entities_of(params: dict) -> dict:
    entities = params.get("entities")
    if isinstance(entities, str):
        entities = json.loads(entities)
    return {"entities": entities} if entities else {}


def _balanced_html(text: str) -> bool:
    """Roughly what Telegram checks: tags it knows, properly nested, entities escaped."""
    import re

    stack = []
    for closing, name in re.findall(r"<(/?)([a-zA-Z-]+)[^>]*>", text):
        if name not in {"b", "i", "u", "s", "code", "pre", "a", "tg-spoiler", "blockquote"}:
            return False
        if closing:
            if not stack or stack.pop() != name:
                return False
        else:
            stack.append(name)
    stripped = re.sub(r"<[^>]*>", "", text)
    return not stack and "<" not in stripped and ">" not in stripped and not re.search(
        r"&(?!(lt|gt|amp|quot);)", stripped)
