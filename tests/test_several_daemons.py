"""Several daemons on one PostgreSQL, as real processes: they share the customers out
(bridge/shards.py) and answer each once, whichever daemon Telegram posts to; a stop hands
over, a death is noticed at once, a daemon frozen past its leases sends nothing when it
wakes, and a daemon with another configuration is refused."""
from __future__ import annotations

import asyncio
import re
import signal
import time
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from bridge.sandbox import DEFAULT_API_KEY
from bridge.shards import SHARDS
from testing.local import free_port
from tests.daemon import Daemon, write_config
from tests.test_telegram import ANN, TOKEN, telegram  # noqa: F401 (a fixture)

pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
CHATS = list(range(9001, 9013))  # twelve customers: some in every daemon's shards


def config(tmp_path, sandbox, database_url, lease_seconds: float, name: str = "bridge",
           helpdesk_url: str | None = None):
    return write_config(tmp_path / f"{name}.toml", helpdesk_url or sandbox.url, DEFAULT_API_KEY,
                        database_url, extra=f"[cluster]\nlease_seconds = {lease_seconds}\n")


async def _get(daemon: Daemon, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{daemon.port}{path}") as response:
            return response.status, await response.text()


async def _shards_held(daemon: Daemon) -> int:
    _status, text = await _get(daemon, "/metrics")
    return int(float(re.search(r"^bridge_shards_held (\S+)", text, re.M).group(1)))


async def _until_shared(*daemons: Daemon) -> None:
    """Each holds its share of the shards."""
    share = -(-SHARDS // len(daemons))
    for _ in range(200):
        held = [await _shards_held(d) for d in daemons]
        if sum(held) == SHARDS and max(held) <= share:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the shards were never shared out: {held}")


async def _say_and_see_answered(telegram, sandbox, texts: dict[int, str],  # noqa: F811
                                timeout: float = 30) -> None:
    for chat, text in texts.items():
        telegram.say(chat, text)
    await _all_answered_once(telegram, sandbox, texts, timeout)


async def _all_answered_once(telegram, sandbox, texts: dict[int, str],  # noqa: F811
                             timeout: float = 30) -> None:
    """Every chat got SATE's answer to its text, once, and the helpdesk got each text once."""
    for chat, text in texts.items():
        await telegram.wait_for_text(chat, f'You said: "{text}"', timeout=timeout)
    await asyncio.sleep(1)  # nothing more comes
    for chat, text in texts.items():
        answers = [m for m in telegram.sent_to(chat) if f'You said: "{text}"' in m.get("text", "")]
        assert len(answers) == 1, (chat, answers)
        assert [m["message"] for m in sandbox.received].count(text) == 1, text


@pytest.fixture
async def telegram_daemons(tmp_path, sandbox, database_url, telegram):  # noqa: F811
    """start(mode, lease_seconds): a daemon with the Telegram adapter, on its own port (its
    public URL); each one still running at the end is stopped, and must exit cleanly."""
    started: list[Daemon] = []

    async def start(mode: str = "webhook", lease_seconds: float = 10) -> Daemon:
        port = free_port()
        path = write_config(
            tmp_path / f"bridge-{len(started)}.toml", sandbox.url, DEFAULT_API_KEY,
            database_url, port=port, public_url=f"http://127.0.0.1:{port}",
            extra=f'[telegram]\ntoken = "{TOKEN}"\napi_url = "{telegram.url}"\n'
                  f'mode = "{mode}"\npoll_timeout = 1\n\n'
                  f'[cluster]\nlease_seconds = {lease_seconds}\n')
        daemon = await Daemon(path).start()
        daemon.port, daemon.config = port, path
        started.append(daemon)
        await _until_ready(daemon)
        return daemon

    yield start
    for daemon in reversed(started):
        if daemon.process.returncode is None:
            assert await daemon.stop() == 0


async def _until_ready(daemon: Daemon) -> None:
    for _ in range(200):
        if daemon.process.returncode is not None:
            raise AssertionError(f"exited with {daemon.process.returncode}")
        try:
            if (await _get(daemon, "/readyz"))[0] == 200:
                return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("never ready")


async def test_two_daemons_share_the_customers_and_answer_each_once(
        sandbox, telegram, telegram_daemons):  # noqa: F811
    """Behind a load balancer (Telegram posts to the daemon that set the webhook last) each
    daemon works half the customers: what reaches the other one is stored for it, and
    every customer is answered once."""
    first = await telegram_daemons()
    telegram.say(ANN, "hello")
    await telegram.wait_for_text(ANN, 'You said: "hello"', timeout=20)
    second = await telegram_daemons()
    await _until_shared(first, second)
    assert (await _get(second, "/readyz")) == (200, f"ready, working {SHARDS // 2} of "
                                                    f"{SHARDS} shards of the customers\n")
    texts = {chat: f"question of {chat}" for chat in CHATS}
    await _say_and_see_answered(telegram, sandbox, texts)
    relayed = []
    for daemon in (first, second):
        metrics = (await _get(daemon, "/metrics"))[1]
        relayed.append(sum(float(n) for n in re.findall(
            r'^bridge_messages_relayed_total\{direction="to_customer",platform="telegram"\} '
            r'(\S+)', metrics, re.M)))
        assert b"forwarded event" not in daemon.log()  # none dropped
    assert all(relayed), relayed  # both worked customers
    # Telegram posted everything to the second daemon, which stored the first one's share
    forwarded = re.search(r"^bridge_events_forwarded_total (\S+)",
                          (await _get(second, "/metrics"))[1], re.M).group(1)
    assert float(forwarded) >= 1


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
async def test_a_stop_or_a_death_hands_the_customers_over_at_once(
        sandbox, telegram, telegram_daemons, how):  # noqa: F811
    """A rolling deploy (SIGTERM) or a crash (SIGKILL): the other daemon carries on for
    every customer within a second or two, not after the leases (30 s here) run out, and
    nothing is doubled."""
    first = await telegram_daemons(lease_seconds=30)
    second = await telegram_daemons(lease_seconds=30)
    await _until_shared(first, second)
    survivor, gone = (first, second) if how == "SIGTERM" else (second, first)
    started = time.monotonic()
    gone.signal(getattr(signal, how))
    await gone.wait()
    # Telegram posts to the daemon that set the webhook last; a balancer would now send
    # everything to the survivor.
    telegram.webhook = {**telegram.webhook, "url": telegram.webhook["url"].replace(
        f":{gone.port}/", f":{survivor.port}/")}
    texts = {chat: f"after {how} {chat}" for chat in CHATS}
    await _say_and_see_answered(telegram, sandbox, texts, timeout=20)
    assert time.monotonic() - started < 15
    assert await _shards_held(survivor) == SHARDS
    metrics = (await _get(survivor, "/metrics"))[1]
    took = {name: float(value) for name, value in re.findall(
        r"^bridge_shard_takeover_seconds_(count|sum) (\S+)", metrics, re.M)}
    assert took["count"] >= SHARDS // 2 and took["sum"] / took["count"] < 5, took


async def test_a_daemon_frozen_past_its_leases_sends_nothing_when_it_wakes(
        sandbox, telegram, telegram_daemons):  # noqa: F811
    """SIGSTOP for longer than the leases: the other daemon takes the frozen one's
    customers over and shows SATE's answers; the frozen daemon, woken, shows nothing and
    exits with code 5."""
    first = await telegram_daemons(lease_seconds=3)
    second = await telegram_daemons(lease_seconds=3)
    await _until_shared(first, second)
    # Open conversations first: a message that opens one is done only once SATE answers,
    # so freezing before that is the window in which the helpdesk may get it twice.
    await _say_and_see_answered(telegram, sandbox, {chat: f"hello {chat}" for chat in CHATS})
    sandbox.behaviour.sate_delay = 6  # SATE answers after the takeover
    texts = {chat: f"frozen {chat}" for chat in CHATS}
    for chat, text in texts.items():
        telegram.say(chat, text)
    for _ in range(200):
        if all(text in [m["message"] for m in sandbox.received] for text in texts.values()):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # the daemons recorded that the helpdesk has them
    first.signal(signal.SIGSTOP)
    try:
        await _all_answered_once(telegram, sandbox, texts, timeout=25)
    finally:
        first.signal(signal.SIGCONT)
    assert await first.wait(timeout=20) == 5
    assert b"another daemon took customers of this one over" in first.stderr
    await _all_answered_once(telegram, sandbox, texts)  # still once each


async def test_an_answer_sent_while_a_daemon_is_frozen_reaches_its_customer(
        sandbox, telegram, telegram_daemons):  # noqa: F811
    """The helpdesk emits into rooms; the daemon working a customer is frozen (or dead), so
    it hears nothing, and no protocol replays it. The daemon that worked the customer
    before is still in their rooms: it stores what it hears for the shard's holder, and
    whoever holds the shard next shows it, once."""
    first = await telegram_daemons(lease_seconds=3)
    await _say_and_see_answered(telegram, sandbox, {chat: f"hello {chat}" for chat in CHATS})
    second = await telegram_daemons(lease_seconds=3)  # takes half the customers over
    await _until_shared(first, second)
    await asyncio.sleep(0.5)  # it joined their rooms
    second.signal(signal.SIGSTOP)
    try:
        for number, ticket in enumerate(sandbox.conversations):
            await sandbox.agent_reply(ticket, f"({number}) while frozen")
        expected = {f"({n}) while frozen" for n in range(len(sandbox.conversations))}
        for _ in range(300):
            shown = [m.get("text", "") for chat in CHATS for m in telegram.sent_to(chat)]
            if all(any(text in said for said in shown) for text in expected):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1)  # nothing more comes
        shown = [m.get("text", "") for chat in CHATS for m in telegram.sent_to(chat)]
        for text in expected:
            assert sum(text in said for said in shown) == 1, (text, shown)
    finally:
        second.signal(signal.SIGCONT)
    assert await second.wait(timeout=20) == 5


async def test_a_daemon_with_another_helpdesk_configuration_is_refused(
        tmp_path, sandbox, database_url):
    """Two deployments on one database would answer each other's customers."""
    first = await Daemon(config(tmp_path, sandbox, database_url, lease_seconds=10)).start()
    await first.say("hello")
    await first.expect('SATE: You said: "hello"')
    other = config(tmp_path, sandbox, database_url, lease_seconds=10, name="other",
                   helpdesk_url=sandbox.url.replace("127.0.0.1", "localhost"))
    second = await Daemon(other).start()
    assert await second.wait() == 4
    assert b"different helpdesk or bot configuration" in second.stderr
    assert await first.stop() == 0


async def test_status_names_the_daemons_their_shards_and_the_queues(
        telegram, telegram_daemons):  # noqa: F811
    first = await telegram_daemons()
    telegram.say(ANN, "hello")
    await telegram.wait_for_text(ANN, 'You said: "hello"', timeout=20)
    second = await telegram_daemons()
    await _until_shared(first, second)
    status = await Daemon(None, args=["status", "--config", str(first.config)]).start()
    assert await status.wait() == 0
    await status.stop()
    said = "\n".join(status.lines)
    assert f"shards: {SHARDS}, held by 2 daemons" in said
    daemons = [line for line in status.lines if line.startswith("daemon ")]
    assert len(daemons) == 2
    for daemon in (first, second):
        [line] = [line for line in daemons if f":{daemon.process.pid}:" in line]
        assert "works shards " in line
    assert "queued to helpdesk: 0" in said and "open conversations: 1" in said


async def test_a_daemon_whose_database_session_is_cut_pauses_and_carries_on(make_bridge,
                                                                            database_url):
    """A database restart cuts every session, the one that says this daemon lives too:
    it stops sending at once (another daemon could take over), then takes its leases back,
    as nobody else did, and carries on."""
    from sqlalchemy.engine import make_url

    from tests.conftest import _admin

    bridge, console = await make_bridge()
    await console.say("ann", "hello")
    await console.expect("ann", 'You said: "hello"')
    await _admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                 f"'{make_url(database_url).database}' AND pid <> pg_backend_pid()")
    await asyncio.sleep(0.2)
    assert not bridge.shards.valid  # paused
    await console.say("ann", "after the cut")
    await console.expect("ann", 'You said: "after the cut"', timeout=15)
    assert bridge.shards.valid and len(bridge.shards.held) == SHARDS and not bridge.lost_lease


async def test_only_one_daemon_polls_telegram(sandbox, telegram, telegram_daemons):  # noqa: F811
    """Telegram answers a second poller with 409 Conflict, and each update goes to one of
    them: only the holder of shard 0 polls, and another takes it over when it stops."""
    first = await telegram_daemons("polling")
    telegram.say(ANN, "hello")
    await telegram.wait_for_text(ANN, 'You said: "hello"', timeout=20)
    second = await telegram_daemons("polling")
    await _until_shared(first, second)
    await asyncio.sleep(1.5)
    assert b"receiving by polling" not in second.log()
    texts = {chat: f"polled {chat}" for chat in CHATS}
    await _say_and_see_answered(telegram, sandbox, texts)
    assert await first.stop() == 0
    telegram.say(ANN, "and now?")
    await telegram.wait_for_text(ANN, 'You said: "and now?"', timeout=20)
    assert b"receiving by polling" in second.log()


async def test_the_call_page_works_on_every_daemon(sandbox, database_url):
    """A balancer may send the customer's call page to any daemon: each reads the call's
    state from the database, and "End call" reaches the helpdesk once, through the daemon
    that works the customer."""
    from bridge.app import Bridge
    from bridge.config import load_settings
    from testing.console import ConsoleHarness

    def settings():
        port = free_port()
        return load_settings({
            "helpdesk": {"url": sandbox.url, "api_key": DEFAULT_API_KEY, "request_timeout": 3},
            "storage": {"url": database_url},
            "http": {"listen": f"127.0.0.1:{port}", "public_url": "https://bridge.example.com"},
            "calls": {"livekit_url": "wss://livekit.example.com"},
        }, env={})

    console = ConsoleHarness()
    first, second = Bridge(settings(), [console]), Bridge(settings(), [ConsoleHarness()])
    await first.start()
    try:
        await first.relay.link.wait_connected(10)
        await console.say("lee", "hello")
        await console.expect("lee", "You said")
        await console.command("lee", "call")
        invite = await console.expect("lee", "Your voice call is ready")
        end = parse_qs(urlsplit(invite.message.url).fragment)["end"][0]
        await second.start()
        async with aiohttp.ClientSession() as http:
            page = f"{second.http.url}/call"
            async with http.post(f"{page}/state", json={"end": end}) as answer:
                assert (await answer.json())["state"] == "live"
            async with http.post(f"{page}/end", json={"end": end}) as answer:
                assert answer.status == 202
            async with http.post(f"{page}/end", json={"end": end}) as answer:
                assert answer.status == 202  # pressed twice: still one request
            for _ in range(100):
                if [e for e, _ in sandbox.requests if e == "close_call_support"]:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            assert [e for e, _ in sandbox.requests if e == "close_call_support"] == \
                ["close_call_support"]
            async with http.post(f"{page}/state", json={"end": end}) as answer:
                assert (await answer.json())["state"] == "closed"
    finally:
        await second.stop()
        await first.stop()
