"""The voice-call page in a real browser: headless Chromium (Debian's package), driven by
Playwright, with the real livekit-client build (from npm, installed by .ci/run) and a local
WebSocket server standing in for LiveKit, which records the connection attempt.

BRIDGE_TEST_LIVEKIT_SDK: the path of livekit-client.umd.js. BRIDGE_TEST_CHROMIUM: the
browser (default /usr/bin/chromium). BRIDGE_TEST_REQUIRE_BROWSER=1 (CI) turns a missing
one into a failure instead of a skip. The page's screenshot is kept in
BRIDGE_TEST_ARTIFACTS (default: test-artifacts/)."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web

from bridge.app import Bridge
from bridge.config import load_settings
from bridge.sandbox import DEFAULT_API_KEY
from testing.console import ConsoleHarness
from testing.local import free_port, serve

SDK = Path(os.environ.get("BRIDGE_TEST_LIVEKIT_SDK", "node_modules/livekit-client/dist/"
                                                    "livekit-client.umd.js"))
CHROMIUM = os.environ.get("BRIDGE_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("BRIDGE_TEST_ARTIFACTS", "test-artifacts"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--use-fake-ui-for-media-stream",
                 "--use-fake-device-for-media-stream"]


def _need(what: str, present: bool) -> None:
    if present:
        return
    if os.environ.get("BRIDGE_TEST_REQUIRE_BROWSER") == "1":
        pytest.fail(f"BRIDGE_TEST_REQUIRE_BROWSER=1 but {what} is missing")
    pytest.skip(f"{what} is missing (.ci/run installs it)")


class FakeLiveKit:
    """Serves the SDK file (as a self-hosted copy would be) and records every connection
    attempt to its signalling endpoint."""

    def __init__(self) -> None:
        self.attempts: list[dict] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/sdk/livekit-client.umd.js", self._sdk)
        app.router.add_get("/{path:.*}", self._signal)
        self._runner, port = await serve(app)
        self.url = f"127.0.0.1:{port}"

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _sdk(self, _request: web.Request) -> web.Response:
        return web.Response(body=SDK.read_bytes(), content_type="text/javascript",
                            headers={"Access-Control-Allow-Origin": "*"})

    async def _signal(self, request: web.Request) -> web.StreamResponse:
        self.attempts.append({"path": request.path, "query": dict(request.query),
                              "websocket": request.headers.get("Upgrade", "").lower()
                              == "websocket"})
        if request.headers.get("Upgrade", "").lower() == "websocket":
            socket = web.WebSocketResponse()
            await socket.prepare(request)
            await socket.close()  # no real media server here: the attempt is what counts
            return socket
        return web.Response(status=401, text="not a real LiveKit server",
                            headers={"Access-Control-Allow-Origin": "*"})


@pytest.fixture
async def livekit():
    _need(f"the livekit-client build ({SDK})", SDK.is_file())
    server = FakeLiveKit()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def browser():
    _need(f"Chromium ({CHROMIUM})", Path(CHROMIUM).is_file())
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                   args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def call(sandbox, livekit, tmp_path):
    """A bridge with calls on, and a customer with a call invite."""
    port = free_port()
    digest = base64.b64encode(hashlib.sha384(SDK.read_bytes()).digest()).decode()
    settings = load_settings({
        "helpdesk": {"url": sandbox.url, "api_key": DEFAULT_API_KEY, "request_timeout": 3},
        "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"},
        "http": {"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"},
        "calls": {"livekit_url": f"ws://{livekit.url}",
                  "sdk_url": f"http://{livekit.url}/sdk/livekit-client.umd.js",
                  "sdk_integrity": f"sha384-{digest}"},
    }, env={})
    console = ConsoleHarness()
    bridge = Bridge(settings, [console])
    await bridge.start()
    await bridge.relay.link.wait_connected(10)
    await console.say("lee", "hello")
    await console.expect("lee", "You said")
    await console.command("lee", "call")
    invite = await console.expect("lee", "Your voice call is ready")
    yield bridge, console, invite.message.url
    await asyncio.wait_for(bridge.stop(), 20)


async def _wait(predicate, timeout: float = 15.0):
    for _ in range(int(timeout / 0.05)):
        if (found := predicate()):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_the_call_page_joins_livekit_and_end_call_reaches_the_helpdesk(
        call, browser, livekit, sandbox):
    bridge, console, url = call
    fragment = parse_qs(urlsplit(url).fragment)
    assert urlsplit(url).path == "/call" and not urlsplit(url).query  # token: fragment only
    page = await browser.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("websocket", lambda socket: requests.append(socket.url))
    await page.goto(url)

    attempt = await _wait(lambda: next((a for a in livekit.attempts if a["websocket"]), None))
    assert attempt["path"].startswith("/rtc")  # LiveKit's signalling endpoint
    assert attempt["query"]["access_token"] == fragment["token"][0]
    assert await page.evaluate("location.hash") == ""  # the token left the address bar
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "call-page.png"))

    await page.click("#end")
    await _wait(lambda: [e for e, _ in sandbox.requests if e == "close_call_support"])
    await page.wait_for_selector('#state[data-state="ended"]')
    await console.expect("lee", "The call has ended.")
    hosts = {urlsplit(address).hostname for address in requests}
    assert hosts == {"127.0.0.1"}, f"requests left localhost: {sorted(set(requests))}"
    assert "token=" not in " ".join(r for r in requests if bridge.http.url in r)


async def test_the_page_follows_the_helpdesk_ending_the_call(call, browser, sandbox):
    _bridge, console, url = call
    page = await browser.new_page()
    await page.goto(url)
    await page.wait_for_selector("#state")
    conversation = next(iter(sandbox.conversations.values()))
    await sandbox.sate_left_call(conversation.ticket_chat_id)
    await console.expect("lee", "The call has ended.")
    await page.wait_for_selector('#state[data-state="sate-left"]', timeout=10_000)
    assert await page.is_disabled("#end")


async def test_a_forged_end_link_is_refused(call, sandbox):
    import aiohttp

    bridge, _console, url = call
    end = parse_qs(urlsplit(url).fragment)["end"][0]
    call, expires, signature = end.split(".")
    conversation_id, call_key = call.split("-")
    async with aiohttp.ClientSession() as http:
        for forged in (f"{int(conversation_id) + 1}-{call_key}.{expires}.{signature}",
                       f"{conversation_id}-0{call_key[1:]}.{expires}.{signature}",
                       "1.1.x", ""):
            async with http.post(f"{bridge.http.url}/call/end", json={"end": forged}) as answer:
                assert answer.status == 403
        async with http.post(f"{bridge.http.url}/call/state", json={"end": end}) as answer:
            assert (await answer.json())["state"] == "live"
    await asyncio.sleep(0.3)
    assert not [e for e, _ in sandbox.requests if e == "close_call_support"]


def test_the_pinned_integrity_hash_is_that_of_the_pinned_release():
    """jsDelivr serves npm files byte for byte: the npm file's hash is the CDN file's."""
    from bridge.config import LIVEKIT_SDK_INTEGRITY, LIVEKIT_SDK_URL

    _need(f"the livekit-client build ({SDK})", SDK.is_file())
    version = LIVEKIT_SDK_URL.split("@")[1].split("/")[0]
    package = SDK.parent.parent / "package.json"
    assert f'"version": "{version}"' in package.read_text()
    digest = base64.b64encode(hashlib.sha384(SDK.read_bytes()).digest()).decode()
    assert LIVEKIT_SDK_INTEGRITY == f"sha384-{digest}"


async def test_by_default_the_page_loads_the_pinned_cdn_file_with_its_hash(make_bridge):
    import aiohttp

    from bridge.config import LIVEKIT_SDK_INTEGRITY, LIVEKIT_SDK_URL

    bridge, _console = await make_bridge(public_url="https://bridge.example.com")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{bridge.http.url}/call") as answer:
            page = await answer.text()
            assert answer.headers["Cache-Control"] == "no-store"
    assert (f'<script src="{LIVEKIT_SDK_URL}" integrity="{LIVEKIT_SDK_INTEGRITY}" '
            f'crossorigin="anonymous">') in page
    assert '"livekitUrl": "wss://livekit.example.com"' in page


async def test_check_says_whether_the_livekit_server_answers(tmp_path, sandbox, livekit):
    from tests.test_daemon import _cli

    def config(livekit_url: str) -> str:
        path = tmp_path / "bridge.toml"
        path.write_text(f'''
[helpdesk]
url = "{sandbox.url}"
api_key = "{DEFAULT_API_KEY}"
[storage]
url = "sqlite+aiosqlite:///{tmp_path / 'check.db'}"
[http]
public_url = "https://bridge.example.com"
[calls]
livekit_url = "{livekit_url}"
''')
        return str(path)

    good = await asyncio.to_thread(_cli, "check", "--config", config(f"ws://{livekit.url}"))
    assert good.returncode == 0, good.stdout + good.stderr
    assert f"ok   calls: the LiveKit server {livekit.url} answers" in good.stdout
    closed = free_port()
    bad = await asyncio.to_thread(_cli, "check", "--config", config(f"ws://127.0.0.1:{closed}"))
    assert bad.returncode == 1
    assert f"FAIL calls: the LiveKit server 127.0.0.1:{closed} is not reachable" in bad.stdout


async def test_the_call_state_and_its_end_hold_across_a_restart(call, sandbox):
    """Ended by the helpdesk, then the bridge restarted: the page still says the call ended
    (it said "live" when the state was kept in memory), and "End call" sends nothing."""
    import aiohttp

    bridge, console, url = call
    end = parse_qs(urlsplit(url).fragment)["end"][0]
    conversation = next(iter(sandbox.conversations.values()))
    await sandbox.sate_left_call(conversation.ticket_chat_id)
    await console.expect("lee", "The call has ended.")
    await bridge.stop()
    restarted = Bridge(bridge.settings, [ConsoleHarness()])
    await restarted.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{restarted.http.url}/call/state", json={"end": end}) as answer:
                assert (await answer.json())["state"] == "sate_left"
            async with http.post(f"{restarted.http.url}/call/end", json={"end": end}) as answer:
                assert answer.status == 202
        await asyncio.sleep(0.5)
        assert not [e for e, _ in sandbox.requests if e == "close_call_support"]
    finally:
        await restarted.stop()


async def test_a_call_invite_heard_again_after_the_call_ended_leaves_it_ended(call, sandbox):
    """The helpdesk's call_support can reach the bridge twice, the copy late: replayed, or
    stored by a daemon that worked the customer before (bridge/forwarding.py). The page
    must go on saying the call ended, not "live" again."""
    import aiohttp

    from bridge.sandbox.wire import envelope, livekit_token

    bridge, console, url = call
    end = parse_qs(urlsplit(url).fragment)["end"][0]
    conversation = next(iter(sandbox.conversations.values()))
    room = conversation.ticket_chat_id
    started = {"token": livekit_token(room, conversation.session_id), "room": room,
               "ticket_chat_id": room, **conversation.call}
    await sandbox.sate_left_call(room)
    await console.expect("lee", "The call has ended.")
    await sandbox.emit_raw("call_support", envelope("", "Call started", started), room=room)
    await asyncio.sleep(0.5)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{bridge.http.url}/call/state", json={"end": end}) as answer:
            assert (await answer.json())["state"] == "sate_left"
    assert len([t for t in console.shown_texts("lee") if "Your voice call is ready" in t]) == 1
