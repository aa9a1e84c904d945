"""Files both ways: a customer's file fetched from Slack for the helpdesk (through a signed
link), and an agent's attachment uploaded into the customer's thread."""
from __future__ import annotations

import asyncio
import logging
import mimetypes
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import blocks
from adapters.slack.errors import error_code
from adapters.slack.settings import SlackSettings
from adapters.slack.workspaces import NotInstalled, Workspaces
from bridge.events import Outgoing
from bridge.files import FileRefused, fetch_public, networks, refused, serve_download
from bridge.pacing import Pacer

log = logging.getLogger(__name__)

FILES_PATH = "/files/slack/"
ATTACHMENT_LIMIT = 50 * 1024 * 1024


class SlackFiles:
    def __init__(self, workspaces: Workspaces, settings: SlackSettings,
                 pacer: Pacer) -> None:
        self._workspaces = workspaces
        self._settings = settings
        self._pacer = pacer
        self._file_networks = networks(settings.file_networks)

    async def fetch(self, request: web.Request, key: str) -> web.StreamResponse:
        """A customer's file, for the helpdesk: streamed from Slack with the bot token, which
        stays here; the link itself is signed and expires. key: the file id, after its
        workspace's id for an app installed in many ("T0123:F0456")."""
        team, _, file_id = key.rpartition(":")
        try:
            client = await self._workspaces.client(team)
            info = (await client.files_info(file=file_id))["file"]
            url = info.get("url_private_download") or info.get("url_private") or ""
            if not isinstance(url, str) or not self._is_slack_url(url):
                raise FileRefused("the file is not on Slack")
            if isinstance(info.get("size"), int) and info["size"] > ATTACHMENT_LIMIT:
                raise FileRefused("the file is too large")
            name = info.get("name") if isinstance(info.get("name"), str) else "file"
            mimetype = info.get("mimetype") if isinstance(info.get("mimetype"), str) else ""
            token = client.token
            return await serve_download(
                request, url, limit=ATTACHMENT_LIMIT, name=name, content_type=mimetype
                or mimetypes.guess_type(name)[0] or "application/octet-stream",
                headers={"Authorization": f"Bearer {token}"})
        except (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError, FileRefused,
                NotInstalled, KeyError, TypeError) as error:
            log.warning("slack: could not fetch a customer file: %s", error_code(error))
            return refused()

    def _is_slack_url(self, url: str) -> bool:
        """The bot token goes only to Slack (or to the API host this bridge was given)."""
        host = urlsplit(url).hostname or ""
        return host == "slack.com" or host.endswith(".slack.com") \
            or host == urlsplit(self._settings.api_url).hostname

    async def send_attachments(self, client: AsyncWebClient, channel: str,
                               message: Outgoing) -> None:
        """Agent attachments: uploaded into the thread (files.getUploadURLExternal +
        files.completeUploadExternal, which slack-sdk's files_upload_v2 does), or a link
        when that fails. Fetched from public addresses only (bridge/files.py)."""
        for item in message.attachments:
            try:
                content = await fetch_public(item.url, ATTACHMENT_LIMIT, self._file_networks)
                await client.files_upload_v2(channel=channel, thread_ts=message.thread,
                                             content=content, filename=item.name,
                                             title=item.name)
            except (SlackClientError, aiohttp.ClientError, asyncio.TimeoutError,
                    FileRefused) as error:
                log.info("slack: attachment sent as a link (%s)", error_code(error))
                await self._pacer.wait(channel)
                await client.chat_postMessage(
                    channel=channel, thread_ts=message.thread,
                    text=blocks.escape(f"{item.name}: {item.url}"),
                    blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "<{}|{}>".format(
                        _link_target(item.url), blocks.escape(item.name))}}])


def _link_target(url: str) -> str:
    """A URL inside mrkdwn's <url|label>: no character there may end it or open another."""
    return blocks.escape(url.replace("<", "%3C").replace(">", "%3E").replace("|", "%7C"))
