"""An existing python-telegram-bot bot that adds the helpdesk with a few lines.

    export TELEGRAM_BOT_TOKEN=...          # from @BotFather
    helpdesk-bridge sandbox &              # or a real helpdesk: set EUSATE_API_KEY and URL
    python examples/telegram_embedded.py

In Telegram: /hello is the bot's own command; /support talks to the helpdesk until /done.
"""
import asyncio
import os

from telegram import Update
from telegram.ext import Application, CommandHandler, ContextTypes

from adapters.telegram import TelegramSettings, install
from bridge.app import Bridge
from bridge.config import load_settings


async def hello(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.message.reply_text("Hello from ACME's own bot!")


async def main() -> None:
    token = os.environ["TELEGRAM_BOT_TOKEN"]
    api_url = os.environ.get("TELEGRAM_API_URL", "https://api.telegram.org")
    application = (Application.builder().token(token).base_url(f"{api_url}/bot")
                   .base_file_url(f"{api_url}/file/bot").build())
    application.add_handler(CommandHandler("hello", hello))  # the bot's own, untouched

    # --- the bridge: these lines are all it takes ---
    settings = load_settings({
        "helpdesk": {"url": os.environ.get("EUSATE_URL", "http://127.0.0.1:8765"),
                     "api_key": os.environ.get("EUSATE_API_KEY", "sandbox-key")},
        "storage": {"url": os.environ.get("BRIDGE_STORAGE_URL",
                                          "sqlite+aiosqlite:///acme-bridge.db")},
        "http": {"listen": "127.0.0.1:0"},
    })
    adapter = install(application, TelegramSettings(token=token, api_url=api_url),
                      entry_command="support")
    # -------------------------------------------------

    async with application:
        async with Bridge(settings, adapters=[adapter]):
            await application.start()
            await application.updater.start_polling()
            try:
                await asyncio.Event().wait()  # until Ctrl-C
            finally:
                await application.updater.stop()
                await application.stop()


if __name__ == "__main__":
    asyncio.run(main())
