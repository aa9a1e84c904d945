"""An existing Slack app (slack-bolt, asyncio) that adds the helpdesk with a few lines.

    export SLACK_BOT_TOKEN=xoxb-... SLACK_SIGNING_SECRET=...
    helpdesk-bridge sandbox &              # or a real helpdesk: set EUSATE_API_KEY and URL
    python examples/slack_embedded.py      # Slack's request URL: https://<host>/slack/events

In Slack: /hello is the app's own command and DMs get the app's own answer; /support
talks to the helpdesk until `/support done` or the end of the conversation.
"""
import asyncio
import os

from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import install
from bridge.app import Bridge
from bridge.config import load_settings


def build_app() -> AsyncApp:
    client = AsyncWebClient(token=os.environ["SLACK_BOT_TOKEN"],
                            base_url=os.environ.get("SLACK_API_URL", "https://slack.com/api/"))
    return AsyncApp(client=client, signing_secret=os.environ["SLACK_SIGNING_SECRET"])


async def main() -> None:
    app = build_app()

    # --- the bridge: these lines are all it takes (install() before the app's own
    # "message" listener, so support DMs reach the bridge first) ---
    adapter = install(app, command="/support")
    settings = load_settings({
        "helpdesk": {"url": os.environ.get("EUSATE_URL", "http://127.0.0.1:8765"),
                     "api_key": os.environ.get("EUSATE_API_KEY", "sandbox-key")},
        "storage": {"url": os.environ.get("BRIDGE_STORAGE_URL",
                                          "sqlite+aiosqlite:///acme-bridge.db")},
        "http": {"listen": "127.0.0.1:0"},
    })
    # -------------------------------------------------

    @app.command("/hello")  # the app's own, untouched
    async def hello(ack) -> None:
        await ack("Hello from ACME's own app!")

    @app.event("message")
    async def chat(event, say) -> None:
        if not event.get("bot_id") and not event.get("subtype"):
            await say(f"ACME bot here. You said: {event.get('text', '')}")

    async with Bridge(settings, adapters=[adapter]):  # up before Slack can reach the app
        runner = web.AppRunner(app.web_app(path="/slack/events"))
        await runner.setup()
        port = int(os.environ.get("SLACK_APP_PORT", "3000"))
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            await asyncio.Event().wait()  # until Ctrl-C
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
