"""The Slack adapter: a slack-bolt AsyncApp inside the bridge's event loop.

Receiving: Socket Mode (the app-level token; no public URL), or the Events API and
interactivity on the daemon's HTTP server at /slack/events (Bolt verifies the signing
secret and refuses requests older than 5 minutes). Bolt runs with
process_before_response, so Slack's ack goes out only after the core has stored what the
request carried: a crash before that makes Slack retry, never lose it. Storing takes
milliseconds; the helpdesk is reached later, by the core's queue, well after the ack.

Each helpdesk conversation is a thread in the customer's DM with the app: a top-level
message continues the active conversation (or starts one, threaded under that message);
a reply in a thread goes to that thread's conversation; `/support` starts a new one.
"""
from __future__ import annotations

import asyncio
import logging
import re
from functools import partial

import aiohttp
from aiohttp import web
from cachetools import LRUCache
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import blocks, inbound, rich_text
from adapters.slack.errors import BLOCKS_REFUSED, delivery_error, error_code
from adapters.slack.files import FILES_PATH, SlackFiles
from adapters.slack.form_body import read_form_body_again
from adapters.slack.inbound import team_of
from adapters.slack.settings import SlackSettings
from bridge.adapter import Adapter, DeliveryError, EditTargetGone, Sink
from bridge.events import ChatUser, Outgoing, comment_action
from bridge.http import HttpServer
from bridge.pacing import Pacer

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
CHANNEL_BURST = 3   # messages; then about one a second per channel, as Slack asks
REMEMBERED = 10_000  # recent event ids and DM channels kept in memory
COMMENT_TITLE, COMMENT_LABEL, COMMENT_SUBMIT = "Your feedback", "Anything to add? (optional)", "Send"


class SlackAdapter(Adapter):
    name = "slack"
    Settings = SlackSettings
    threads = True

    def __init__(self, settings: SlackSettings, *, app: AsyncApp | None = None,
                 **_options) -> None:
        self.settings = settings
        self.client = AsyncWebClient(
            token=settings.bot_token.get_secret_value(), base_url=_with_slash(settings.api_url),
            logger=logging.getLogger("slack_sdk.web"),
            # Slack's Retry-After is waited once inside the call; a second 429 comes back
            # to the core, which keeps the message queued for the time Slack asked.
            retry_handlers=[AsyncConnectionErrorRetryHandler(max_retry_count=1),
                            AsyncRateLimitErrorRetryHandler(max_retry_count=1),
                            AsyncServerErrorRetryHandler(max_retry_count=1)])
        self.app = app or AsyncApp(
            client=self.client, process_before_response=True,
            signing_secret=settings.signing_secret.get_secret_value()
            if settings.signing_secret else None,
            logger=logging.getLogger("slack_bolt"))
        self._register(self.app)
        self._sink: Sink = _not_started
        self._http: HttpServer | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._seen_events: LRUCache[str, None] = LRUCache(REMEMBERED)
        self._dm_channels: LRUCache[str, str] = LRUCache(REMEMBERED)
        self._pacer = Pacer(burst=CHANNEL_BURST)
        self._files = SlackFiles(self.client, settings, self._pacer)
        self.bot_user_id = ""
        self.team = ""

    # --- running -----------------------------------------------------------------

    def _register(self, app: AsyncApp) -> None:
        app.use(read_form_body_again)  # before any listener: see form_body.py
        app.event("message", matchers=[self._wants_message])(self._on_message)
        app.command(self.settings.command)(self._on_command)
        app.action(re.compile(r"^helpdesk\."))(self._on_action)
        app.view(blocks.COMMENT_MODAL)(self._on_comment)

    async def start(self, sink: Sink, http: HttpServer | None = None) -> None:
        self._sink = sink
        self._http = http
        if http is not None:
            http.serve_files(FILES_PATH, self._files.fetch)
        identity = await self.client.auth_test()
        self.bot_user_id, self.team = identity.get("user_id", ""), identity.get("team_id", "")
        if self.settings.mode == "http":
            if http is None:
                raise RuntimeError('[slack] mode = "http" needs the HTTP server')
            http.route("POST", EVENTS_PATH, self._on_http)
        elif self.settings.mode == "socket":
            self._socket = AsyncSocketModeHandler(
                self.app, self.settings.app_token.get_secret_value(), web_client=self.client,
                logger=logging.getLogger("slack_sdk.socket_mode"))
            await self._socket.connect_async()
        log.info("slack: receiving by %s as %s in team %s", self.settings.mode,
                 self.bot_user_id, self.team)

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None

    def command_hint(self, name: str) -> str:
        word = {"new": "", "conversations": " list"}.get(name, f" {name}")
        return f"{self.settings.command}{word}"

    async def check(self) -> tuple[bool, str]:
        try:
            identity = await self.client.auth_test()
        except SlackApiError as error:
            return False, f"slack refused the bot token ({error_code(error)})"
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            return False, f"slack: not reachable ({type(error).__name__})"
        return True, f"slack accepted the bot token (@{identity.get('user')} in " \
                     f"{identity.get('team')})"

    async def _on_http(self, request: web.Request) -> web.Response:
        try:
            bolt_request = await to_bolt_request(request)
        except Exception as error:  # Bolt reads ids itself and trips on some shapes
            log.warning("slack: a request that could not be read was refused (%s)",
                        type(error).__name__)
            return web.Response(status=400, text="not a Slack request")
        return await to_aiohttp_response(await self.app.async_dispatch(bolt_request))

    # --- inbound -----------------------------------------------------------------

    def _remember_event(self, event_id: object) -> None:
        """Slack retries an event it thinks we missed (X-Slack-Retry-Num): once is enough."""
        if isinstance(event_id, str):
            self._seen_events[event_id] = None

    async def _wants_message(self, event: dict) -> bool:
        """Every message event is ours when the app is ours: one left unhandled is answered
        404 (Slack retries it) and logged by Bolt with its text. Embedded, Bolt runs only
        the first listener that matches, so there we match only what is ours."""
        return True

    async def _on_message(self, body: dict, event: dict) -> None:
        if body.get("event_id") in self._seen_events:
            return
        if event.get("channel_type") == "im" and inbound.from_person(event, self.bot_user_id):
            self._remember_dm(event["user"], event.get("channel"))
            found = inbound.message_event(team_of(body), event, self._file_url)
            if found is not None:
                await self._sink(found)
        self._remember_event(body.get("event_id"))  # only once stored: a failure is retried

    async def _on_command(self, ack, body: dict) -> None:
        # A command replayed within Slack's 5 minutes is signed all the same: its
        # trigger_id, unique per invocation, tells it from a new one.
        trigger = body.get("trigger_id") if isinstance(body.get("trigger_id"), str) else ""
        if f"trigger:{trigger}" in self._seen_events:
            await ack()
            return
        user = body.get("user_id", "")
        channel = await self._dm_channel(user)
        for event in inbound.command_events(team_of(body), user, channel, body.get("text") or "",
                                            trigger):
            await self._sink(event)
        if trigger:
            self._remember_event(f"trigger:{trigger}")
        await ack()  # after storing: an error leaves the command un-acked, and Slack says so

    async def _on_action(self, ack, body: dict, action: dict) -> None:
        if action.get("action_id") == blocks.LINK_ACTION:
            await ack()  # a link button: the browser opens it, nothing to do here
            return
        user = (body.get("user") or {}).get("id", "")
        event = inbound.press_event(team_of(body), user, await self._dm_channel(user), action)
        if event is not None:
            await self._sink(event)
        await ack()
        if event is not None and action.get("action_id", "").startswith(
                f"{blocks.ACTION_PREFIX}rating.") and body.get("trigger_id"):
            await self._open_comment_modal(body["trigger_id"], event.action)

    async def _open_comment_modal(self, trigger_id: str, rating_action: str) -> None:
        """Slack's trigger_id lives 3 s: opened right away. If it fails, the comment prompt
        in the thread (write, or Skip) still works."""
        try:
            await self.client.views_open(trigger_id=trigger_id, view=blocks.comment_modal(
                comment_action(rating_action), COMMENT_TITLE, COMMENT_LABEL, COMMENT_SUBMIT))
        except (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError) as error:
            log.info("slack: the comment modal did not open (%s)", error_code(error))

    async def _on_comment(self, ack, body: dict, view: dict) -> None:
        user = (body.get("user") or {}).get("id", "")
        event = inbound.comment_event(team_of(body), user, await self._dm_channel(user), view,
                                      *blocks.COMMENT_INPUT)
        if event is not None:
            await self._sink(event)
        await ack()

    def _remember_dm(self, user: str, channel: object) -> None:
        if isinstance(channel, str):
            self._dm_channels[user] = channel

    async def _dm_channel(self, user: str) -> str:
        """The user's DM with the app, where the bridge answers (a slash command or a
        button may come from anywhere)."""
        channel = self._dm_channels.get(user)
        if channel is None:
            opened = await self.client.conversations_open(users=user)
            channel = opened["channel"]["id"]
            self._remember_dm(user, channel)
        return channel

    def _file_url(self, file_id: str) -> str | None:
        if self._http is None:
            return None
        return self._http.file_link(FILES_PATH, file_id)

    # --- delivery ----------------------------------------------------------------

    async def deliver(self, user: ChatUser, message: Outgoing) -> str | None:
        try:
            return await self._deliver(user.chat_id, message)
        except SlackApiError as error:
            raise delivery_error(error) from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise DeliveryError(f"slack: {type(error).__name__}") from None

    async def _deliver(self, channel: str, message: Outgoing) -> str | None:
        if message.kind == "edit":
            text = message.text or message.edit_original or ""
            fallback, answered = blocks.answered(text)
            try:
                await _plain_if_refused(partial(
                    self.client.chat_update, channel=channel, ts=message.edit_ref,
                    text=fallback), answered)
            except SlackApiError as error:
                if error_code(error) in ("message_not_found", "cant_update_message"):
                    raise EditTargetGone() from None
                raise
            return message.edit_ref
        first = None
        if message.kind == "reply" and message.attachments:
            await self._files.send_attachments(channel, message)
            if not message.text:
                return None
        for fallback, rendered in blocks.render(message):
            await self._pacer.wait(channel)
            posted = await _plain_if_refused(partial(
                self.client.chat_postMessage, channel=channel, text=fallback,
                thread_ts=message.thread, unfurl_links=False, unfurl_media=False), rendered)
            first = first or posted.get("ts")
        # A conversation without a thread yet: its first message becomes its thread.
        message.thread = message.thread or first
        return first


async def _plain_if_refused(send, rendered: list[dict]):
    """send(blocks=rendered); should Slack refuse those blocks, the same words as plain
    text (the words matter more than their look)."""
    try:
        return await send(blocks=rendered)
    except SlackApiError as error:
        if error_code(error) not in BLOCKS_REFUSED:
            raise
        log.warning("slack refused a message's blocks (%s); sent it as plain text",
                    error_code(error))
        return await send(blocks=rich_text.plain_blocks(rendered))

async def _not_started(_event) -> None:
    # Embedded, the company's app may take requests before the bridge has started: the
    # request fails (not acknowledged), and Slack retries it.
    raise RuntimeError("the bridge has not started yet")


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"
