"""Receiving updates: Telegram's webhook, or our own long-polling loop.

Not PTB's Updater: an update is confirmed to Telegram (the next getUpdates offset, or the
webhook's 200) only after the core has stored what it carried. PTB's Updater confirms
when it *fetches*, so a crash could lose a fetched batch."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import warnings
from datetime import timedelta
from typing import Awaitable, Callable

from aiohttp import web
from telegram import Update
from telegram.error import Conflict, Forbidden, InvalidToken, RetryAfter, TelegramError
from telegram.ext import ExtBot

from adapters.telegram.batch import dispatch_batch
from adapters.telegram.settings import TelegramSettings
from bridge.backoff import backoff
from bridge.http import HttpServer
from bridge.logs import add_secrets

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "business_connection",
                   "business_message", "edited_business_message", "deleted_business_messages"]
WEBHOOK_PATH = "/telegram/webhook"

Dispatch = Callable[[Update], Awaitable[None]]  # returns once stored, raises if not


class _WithoutUpdates(logging.Filter):
    """python-telegram-bot logs a whole batch it cannot read, customers' words and all, at
    CRITICAL: they stay out of the log (which a forgotten customer's data cannot be
    erased from); the skipped update is logged here, by id."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Error while parsing updates")


_WITHOUT_UPDATES = _WithoutUpdates()


class UpdateReceiver:
    def __init__(self, bot: ExtBot, settings: TelegramSettings, dispatch: Dispatch) -> None:
        self._bot = bot
        self._settings = settings
        self._dispatch = dispatch
        self._poller: asyncio.Task | None = None
        self._webhook_secret = ""
        for name in ("telegram.Bot", "telegram.ext.ExtBot"):  # the bot's logger
            logging.getLogger(name).addFilter(_WITHOUT_UPDATES)

    async def start(self, http: HttpServer | None) -> None:
        if self._settings.mode == "webhook":
            await self._start_webhook(http)
        else:
            await self._bot.delete_webhook()  # getUpdates is refused while a webhook is set
            self._poller = asyncio.create_task(self._poll(), name="telegram-polling")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)

    async def _start_webhook(self, http: HttpServer | None) -> None:
        if http is None or not http.public_url:
            raise RuntimeError('[telegram] mode = "webhook" needs [http] public_url')
        self._webhook_secret = webhook_secret(self._settings.token.get_secret_value())
        add_secrets([self._webhook_secret])
        http.route("POST", WEBHOOK_PATH, self._on_webhook)
        await self._bot.set_webhook(f"{http.public_url}{WEBHOOK_PATH}",
                                    secret_token=self._webhook_secret,
                                    allowed_updates=ALLOWED_UPDATES)

    async def _on_webhook(self, request: web.Request) -> web.Response:
        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not hmac.compare_digest(given.encode(), self._webhook_secret.encode()):
            log.warning("telegram: webhook request without the right secret token refused")
            return web.Response(status=401)
        try:
            data = await request.json()
        except ValueError:
            return web.Response(status=400, text="not a Telegram update")
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return web.Response(status=400, text="not a Telegram update")
        try:
            update = Update.de_json(data, self._bot)
        except (TypeError, ValueError, KeyError) as error:
            # answered 200: refused, Telegram would send it again and again
            log.error("telegram: update %s could not be read by python-telegram-bot (%s); "
                      "skipped", data["update_id"], type(error).__name__)
            return web.Response(text="skipped")
        try:
            await self._dispatch(update)
        except Exception:
            log.exception("telegram: update %s not stored; Telegram will resend it",
                          update.update_id)
            return web.Response(status=500)
        return web.Response(text="ok")

    async def _poll(self) -> None:
        offset: int | None = None
        failures = 0
        while True:
            try:
                updates, unread = await self._fetch(offset)
                failures = 0
            except RetryAfter as error:
                await asyncio.sleep(retry_after(error))
                continue
            except (InvalidToken, Forbidden) as error:
                log.error("telegram refused the bot token (%s); polling stopped", error)
                return
            except Conflict:
                # Each update then goes to one poller or the other: customers half heard.
                failures += 1
                delay = backoff(failures, 1.0, cap=30.0)
                log.error("telegram: another program is polling this bot (409 Conflict): "
                          "stop it, or give it another bot; retrying in %.0fs", delay)
                await asyncio.sleep(delay)
                continue
            except TelegramError as error:  # network trouble, 5xx, timeouts
                failures += 1
                delay = backoff(failures, 0.5, cap=30.0)
                log.warning("telegram: getUpdates failed (%s); retrying in %.1fs", error, delay)
                await asyncio.sleep(delay)
                continue
            if unread is not None and not updates:
                offset = unread + 1  # confirmed, skipped
                continue
            last_stored, failed = await dispatch_batch(updates, self._dispatch)
            if last_stored is not None:
                offset = last_stored + 1  # confirmed with the next getUpdates
            if failed:
                await asyncio.sleep(1)

    async def _fetch(self, offset: int | None) -> tuple[list[Update], int | None]:
        """The next updates, and the id of one python-telegram-bot could not read (a shape
        of a newer Bot API), which would otherwise come back with every getUpdates and
        stop the bot for good; None when it read them all."""
        try:
            return await self._bot.get_updates(
                offset=offset, timeout=self._settings.poll_timeout,
                allowed_updates=ALLOWED_UPDATES), None
        except (TypeError, ValueError, KeyError):
            return await self._readable_updates(offset)

    async def _readable_updates(self, offset: int | None) -> tuple[list[Update], int | None]:
        """The updates from offset that python-telegram-bot can read, up to the first it
        cannot, which is logged (its id, never its content) and skipped: the id of that
        one, or None."""
        with warnings.catch_warnings():  # its advice (use get_updates) is what just failed
            warnings.simplefilter("ignore")
            raw = await self._bot.do_api_request(
                "getUpdates", api_kwargs={"offset": offset, "timeout": 0,
                                          "allowed_updates": ALLOWED_UPDATES})
        readable = []
        for data in raw or []:
            try:
                readable.append(Update.de_json(data, self._bot))
            except (TypeError, ValueError, KeyError) as error:
                update_id = data.get("update_id") if isinstance(data, dict) else None
                log.error("telegram: update %s could not be read by python-telegram-bot "
                          "(%s); skipped", update_id, type(error).__name__)
                return readable, update_id if isinstance(update_id, int) else None
        return readable, None


def webhook_secret(token: str) -> str:
    """The secret Telegram sends with each webhook update. Derived from the bot token, not
    made up at start: every daemon of the bot, behind one load balancer, must accept what
    Telegram was last told by any of them. (Whoever could compute it holds the token, which
    is worth far more.) 43 characters of Telegram's allowed A-Z, a-z, 0-9, _ and -."""
    digest = hmac.new(token.encode(), b"helpdesk-bridge telegram webhook", hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def retry_after(error: RetryAfter) -> float:
    """Seconds Telegram asks us to wait (a 429)."""
    with warnings.catch_warnings():  # PTB 22 warns that the type will become timedelta
        warnings.simplefilter("ignore")
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
