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
from adapters.slack.settings import SlackSettings
from bridge.events import ChatUser, Outgoing

LEFT_SUPPORT = "You left support. Use {command} to talk to us again."


class EmbeddedSlackAdapter(SlackAdapter):
    def __init__(self, app: AsyncApp, settings: SlackSettings) -> None:
        self.support_users: set[str] = set()
        super().__init__(settings, app=app)

    async def _wants_message(self, event: dict) -> bool:
        return event.get("channel_type") == "im" and event.get("user") in self.support_users

    async def _on_command(self, ack, body: dict, respond) -> None:
        user = body.get("user_id", "")
        if (body.get("text") or "").strip().lower() == "done":
            self.support_users.discard(user)
            await ack()
            await respond(LEFT_SUPPORT.format(command=self.settings.command))
            return
        self.support_users.add(user)
        await super()._on_command(ack, body)

    async def deliver(self, user: ChatUser, message: Outgoing) -> str | None:
        ref = await super().deliver(user, message)
        if message.final:
            self.support_users.discard(user.user_id)
        return ref


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
