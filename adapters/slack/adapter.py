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

In a support channel (any channel the bot is in, shared ones included; [slack] channels
may list them), each thread is a conversation and the helpdesk's customer: a top-level
message starts one threaded under it, and everything is answered in the thread for the
whole channel to see. Only the person who opened it (or a [slack] channel_admins member)
may close or rate it.
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
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.slack import blocks, inbound, rich_text
from adapters.slack.errors import BLOCKS_REFUSED, delivery_error, error_code
from adapters.slack.files import FILES_PATH, SlackFiles
from adapters.slack.form_body import read_form_body_again
from adapters.slack.inbound import dig, team_of
from adapters.slack.settings import SlackSettings
from adapters.slack.workspaces import ROTATE_BEFORE, NotInstalled, Workspaces
from bridge.adapter import Adapter, DeliveryError, EditTargetGone, Sink
from bridge.events import ButtonPress, ChatUser, InboundMessage, Outgoing, comment_action
from bridge.http import HttpServer
from bridge.pacing import Pacer

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
INSTALL_PATH, REDIRECT_PATH = "/slack/install", "/slack/oauth_redirect"  # Bolt's defaults
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
        self._workspaces = Workspaces(settings, self._new_client)
        self.client = self._workspaces.single  # one workspace: the one bot's client
        self.app = app or self._new_app()
        self._register(self.app)
        self._sink: Sink = _not_started
        self._http: HttpServer | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._seen_events: LRUCache[str, None] = LRUCache(REMEMBERED)
        self._dm_channels: LRUCache[str, str] = LRUCache(REMEMBERED)
        # (channel, thread ts) -> the user who opened that support-channel conversation
        self._openers: LRUCache[tuple[str, str], str] = LRUCache(REMEMBERED)
        self._seen_channels: LRUCache[str, None] = LRUCache(REMEMBERED)  # support channels
        self._pacer = Pacer(burst=CHANNEL_BURST)
        self._files = SlackFiles(self._workspaces, settings, self._pacer)
        self.bot_user_id = ""
        self.team = ""

    # --- running -----------------------------------------------------------------

    def _new_client(self, token: str | None) -> AsyncWebClient:
        return AsyncWebClient(
            token=token, base_url=_with_slash(self.settings.api_url),
            logger=logging.getLogger("slack_sdk.web"),
            # Slack's Retry-After is waited once inside the call; a second 429 comes back
            # to the core, which keeps the message queued for the time Slack asked.
            retry_handlers=[AsyncConnectionErrorRetryHandler(max_retry_count=1),
                            AsyncRateLimitErrorRetryHandler(max_retry_count=1),
                            AsyncServerErrorRetryHandler(max_retry_count=1)])

    def _new_app(self) -> AsyncApp:
        """Bolt, with slack-bolt's OAuth flow for a distributed app: /slack/install, and
        /slack/oauth_redirect saving each workspace's installation (workspaces.py)."""
        settings = self.settings
        oauth = None
        if self._workspaces.distributed:
            oauth = AsyncOAuthSettings(
                client_id=settings.client_id,
                client_secret=settings.client_secret.get_secret_value(),
                scopes=settings.scopes, installation_store=self._workspaces.installations,
                installation_store_bot_only=True, state_store=self._workspaces.states,
                authorization_url=_authorize_url(settings.api_url),
                token_rotation_expiration_minutes=ROTATE_BEFORE)
        return AsyncApp(
            client=self.client or self._new_client(None), process_before_response=True,
            signing_secret=settings.signing_secret.get_secret_value()
            if settings.signing_secret else None, oauth_settings=oauth,
            logger=logging.getLogger("slack_bolt"))

    def use_database(self, engine: AsyncEngine) -> None:
        self._workspaces.use_database(engine)

    def _register(self, app: AsyncApp) -> None:
        app.use(read_form_body_again)  # before any listener: see form_body.py
        app.event("message", matchers=[self._wants_message])(self._on_message)
        app.event("app_mention")(self._on_mention)
        app.command(self.settings.command)(self._on_command)
        app.action(re.compile(r"^helpdesk\."))(self._on_action)
        app.view(blocks.COMMENT_MODAL)(self._on_comment)
        app.event("app_uninstalled")(self._on_uninstalled)
        app.event("tokens_revoked")(self._on_tokens_revoked)

    async def start(self, sink: Sink, http: HttpServer | None = None) -> None:
        self._sink = sink
        self._http = http
        if http is not None:
            http.serve_files(FILES_PATH, self._files.fetch)
        if self._workspaces.distributed:
            if http is None:
                raise RuntimeError("[slack] client_id: the install page needs the HTTP server")
            for path in (INSTALL_PATH, REDIRECT_PATH):
                http.route("GET", path, self._on_install)
        else:
            identity = await self.client.auth_test()
            self.bot_user_id = identity.get("user_id", "")
            self.team = identity.get("team_id", "")
        if self.settings.mode == "http":
            if http is None:
                raise RuntimeError('[slack] mode = "http" needs the HTTP server')
            http.route("POST", EVENTS_PATH, self._on_http)
        elif self.settings.mode == "socket":
            self._socket = AsyncSocketModeHandler(
                self.app, self.settings.app_token.get_secret_value(),
                web_client=self.app.client, logger=logging.getLogger("slack_sdk.socket_mode"))
            await self._socket.connect_async()
        where = "every workspace that installs it" if self._workspaces.distributed \
            else f"team {self.team} as {self.bot_user_id}"
        log.info("slack: receiving by %s in %s", self.settings.mode, where)

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None

    def command_hint(self, name: str) -> str:
        word = {"new": "", "conversations": " list"}.get(name, f" {name}")
        return f"{self.settings.command}{word}"

    async def check(self) -> tuple[bool, str]:
        if self._workspaces.distributed:
            return True, "slack: installed by OAuth in each workspace (/slack/install)"
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

    async def _on_install(self, request: web.Request) -> web.Response:
        """slack-bolt's install page and its redirect back from Slack (the state is checked
        against the installing browser's cookie and the database, then the code is
        exchanged with oauth.v2.access and the installation saved)."""
        flow = self.app.oauth_flow
        bolt_request = await to_bolt_request(request)
        if request.path == INSTALL_PATH:
            response = await flow.handle_installation(bolt_request)
        else:
            response = await flow.handle_callback(bolt_request)
        return await to_aiohttp_response(response)

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
        from_person = inbound.from_person(event, self._bot_user(body))
        if from_person and event.get("channel_type") == "im":
            team = team_of(body)
            self._remember_dm(team, event["user"], event.get("channel"))
            found = inbound.message_event(team, event, self._file_link(team))
            if found is not None:
                await self._sink(found)
        elif from_person and inbound.in_support_channel(event):
            await self._on_channel_message(body, event)
        self._remember_event(body.get("event_id"))  # only once stored: a failure is retried

    async def _on_mention(self, body: dict, event: dict) -> None:
        """@app in a channel: a channel message like any other (when the app also gets
        every channel message, the same message comes twice: the core keeps it once)."""
        if inbound.is_channel(event.get("channel")) \
                and inbound.from_person({"subtype": None, **event}, self._bot_user(body)):
            await self._on_channel_message(body, {**event, "subtype": None})

    async def _on_channel_message(self, body: dict, event: dict) -> None:
        if not self._for_helpdesk(team_of(body), event):
            return
        self._seen_channels[event["channel"]] = None
        if isinstance(event.get("text"), str):  # "@app": not words for the helpdesk
            event = {**event,
                     "text": event["text"].replace(f"<@{self._bot_user(body)}>", "").strip()}
        found = inbound.message_event(team_of(body), event, self._file_link(team_of(body)),
                                      channel_thread=True)
        if found is None:
            return
        if found.thread is None:  # it opens a conversation: its writer may close it
            self._openers[(event["channel"], event["ts"])] = event["user"]
        await self._sink(found)

    def _is_support_channel(self, channel: object) -> bool:
        """A channel listed in [slack] channels, or (none listed) one the bot has seen a
        message in: a slash command there opens its conversation there."""
        if not inbound.is_channel(channel):
            return False
        return channel in self.settings.channels if self.settings.channels \
            else channel in self._seen_channels

    async def _open_from_command(self, body: dict, user: str, channel: str, text: str) -> bool:
        """`/support <question>` in a support channel: the question is posted there for the
        channel to see, and its thread is the conversation. False when Slack refuses the
        post (the bot is not in that channel): the command then goes to the DM."""
        try:
            client = await self._workspaces.client(team_of(body))
            posted = await client.chat_postMessage(
                channel=channel, text=f"<@{user}>: {text}", unfurl_links=False)
        except SlackApiError as error:
            log.info("slack: a command's question could not go to its channel (%s)",
                     error_code(error))
            return False
        thread = posted["ts"]
        self._openers[(channel, thread)] = user
        await self._sink(InboundMessage(inbound.channel_customer(team_of(body), channel, thread),
                                        inbound.plain_text(text), f"{channel}:{thread}",
                                        ref=thread))
        return True

    def _bot_user(self, body: dict) -> str:
        """The app's bot user in the workspace of the event (one per workspace)."""
        found = dig(body, "authorizations")
        if isinstance(found, list) and found and isinstance(found[0], dict) \
                and isinstance(found[0].get("user_id"), str):
            return found[0]["user_id"]
        return self.bot_user_id

    def _for_helpdesk(self, own_team: str, event: dict) -> bool:
        """A support channel's message for the helpdesk: in a listed channel (or any, with
        none listed), and not internal (the prefix, or the app's own workspace when so
        configured)."""
        settings = self.settings
        if settings.channels and event.get("channel") not in settings.channels:
            return False
        text = event.get("text") if isinstance(event.get("text"), str) else ""
        if settings.internal_prefix and text.lstrip().startswith(settings.internal_prefix):
            return False
        team = event.get("user_team") or event.get("team")
        return not (settings.internal_own_workspace and team == own_team)

    async def _on_command(self, ack, body: dict) -> None:
        # A command replayed within Slack's 5 minutes is signed all the same: its
        # trigger_id, unique per invocation, tells it from a new one.
        trigger = body.get("trigger_id") if isinstance(body.get("trigger_id"), str) else ""
        if f"trigger:{trigger}" in self._seen_events:
            await ack()
            return
        user = body.get("user_id", "")
        text = body.get("text") if isinstance(body.get("text"), str) else ""
        in_channel = body.get("channel_id")
        if self._is_support_channel(in_channel) and text.strip() \
                and await self._open_from_command(body, user, in_channel, text.strip()):
            if trigger:
                self._remember_event(f"trigger:{trigger}")
            await ack()
            return
        channel = await self._dm_channel(team_of(body), user)
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
        channel = dig(body, "container", "channel_id")
        if inbound.is_channel(channel):
            await self._on_channel_action(ack, body, user, channel, action)
            return
        event = inbound.press_event(team_of(body), user,
                                    await self._dm_channel(team_of(body), user), action)
        if event is not None:
            await self._sink(event)
        await ack()
        if event is not None and action.get("action_id", "").startswith(
                f"{blocks.ACTION_PREFIX}rating.") and body.get("trigger_id"):
            await self._open_comment_modal(team_of(body), body["trigger_id"], event.action)

    async def _on_channel_action(self, ack, body: dict, user: str, channel: str,
                                 action: dict) -> None:
        """A button in a support channel's thread: pressed by the person who opened the
        conversation (or an admin), it counts; anyone else is told so, and nothing is sent.
        The comment is written in the thread (no modal: it would be the presser's)."""
        message = body.get("message") if isinstance(body.get("message"), dict) else {}
        thread = message.get("thread_ts") or message.get("ts")
        value = action.get("value")
        if not isinstance(thread, str) or not isinstance(value, str) or not value:
            await ack()
            return
        client = await self._workspaces.client(team_of(body))
        if user not in self.settings.channel_admins \
                and user != await self._opener(client, channel, thread):
            await ack()
            await self._say_only_opener(client, channel, thread, user)
            return
        await self._sink(ButtonPress(inbound.channel_customer(team_of(body), channel, thread),
                                     value))
        await ack()

    async def _opener(self, client: AsyncWebClient, channel: str, thread: str) -> str | None:
        """Who wrote the message a support-channel thread hangs under."""
        opener = self._openers.get((channel, thread))
        if opener is None:
            try:
                found = await client.conversations_replies(channel=channel, ts=thread, limit=1)
            except SlackApiError as error:
                log.warning("slack: who opened a thread is unknown (%s)", error_code(error))
                return None
            first = (found.get("messages") or [{}])[0]
            opener = first.get("user") if first.get("ts") == thread else None
            if opener is not None:
                self._openers[(channel, thread)] = opener
        return opener

    async def _say_only_opener(self, client: AsyncWebClient, channel: str, thread: str,
                               user: str) -> None:
        try:
            await client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread,
                                            text=self.texts.get("only_opener"))
        except SlackApiError as error:
            log.info("slack: an ephemeral note was refused (%s)", error_code(error))

    async def _open_comment_modal(self, team: str, trigger_id: str,
                                  rating_action: str) -> None:
        """Slack's trigger_id lives 3 s: opened right away. If it fails, the comment prompt
        in the thread (write, or Skip) still works."""
        try:
            client = await self._workspaces.client(team)
            await client.views_open(trigger_id=trigger_id, view=blocks.comment_modal(
                comment_action(rating_action), COMMENT_TITLE, COMMENT_LABEL, COMMENT_SUBMIT))
        except (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError) as error:
            log.info("slack: the comment modal did not open (%s)", error_code(error))

    async def _on_comment(self, ack, body: dict, view: dict) -> None:
        user = (body.get("user") or {}).get("id", "")
        event = inbound.comment_event(team_of(body), user,
                                      await self._dm_channel(team_of(body), user), view,
                                      *blocks.COMMENT_INPUT)
        if event is not None:
            await self._sink(event)
        await ack()

    def _remember_dm(self, team: str, user: str, channel: object) -> None:
        if isinstance(channel, str):
            self._dm_channels[f"{team}:{user}"] = channel

    async def _dm_channel(self, team: str, user: str) -> str:
        """The user's DM with the app, where the bridge answers (a slash command or a
        button may come from anywhere)."""
        channel = self._dm_channels.get(f"{team}:{user}")
        if channel is None:
            client = await self._workspaces.client(team)
            opened = await client.conversations_open(users=user)
            channel = opened["channel"]["id"]
            self._remember_dm(team, user, channel)
        return channel

    def _file_link(self, team: str):
        """file_url(file_id) for a file of the workspace `team` (files.py)."""
        def file_url(file_id: str) -> str | None:
            if self._http is None:
                return None
            key = f"{team}:{file_id}" if self._workspaces.distributed else file_id
            return self._http.file_link(FILES_PATH, key)
        return file_url

    async def _on_uninstalled(self, body: dict, context) -> None:
        if self._workspaces.distributed:
            await self._workspaces.uninstalled(team_of(body), context)
            log.info("slack: uninstalled from workspace %s", team_of(body))

    async def _on_tokens_revoked(self, body: dict, event: dict, context) -> None:
        if self._workspaces.distributed:
            await self._workspaces.tokens_revoked(team_of(body), event, context)
            log.info("slack: tokens revoked in workspace %s", team_of(body))

    # --- delivery ----------------------------------------------------------------

    async def deliver(self, user: ChatUser, message: Outgoing) -> str | None:
        try:
            client = await self._workspaces.client(user.account)
            return await self._deliver(client, user.chat_id, message)
        except NotInstalled as error:
            raise DeliveryError(str(error), permanent=True) from None
        except SlackApiError as error:
            raise delivery_error(error) from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise DeliveryError(f"slack: {type(error).__name__}") from None

    async def _deliver(self, client: AsyncWebClient, channel: str,
                       message: Outgoing) -> str | None:
        if message.kind == "edit":
            text = message.text or message.edit_original or ""
            fallback, answered = blocks.answered(text)
            try:
                await _plain_if_refused(partial(
                    client.chat_update, channel=channel, ts=message.edit_ref,
                    text=fallback), answered)
            except SlackApiError as error:
                if error_code(error) in ("message_not_found", "cant_update_message"):
                    raise EditTargetGone() from None
                raise
            return message.edit_ref
        first = None
        if message.kind == "reply" and message.attachments:
            await self._files.send_attachments(client, channel, message)
            if not message.text:
                return None
        for fallback, rendered in blocks.render(message):
            await self._pacer.wait(channel)
            posted = await _plain_if_refused(partial(
                client.chat_postMessage, channel=channel, text=fallback,
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


def _authorize_url(api_url: str) -> str:
    """Slack's page where a workspace admin approves the install, beside its Web API
    ("https://slack.com/api/" -> "https://slack.com/oauth/v2/authorize")."""
    base = _with_slash(api_url)
    return (base[:-len("api/")] if base.endswith("/api/") else base) + "oauth/v2/authorize"
