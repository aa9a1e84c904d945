"""A Slack app distributed to many workspaces (OAuth v2): customers' admins install it
through slack-bolt's install flow, every event is answered with its workspace's token,
workspaces are kept apart, and an uninstall stops one and leaves the others running.
Through the local Slack (its authorize page and oauth.v2.access), signed as Slack signs."""
from __future__ import annotations

import asyncio
import logging
import re

import aiohttp
import pytest

from adapters.slack import SlackAdapter
from bridge.app import Bridge
from bridge.config import load_settings
from bridge.registry import adapter_schemas
from bridge.sandbox import DEFAULT_API_KEY
from testing.fake_slack_oauth import CLIENT_ID, CLIENT_SECRET, FakeSlackWorkspaces
from testing.local import free_port
from tests.test_slack import APP_TOKEN, SIGNING_SECRET, started

ACME, GLOBEX = "T0ACME", "T0GLOBEX"
ANN = "U0ANN"  # a user id that both workspaces have: two different people


@pytest.fixture
async def slack():
    fake = FakeSlackWorkspaces(APP_TOKEN, SIGNING_SECRET)
    await fake.start()
    yield fake
    await fake.stop()


async def _start(slack, sandbox, database_url, mode: str) -> Bridge:
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    section = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
               "api_url": slack.api_url, "mode": mode, "signing_secret": SIGNING_SECRET}
    if mode == "socket":
        section["app_token"] = APP_TOKEN
    settings = load_settings({
        "helpdesk": {"url": sandbox.url, "api_key": DEFAULT_API_KEY, "request_timeout": 3},
        "storage": {"url": database_url},
        "http": {"listen": f"127.0.0.1:{port}", "public_url": public_url},
        "slack": section,
    }, env={}, adapter_schemas=adapter_schemas())
    slack.redirect_url = f"{public_url}/slack/oauth_redirect"
    return await started(slack, settings, SlackAdapter(settings.adapters["slack"]))


@pytest.fixture(params=["http", "socket"])
async def bridge(request, slack, sandbox, database_url):
    bridge = await _start(slack, sandbox, database_url, request.param)
    yield bridge
    await asyncio.wait_for(bridge.stop(), 20)


async def _install(bridge, slack, team: str) -> str:
    """A workspace admin opens the install page, approves on Slack, and lands back on the
    bridge; the page they end on."""
    slack.installing = team
    # A browser keeps the state cookie, which is Secure: the bridge is behind TLS in
    # production; here its loopback address counts as a secure origin, as in browsers.
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[bridge.http.public_url])
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        async with browser.get(f"{bridge.http.public_url}/slack/install") as page:
            assert page.status == 200
            authorize = re.search(r'<a href="([^"]+)"', await page.text()).group(1)
        assert authorize.startswith(f"{slack.url}/oauth/v2/authorize?")
        async with browser.get(authorize.replace("&amp;", "&")) as landed:
            return f"{landed.status} {await landed.text()}"


def _posted_by(slack, team: str) -> list:
    return [c for c in slack.calls_of("chat.postMessage") if c.team == team]


async def test_two_workspaces_are_answered_each_with_its_own_token_and_kept_apart(
        bridge, slack, sandbox):
    for team in (ACME, GLOBEX):
        assert (await _install(bridge, slack, team)).startswith("200")
    await slack.say(ANN, "hello from Acme", team=ACME)
    await slack.say(ANN, "hello from Globex", team=GLOBEX)
    acme = await slack.wait_for_text(ANN, 'You said: "hello from Acme"', team=ACME)
    globex = await slack.wait_for_text(ANN, 'You said: "hello from Globex"', team=GLOBEX)
    assert acme["thread_ts"] and globex["thread_ts"]
    assert {c.params["channel"] for c in _posted_by(slack, ACME)} == {slack.dm(ANN, ACME)}
    assert {c.params["channel"] for c in _posted_by(slack, GLOBEX)} == {slack.dm(ANN, GLOBEX)}
    assert len({m["session_id"] for m in sandbox.received}) == 2  # two customers
    assert not slack.find(ANN, "Globex", team=ACME) and not slack.find(ANN, "Acme", team=GLOBEX)


async def test_uninstalling_one_workspace_stops_it_and_the_other_goes_on(
        bridge, slack, sandbox):
    for team in (ACME, GLOBEX):
        await _install(bridge, slack, team)
    await slack.say(ANN, "first", team=GLOBEX)
    ticket = (await slack.wait_for(lambda: sandbox.received))[0]["ticket_chat_id"]
    await slack.send(slack.uninstalled(GLOBEX))
    await asyncio.sleep(0.3)
    await sandbox.agent_reply(ticket, "an answer Globex will not get")
    await slack.say(ANN, "still here", team=ACME)
    await slack.wait_for_text(ANN, 'You said: "still here"', team=ACME)
    refused = [c for c in slack.calls if c.team is None and c.method == "chat.postMessage"]
    assert len(refused) <= 1  # at most a send already on its way: then never again
    await asyncio.sleep(2.5)
    assert [c for c in slack.calls if c.team is None] == refused
    assert not slack.find(ANN, "an answer Globex will not get", team=GLOBEX)
    async with bridge.store.engine.connect() as connection:
        teams = await connection.exec_driver_sql("SELECT DISTINCT team_id FROM slack_bots")
        assert [row[0] for row in teams] == [ACME]


async def test_revoked_bot_tokens_remove_that_workspaces_bot(bridge, slack, sandbox):
    for team in (ACME, GLOBEX):
        await _install(bridge, slack, team)
    revoked = slack.event_body({"type": "tokens_revoked", "event_ts": slack.next_ts(),
                                "tokens": {"bot": [slack.bot_user_of(ACME)]}}, ACME)
    await slack.send(revoked)
    async with bridge.store.engine.connect() as connection:
        teams = await connection.exec_driver_sql("SELECT DISTINCT team_id FROM slack_bots")
        assert [row[0] for row in teams] == [GLOBEX]


async def test_an_expiring_bot_token_is_rotated_before_it_is_used(bridge, slack, sandbox):
    slack.token_lifetime = 600  # ten minutes: within the two hours before which it rotates
    await _install(bridge, slack, ACME)
    first_token = next(iter(slack.tokens))
    await slack.say(ANN, "hello", team=ACME)
    await slack.wait_for_text(ANN, 'You said: "hello"', team=ACME)
    refreshes = [c for c in slack.calls_of("oauth.v2.access")
                 if c.params.get("grant_type") == "refresh_token"]
    assert len(refreshes) >= 1
    latest = list(slack.tokens)[-1]
    posted_with = {token for method, token in slack.used if method == "chat.postMessage"}
    assert latest != first_token and posted_with == {latest}


async def test_a_forged_install_callback_is_refused_and_installs_nothing(
        bridge, slack, sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    slack.installing = ACME
    async with aiohttp.ClientSession() as stranger:  # no state cookie from the install page
        async with stranger.get(f"{bridge.http.public_url}/slack/oauth_redirect",
                                params={"code": "stolen", "state": "made-up"}) as landed:
            assert landed.status in (400, 401)
    async with bridge.store.engine.connect() as connection:
        found = await connection.exec_driver_sql("SELECT count(*) FROM slack_bots")
        assert found.scalar() == 0
    await _install(bridge, slack, ACME)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert CLIENT_SECRET not in logged and not re.search(r"xoxb-T0ACME-\d+-\w+", logged)
