"""The local Slack, for an app distributed to many workspaces (OAuth v2): Slack's authorize
page (it sends the admin back to the app's redirect URL with a code), `oauth.v2.access`
(the code, or a refresh token when token rotation is on, for a bot token; the app's
client id and secret as HTTP Basic auth, as slack-sdk sends them), a bot token per
workspace, and `app_uninstalled` as Slack sends it.
"""
from __future__ import annotations

import base64
import itertools
import time
import uuid

from aiohttp import web

from testing.fake_slack import BOT_ID, FakeSlack, SlackError

CLIENT_ID, CLIENT_SECRET = "1234567890.0987654321", "0c0ffee0c0ffee0c0ffee0c0ffee0c0f"


class FakeSlackWorkspaces(FakeSlack):
    def __init__(self, app_token: str = "", signing_secret: str = "") -> None:
        super().__init__("", app_token, signing_secret)
        self.redirect_url = ""         # the app's redirect URL, as its manifest says
        self.installing = ""           # the workspace whose admin approves the next install
        self.token_lifetime: int | None = None  # seconds; None: token rotation off
        self.tokens: dict[str, str] = {}         # bot token -> workspace
        self._refresh: dict[str, str] = {}       # refresh token -> workspace
        self._codes: dict[str, str] = {}         # code -> workspace
        self._issued = itertools.count(1)
        self.used: list[tuple[str, str]] = []   # (method, bot token) as called

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_get("/oauth/v2/authorize", self._authorize)

    def bot_user_of(self, team: str) -> str:
        return f"U0BOT{team[-4:]}"

    def uninstalled(self, team: str) -> dict:
        """Slack forgets the app's tokens there; the event it sends the app."""
        self.tokens = {token: t for token, t in self.tokens.items() if t != team}
        return self.event_body({"type": "app_uninstalled", "event_ts": self.next_ts()}, team)

    async def _authorize(self, request: web.Request) -> web.Response:
        """The admin of self.installing approves: back to the app with a code."""
        if request.query.get("client_id") != CLIENT_ID:
            return web.Response(status=400, text="invalid_client_id")
        code = uuid.uuid4().hex
        self._codes[code] = self.installing
        state = request.query.get("state", "")
        raise web.HTTPFound(f"{self.redirect_url}?code={code}&state={state}")

    def _authorized(self, method: str, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if method == "oauth.v2.access":
            expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            return "" if header == f"Basic {expected}" else None
        if method == "apps.connections.open":
            return "" if header == f"Bearer {self.app_token}" else None
        token = header.removeprefix("Bearer ")
        self.used.append((method, token))
        return self.tokens.get(token)

    def _oauth_v2_access(self, params: dict) -> dict:
        if params.get("grant_type") == "refresh_token":
            team = self._refresh.pop(params.get("refresh_token", ""), None)
        else:
            team = self._codes.pop(params.get("code", ""), None)
        if team is None:
            raise SlackError("invalid_code" if "code" in params else "invalid_refresh_token")
        token = f"xoxb-{team}-{next(self._issued)}-{uuid.uuid4().hex[:12]}"
        self.tokens[token] = team
        answer = {"access_token": token, "token_type": "bot", "app_id": "A0BRIDGE",
                  "scope": "chat:write,im:history,im:write,commands",
                  "bot_user_id": self.bot_user_of(team), "team": {"id": team, "name": team},
                  "enterprise": None, "is_enterprise_install": False,
                  "authed_user": {"id": "U0ADMIN"}}
        if self.token_lifetime is not None:
            refresh = f"xoxe-1-{uuid.uuid4().hex}"
            self._refresh[refresh] = team
            answer.update(refresh_token=refresh, expires_in=self.token_lifetime)
        return answer

    def _auth_test(self, _params: dict) -> dict:
        team = self.caller_team
        return {"url": f"https://{team.lower()}.slack.com/", "team": team, "user": "support",
                "team_id": team, "user_id": self.bot_user_of(team), "bot_id": BOT_ID,
                "is_enterprise_install": False, "expires_in": int(time.time())}
