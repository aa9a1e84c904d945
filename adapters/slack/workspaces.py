"""Which token speaks for the app in which workspace.

One workspace: the [slack] bot_token. An app distributed to many workspaces (OAuth v2:
[slack] client_id and client_secret): each workspace's bot, as slack-bolt's install flow
saved it in the bridge's own database, through slack-sdk's SQLAlchemy installation store
(its tables are migrations/versions/0010). A bot token that expires (token rotation on)
is rotated with slack-sdk's TokenRotator before it does, and the new one saved, so every
daemon on the database uses it.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from cachetools import TTLCache
from slack_bolt.listener.async_builtins import AsyncTokenRevocationListeners
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.slack.settings import SlackSettings
from bridge.logs import add_secret_shape

log = logging.getLogger(__name__)

CLIENT_TTL = 60.0  # seconds a workspace's client is reused before its bot is read again
ROTATE_BEFORE = 120  # minutes before a bot token expires when it is rotated
STATE_TTL = 600  # seconds an install link's state stays valid


class NotInstalled(Exception):
    """The app is not (or no longer) installed in that workspace."""


class Workspaces:
    def __init__(self, settings: SlackSettings,
                 make_client: Callable[[str | None], AsyncWebClient]) -> None:
        """make_client(token): a Web API client as the adapter configures them."""
        self._make_client = make_client
        token = settings.bot_token.get_secret_value() if settings.bot_token else None
        self.single = make_client(token) if token else None
        self.installations: AsyncSQLAlchemyInstallationStore | None = None
        self.states: AsyncSQLAlchemyOAuthStateStore | None = None
        self._rotator: AsyncTokenRotator | None = None
        if self.single is None:
            # The database is known only once the Bridge has it (use_database).
            self.installations = AsyncSQLAlchemyInstallationStore(
                settings.client_id, engine=None, logger=log)
            self.states = AsyncSQLAlchemyOAuthStateStore(STATE_TTL, engine=None, logger=log)
            self._rotator = AsyncTokenRotator(
                client_id=settings.client_id,
                client_secret=settings.client_secret.get_secret_value(),
                client=make_client(None))
        self._clients: TTLCache[str, AsyncWebClient] = TTLCache(10_000, CLIENT_TTL)
        if self.distributed:
            # Each workspace's bot and refresh tokens arrive while the bridge runs, in
            # oauth.v2.access answers and SQL parameters that libraries log at DEBUG.
            add_secret_shape("xox", r"xox[a-z]-[A-Za-z0-9-]+")

    @property
    def distributed(self) -> bool:
        return self.single is None

    def use_database(self, engine: AsyncEngine) -> None:
        if self.installations is not None:
            self.installations.engine = engine
            self.states.engine = engine

    async def client(self, team: str) -> AsyncWebClient:
        """The client that speaks for the app in the workspace `team`."""
        if self.single is not None:
            return self.single
        client = self._clients.get(team)
        if client is None:
            client = self._make_client(await self._token(team))
            self._clients[team] = client
        return client

    async def uninstalled(self, team: str, context) -> None:
        """app_uninstalled: that workspace's installation is deleted (slack-bolt's own
        listener); the other workspaces go on."""
        await AsyncTokenRevocationListeners(self.installations).handle_app_uninstalled_events(
            context)
        self._clients.pop(team, None)

    async def tokens_revoked(self, team: str, event: dict, context) -> None:
        await AsyncTokenRevocationListeners(self.installations).handle_tokens_revoked_events(
            event, context)
        self._clients.pop(team, None)

    async def _token(self, team: str) -> str:
        bot = await self.installations.async_find_bot(enterprise_id=None, team_id=team)
        if bot is None or not bot.bot_token:
            raise NotInstalled(f"slack: the app is not installed in workspace {team}")
        rotated = await self._rotated(bot)
        return (rotated or bot).bot_token

    async def _rotated(self, bot: Bot) -> Bot | None:
        rotated = await self._rotator.perform_bot_token_rotation(
            bot=bot, minutes_before_expiration=ROTATE_BEFORE)
        if rotated is not None:
            await self.installations.async_save_bot(rotated)
            log.info("slack: the bot token of workspace %s was rotated (valid %.0f more "
                     "minutes)", bot.team_id, (rotated.bot_token_expires_at - time.time()) / 60)
        return rotated
