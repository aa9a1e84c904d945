"""The side of the relay bench that is measured, as a process of its own:

    python -m bench.relay_peer bridge --telegram URL --helpdesk URL --db URL
    python -m bench.relay_peer shipped --telegram URL --helpdesk URL --db URL [--receiving webhook]
    python -m bench.relay_peer echo --telegram URL

`bridge` has Telegram's limits off (what the relay bench measures); `shipped` is the bridge
as shipped, limits on (the fairness bench).

In production the Bot API and the helpdesk run elsewhere; run in the bench's process, the
local servers standing in for them would take CPU from the bridge and be counted as its
cost. Runs until SIGTERM. The bench takes every timestamp itself, on its servers.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
from contextlib import asynccontextmanager
from typing import AsyncIterator

from telegram.ext import Application, ExtBot, MessageHandler, filters

from adapters.telegram import TelegramAdapter
from bench.telegram_limits import shipped_settings
from bridge import loop
from bridge.app import Bridge
from bridge.config import load_settings
from bridge.fair_share import FairShare
from bridge.logs import setup_logging
from bridge.memory import settle_imports
from bridge.registry import adapter_schemas
from bridge.sandbox import DEFAULT_API_KEY

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


def unlimited_bridge(telegram_url: str, helpdesk_url: str, db_url: str) -> Bridge:
    """The bridge with its Telegram adapter, Telegram's own limits off (bench.telegram_limits
    measures those): what the relay bench measures, in this process or in a peer."""
    settings = load_settings({
        "helpdesk": {"url": helpdesk_url, "api_key": DEFAULT_API_KEY, "connections": 8,
                     "request_timeout": 30},
        "storage": {"url": db_url}, "http": {"listen": "127.0.0.1:0"},
        "limits": {"messages_per_minute": 0},  # each customer writes 4 a second here
        "telegram": {"token": TOKEN, "api_url": telegram_url, "poll_timeout": 1},
    }, env={}, adapter_schemas=adapter_schemas())
    bot = ExtBot(TOKEN, base_url=f"{telegram_url}/bot")  # no rate limiter
    adapter = TelegramAdapter(settings.adapters["telegram"], bot=bot)
    adapter._owns_bot = True  # standalone receiving, with the unlimited bot
    adapter._fair_share = FairShare(1_000_000, chat_burst=1_000_000)
    return Bridge(settings, [adapter])


@asynccontextmanager
async def echo_bot(telegram_url: str) -> AsyncIterator[None]:
    """A bare python-telegram-bot echo bot, polling while the block runs: the floor the
    bridge is compared with."""
    async def echo(update, _context) -> None:
        await update.message.reply_text(f"echo {update.message.text}")

    application = (Application.builder().token(TOKEN).base_url(f"{telegram_url}/bot")
                   .concurrent_updates(True).build())
    application.add_handler(MessageHandler(filters.TEXT, echo))
    async with application:
        await application.start()
        await application.updater.start_polling(poll_interval=0, timeout=1)
        yield
        await application.updater.stop()
        await application.stop()


async def _until_terminated() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


async def run_bridge(args) -> None:
    async with unlimited_bridge(args.telegram, args.helpdesk, args.db):
        await _until_terminated()


async def run_shipped(args) -> None:
    settings = shipped_settings(args.helpdesk, args.telegram, args.db, args.receiving)
    async with Bridge(settings, [TelegramAdapter(settings.adapters["telegram"])]):
        await _until_terminated()


async def run_echo(args) -> None:
    async with echo_bot(args.telegram):
        await _until_terminated()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.relay_peer")
    parser.add_argument("side", choices=["bridge", "shipped", "echo"])
    parser.add_argument("--telegram", required=True)
    parser.add_argument("--helpdesk", default="")
    parser.add_argument("--db", default="")
    parser.add_argument("--receiving", choices=("polling", "webhook"), default="polling")
    args = parser.parse_args()
    setup_logging("ERROR")
    # the daemon's loop (uvloop where installed) and garbage collector settings, for the
    # echo bot too: the same ground
    settle_imports()
    loop.run({"bridge": run_bridge, "shipped": run_shipped, "echo": run_echo}[args.side](args))


if __name__ == "__main__":
    main()
