"""A customer's file, fetched from Telegram for the helpdesk (through a signed link)."""
from __future__ import annotations

import asyncio
import logging
import mimetypes
from urllib.parse import quote

import aiohttp
from aiohttp import web
from telegram.error import TelegramError
from telegram.ext import ExtBot

from bridge.files import FileRefused, refused, serve_download

log = logging.getLogger(__name__)

FILES_PATH = "/files/telegram/"
DOWNLOAD_LIMIT = 20 * 1024 * 1024  # what the Bot API lets bots download


async def fetch_customer_file(bot: ExtBot, request: web.Request,
                              file_id: str) -> web.StreamResponse:
    """Streamed from Telegram with the token, which stays here (the link itself is signed
    and expires). Only over HTTP, from the Bot API's file URL: python-telegram-bot would
    read a file_path that names a file on this machine from the disk. At most
    DOWNLOAD_LIMIT, Telegram's own limit for bots."""
    try:
        telegram_file = await bot.get_file(file_id)
        url = telegram_file.file_path or ""
        if not url.startswith(f"{bot.base_file_url}/"):
            raise FileRefused("the Bot API named no downloadable file")
        if (telegram_file.file_size or 0) > DOWNLOAD_LIMIT:
            raise FileRefused("the file is larger than bots may download")
        name = url.rsplit("/", 1)[-1] or "file"
        return await serve_download(
            request, quote(url, safe=":/%"), limit=DOWNLOAD_LIMIT, name=name,
            content_type=mimetypes.guess_type(name)[0] or "application/octet-stream")
    except (TelegramError, FileRefused, aiohttp.ClientError, asyncio.TimeoutError) as error:
        # Never the error's text for aiohttp's: it would hold the file URL (the token).
        reason = error if isinstance(error, (TelegramError, FileRefused)) \
            else type(error).__name__
        log.warning("telegram: could not fetch a customer file: %s", reason)
        return refused()
