"""Several daemons on one PostgreSQL, as real processes: one works the customers, the
others stand by and store what the platforms send them for it; a stop hands over, a death
is noticed at once, a daemon frozen past its lease sends nothing when it wakes, and a
daemon with another configuration is refused."""
from __future__ import annotations

import asyncio
import signal
import time
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from bridge.sandbox import DEFAULT_API_KEY
from testing.local import free_port
from tests.daemon import Daemon, write_config
from tests.test_telegram import ANN, TOKEN, telegram  # noqa: F401 (a fixture)

pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


def config(tmp_path, sandbox, database_url, lease_seconds: float, name: str = "bridge",
           helpdesk_url: str | None = None):
    return write_config(tmp_path / f"{name}.toml", helpdesk_url or sandbox.url, DEFAULT_API_KEY,
                        database_url, extra=f"[cluster]\nlease_seconds = {lease_seconds}\n")


async def _working_and_standing_by(path) -> tuple[Daemon, Daemon]:
    """Two daemons of one config: the first answered a customer, the second stands by."""
    first = await Daemon(path).start()
    await first.say("hello")
    await first.expect('SATE: You said: "hello"')
    second = await Daemon(path).start()
    await _standing_by(second)
    return first, second


async def _standing_by(daemon: Daemon) -> None:
    """Started, and not working: it says so in its log."""
    for _ in range(100):
        if daemon.process.returncode is not None:
            raise AssertionError(f"exited with {daemon.process.returncode}")
        await asyncio.sleep(0.1)
        if b"standing by" in daemon.log():
            return
    raise AssertionError("the second daemon never said it stands by")


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
async def test_a_standby_takes_over_at_once_when_the_working_daemon_stops_or_dies(
        tmp_path, sandbox, database_url, how):
    """A rolling deploy (SIGTERM) or a crash (SIGKILL): the standby carries on within a
    second or two, not after the lease (30 s here) runs out, and nothing is doubled."""
    path = config(tmp_path, sandbox, database_url, lease_seconds=30)
    first, second = await _working_and_standing_by(path)
    await second.say("and now?")  # waits in its input until it works the customers
    await asyncio.sleep(0.5)
    assert [m["message"] for m in sandbox.received] == ["hello"]  # the standby sent nothing
    started = time.monotonic()
    first.signal(getattr(signal, how))
    await first.wait()
    await second.expect('SATE: You said: "and now?"', timeout=15)
    assert time.monotonic() - started < 10
    assert await second.stop() == 0
    assert [m["message"] for m in sandbox.received] == ["hello", "and now?"]
    assert not [line for line in first.lines if "and now?" in line]


async def test_a_daemon_frozen_past_its_lease_sends_nothing_when_it_wakes(
        tmp_path, sandbox, database_url):
    """SIGSTOP for longer than the lease: the standby takes the customers over and shows
    SATE's answer; the frozen daemon, woken, shows nothing and exits with code 5."""
    path = config(tmp_path, sandbox, database_url, lease_seconds=3)
    first, second = await _working_and_standing_by(path)
    sandbox.behaviour.sate_delay = 6  # SATE answers after the takeover
    await first.say("and now?")
    for _ in range(100):
        if "and now?" in [m["message"] for m in sandbox.received]:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # the first daemon has recorded that the helpdesk has it
    first.signal(signal.SIGSTOP)
    try:
        await second.expect('SATE: You said: "and now?"', timeout=20)
    finally:
        first.signal(signal.SIGCONT)
    assert await first.wait(timeout=20) == 5
    await first.stop()
    assert not [line for line in first.lines if 'You said: "and now?"' in line]
    assert b"another daemon took this database's customers over" in first.stderr
    assert await second.stop() == 0
    assert [m["message"] for m in sandbox.received] == ["hello", "and now?"]


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


async def test_status_names_the_daemons_and_the_queues(tmp_path, sandbox, database_url):
    path = config(tmp_path, sandbox, database_url, lease_seconds=10)
    first, second = await _working_and_standing_by(path)
    status = await Daemon(None, args=["status", "--config", str(path)]).start()
    assert await status.wait() == 0
    await status.stop()
    said = "\n".join(status.lines)
    assert f":{first.process.pid}:" in said.split("working daemon: ")[1].splitlines()[0]
    daemons = [line for line in status.lines if line.startswith("daemon ")]
    assert any(f":{first.process.pid}:" in line and line.endswith("working")
               for line in daemons)
    assert any(f":{second.process.pid}:" in line and line.endswith("standing by")
               for line in daemons)
    assert len(daemons) == 2
    assert "queued to helpdesk: 0" in said and "open conversations: 1" in said
    assert await second.stop() == 0
    assert await first.stop() == 0


async def test_a_daemon_whose_database_session_is_cut_pauses_and_carries_on(make_bridge,
                                                                            database_url):
    """A database restart cuts every session, the one that says this daemon lives too:
    it stops sending at once (another daemon could take over), then takes its lease back,
    as nobody else did, and carries on."""
    from sqlalchemy.engine import make_url

    from tests.conftest import _admin

    bridge, console = await make_bridge()
    await console.say("ann", "hello")
    await console.expect("ann", 'You said: "hello"')
    await _admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                 f"'{make_url(database_url).database}' AND pid <> pg_backend_pid()")
    await asyncio.sleep(0.2)
    assert not bridge.leadership.leading  # paused
    await console.say("ann", "after the cut")
    await console.expect("ann", 'You said: "after the cut"', timeout=15)
    assert bridge.leadership.leading and not bridge.lost_lease


@pytest.fixture
async def telegram_daemons(tmp_path, sandbox, database_url, telegram):  # noqa: F811
    """start(mode): a daemon with the Telegram adapter, on its own port (its public URL);
    each one still running at the end is stopped, and must exit cleanly."""
    started: list[Daemon] = []

    async def start(mode: str) -> Daemon:
        port = free_port()
        path = write_config(
            tmp_path / f"bridge-{len(started)}.toml", sandbox.url, DEFAULT_API_KEY,
            database_url, port=port, public_url=f"http://127.0.0.1:{port}",
            extra=f'[telegram]\ntoken = "{TOKEN}"\napi_url = "{telegram.url}"\n'
                  f'mode = "{mode}"\npoll_timeout = 1\n\n[cluster]\nlease_seconds = 10\n')
        daemon = await Daemon(path).start()
        daemon.port = port
        started.append(daemon)
        return daemon

    yield start
    for daemon in reversed(started):
        if daemon.process.returncode is None:
            assert await daemon.stop() == 0


async def test_a_webhook_update_that_reaches_a_standing_by_daemon_is_answered_once(
        sandbox, telegram, telegram_daemons):  # noqa: F811
    """Behind a load balancer any daemon may get an update: the one standing by stores it,
    and the working one answers it, once. The standby is ready for the balancer."""
    first = await telegram_daemons("webhook")
    await telegram.wait_for(lambda: telegram.webhook and
                            f":{first.port}/" in telegram.webhook["url"], timeout=20)
    telegram.say(ANN, "hello")
    await telegram.wait_for_text(ANN, 'You said: "hello"', timeout=20)
    second = await telegram_daemons("webhook")
    await _standing_by(second)
    # Telegram now posts to the second daemon (the last to set the webhook).
    await telegram.wait_for(lambda: f":{second.port}/" in telegram.webhook["url"], timeout=20)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{second.port}/readyz") as response:
            assert response.status == 200
            assert "standing by" in await response.text()
        telegram.say(ANN, "and now?")
        await telegram.wait_for_text(ANN, 'You said: "and now?"', timeout=20)
        await asyncio.sleep(1)  # nothing more comes
        answers = [m for m in telegram.sent_to(ANN) if "You said" in m.get("text", "")]
        assert len(answers) == 2
        async with http.get(f"http://127.0.0.1:{second.port}/metrics") as response:
            assert "bridge_events_forwarded_total 1.0" in await response.text()
    assert [m["message"] for m in sandbox.received] == ["hello", "and now?"]
    assert b"forwarded event" not in second.log()  # none dropped


async def test_only_the_working_daemon_polls_telegram(telegram, telegram_daemons):  # noqa: F811
    """Telegram answers a second poller with 409 Conflict, and each update goes to one of
    them: the standby does not poll until it works the customers."""
    first = await telegram_daemons("polling")
    telegram.say(ANN, "hello")
    await telegram.wait_for_text(ANN, 'You said: "hello"', timeout=20)
    second = await telegram_daemons("polling")
    await _standing_by(second)
    await asyncio.sleep(1.5)
    assert b"receiving by polling" not in second.log()
    assert await first.stop() == 0
    telegram.say(ANN, "and now?")
    await telegram.wait_for_text(ANN, 'You said: "and now?"', timeout=20)
    assert b"receiving by polling" in second.log()


async def test_the_call_page_works_on_a_standing_by_daemon(sandbox, database_url):
    """A balancer may send the customer's call page to any daemon: a standby reads the
    call's state from the database, and its "End call" reaches the helpdesk once, through
    the working daemon."""
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
        assert second.relay is None  # standing by
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
