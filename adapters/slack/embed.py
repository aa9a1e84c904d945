"""Adding the bridge to a Slack app that already exists.

    app = AsyncApp(token=BOT_TOKEN, signing_secret=SIGNING_SECRET)
    adapter = install(app)                 # before the app's own "message" listener
    @app.command("/hello")                 # the company's own listeners keep working
    async def hello(ack, respond): ...
    async with Bridge(bridge_settings, adapters=[adapter]):
        ...run the app as usual (its own HTTP server or Socket Mode)...

A user enters support mode with the bridge's slash command (`/support`); from then on
their DMs with the app go to the helpdesk, and the app's own message listeners do not see
them. `/support done`, or the end of the conversation (after the rating), leaves support
mode. Everyone else keeps talking to the app as before. The bridge's buttons and modal
reach the bridge in any mode. Bolt runs only the first listener that matches a request:
install() before registering the app's own "message" listener.
"""
from __future__ import annotations

from pydantic import SecretStr
from slack_bolt.app.async_app import AsyncApp

from adapters.slack.adapter import SlackAdapter
from adapters.slack.inbound import team_of
from adapters.slack.settings import SlackSettings
from bridge.events import ChatUser, Outgoing
from bridge.support_mode import SupportMode

LEFT_SUPPORT = "You left support. Use {command} to talk to us again."


class EmbeddedSlackAdapter(SlackAdapter):
    def __init__(self, app: AsyncApp, settings: SlackSettings) -> None:
        self.support_mode: SupportMode | None = None  # set by the Bridge
        super().__init__(settings, app=app)

    def use_support_mode(self, support_mode: SupportMode) -> None:
        self.support_mode = support_mode

    async def _wants_message(self, body: dict, event: dict) -> bool:
        user = event.get("user")
        return event.get("channel_type") == "im" and isinstance(user, str) and \
            await self.support_mode.holds("slack", team_of(body), user)

    async def _on_command(self, ack, body: dict, respond) -> None:
        user = body.get("user_id", "")
        if (body.get("text") or "").strip().lower() == "done":
            await self.support_mode.leave("slack", team_of(body), user)
            await ack()
            await respond(LEFT_SUPPORT.format(command=self.settings.command))
            return
        await self.support_mode.enter("slack", team_of(body), user)
        await super()._on_command(ack, body)

    async def deliver(self, user: ChatUser, message: Outgoing) -> str | None:
        if message.final:
            # left before the customer can see the last word: what they write once they
            # have seen it goes to the company's app, never to the ended conversation
            await self.support_mode.leave("slack", user.account, user.user_id)
        return await super().deliver(user, message)


def install(app: AsyncApp, command: str = "/support") -> SlackAdapter:
    """Register the bridge's listeners on an existing AsyncApp; pass the result to
    Bridge(adapters=). The bridge sends with the app's own bot token and API URL."""
    token = app.client.token
    if not token:
        raise ValueError("install(app): the app's client has no bot token (a single-workspace "
                         "app built with token=... is needed)")
    settings = SlackSettings(bot_token=SecretStr(token), mode="embedded",
                             api_url=app.client.base_url, command=command)
    return EmbeddedSlackAdapter(app, settings)
