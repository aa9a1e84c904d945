"""The daemon as a process: killed with SIGKILL at the worst moments, a refused key, and
no secret in its logs at DEBUG, in both formats."""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest

from bridge.sandbox import DEFAULT_API_KEY
from bridge.store import make_engine, upgrade
from tests.daemon import Daemon, write_config


@pytest.fixture
def config(tmp_path, sandbox, database_url):
    return write_config(tmp_path / "bridge.toml", sandbox.url, DEFAULT_API_KEY, database_url)


async def test_killed_between_storing_and_delivering_a_reply(config, sandbox):
    daemon = await Daemon(config, crash_point="to-customer-stored").start()
    await daemon.say("hello")
    assert await daemon.wait() == -signal.SIGKILL
    assert not [line for line in daemon.lines if "You said" in line]  # stored, not shown

    daemon = await Daemon(config).start()
    await daemon.expect('SATE: You said: "hello"')
    await asyncio.sleep(0.5)  # any second copy would have come by now
    assert await daemon.stop() == 0
    assert len([line for line in daemon.lines if 'You said: "hello"' in line]) == 1
    assert [m["message"] for m in sandbox.received] == ["hello"]


_SLOW_DONE = [
    """CREATE FUNCTION slow_done() RETURNS trigger AS $$
    BEGIN
        IF NEW.status = 'done' AND OLD.status <> 'done' THEN PERFORM pg_sleep(1); END IF;
        RETURN NEW;
    END $$ LANGUAGE plpgsql""",
    "CREATE TRIGGER slow_done BEFORE UPDATE ON to_helpdesk FOR EACH ROW EXECUTE FUNCTION slow_done()",
]


async def _make_marking_done_slow(database_url: str) -> None:
    """A database that takes a second to mark a message done: the reply to it, already on
    its way, must still not be stored first."""
    engine = make_engine(database_url)
    try:
        await upgrade(engine)
        async with engine.begin() as connection:
            for statement in _SLOW_DONE:
                await connection.exec_driver_sql(statement)
    finally:
        await engine.dispose()


# PostgreSQL only: slowing one kind of write down needs a server-side sleep (pg_sleep).
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("follow_up", [False, True], ids=["first-message", "follow-up"])
async def test_a_reply_is_stored_only_after_its_message_is_marked_done(
        config, sandbox, database_url, follow_up):
    await _make_marking_done_slow(database_url)
    sent = ["hello"]
    if follow_up:
        daemon = await Daemon(config).start()
        await daemon.say("hello")
        await daemon.expect('You said: "hello"')
        assert await daemon.stop() == 0
        sent.append("order 4567")

    daemon = await Daemon(config, crash_point="to-customer-stored").start()
    await daemon.say(sent[-1])
    assert await daemon.wait() == -signal.SIGKILL  # killed the moment SATE's reply was stored

    daemon = await Daemon(config).start()
    await daemon.expect(f'You said: "{sent[-1]}"')
    await asyncio.sleep(1.5)  # a message sent again would be answered again by now
    assert await daemon.stop() == 0
    assert len([line for line in daemon.lines if f'You said: "{sent[-1]}"' in line]) == 1
    assert [m["message"] for m in sandbox.received] == sent


async def test_killed_between_storing_and_sending_a_customer_message(config, sandbox):
    daemon = await Daemon(config, crash_point="to-helpdesk-stored").start()
    await daemon.say("my order is late")
    assert await daemon.wait() == -signal.SIGKILL
    assert sandbox.received == []  # stored, never sent

    daemon = await Daemon(config).start()
    await daemon.expect('You said: "my order is late"')
    await daemon.say("order 4567")
    await daemon.expect('You said: "order 4567"')
    assert await daemon.stop() == 0
    assert [m["message"] for m in sandbox.received] == ["my order is late", "order 4567"]


async def test_sigterm_stops_gracefully(config):
    daemon = await Daemon(config).start()
    await daemon.say("hello")
    await daemon.expect("You said")
    assert await daemon.stop() == 0


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bridge", *args], capture_output=True,
                          text=True, timeout=60)


async def test_check_says_plainly_that_the_key_was_refused(tmp_path, sandbox, database_url):
    config = write_config(tmp_path / "bridge.toml", sandbox.url, "wrong-key-123", database_url)
    result = await asyncio.to_thread(_cli, "check", "--config", str(config))
    assert result.returncode == 1
    assert "FAIL helpdesk refused the API key (status 401)" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert "wrong-key-123" not in result.stdout + result.stderr

    good = write_config(tmp_path / "good.toml", sandbox.url, DEFAULT_API_KEY, database_url)
    result = await asyncio.to_thread(_cli, "check", "--config", str(good))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: ready to run" in result.stdout


async def test_run_with_a_refused_key_exits_with_a_clear_message(tmp_path, sandbox, database_url):
    config = write_config(tmp_path / "bridge.toml", sandbox.url, "wrong-key-123", database_url)
    daemon = await Daemon(config).start()
    assert await daemon.wait() == 3
    stderr = daemon.stderr.decode()
    assert "helpdesk refused the API key" in stderr
    assert sandbox.refused <= 4  # no reconnect storm
    assert "wrong-key-123" not in stderr


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_the_api_key_is_in_no_log_line_at_debug(tmp_path, sandbox, database_url, fmt):
    secret = "hk-live-SECRET-4242-abcdef"
    sandbox.api_keys.add(secret)
    config = write_config(tmp_path / "bridge.toml", sandbox.url, secret, database_url,
                          level="DEBUG", fmt=fmt)
    daemon = await Daemon(config).start()
    await daemon.say("hello")
    await daemon.expect("You said")
    await sandbox.drop_connections()  # reconnecting logs the URL again
    await asyncio.sleep(1.0)
    await daemon.say("it is resolved")
    await daemon.expect("Did this solve")
    await daemon.stop()
    output = daemon.stderr.decode() + "\n".join(daemon.lines)
    assert "DEBUG" in output or '"level": "DEBUG"' in output  # it really logged at DEBUG
    assert "token=***" in output  # the transport logged its URL, redacted
    assert secret not in output
    assert secret not in output.replace("%2D", "-")
    # a line about a customer names it by its opaque ids
    opened = next(line for line in output.splitlines() if "conversation opened" in line)
    assert "session_id" in opened and "ticket_chat_id" in opened


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_second_daemon_on_the_same_sqlite_file_refuses_to_start(config, sandbox):
    """Two daemons on one SQLite file would both work every queue and show each reply
    twice: the second one says so in one line and exits with its own code."""
    first = await Daemon(config).start()
    await first.say("hello")
    await first.expect('SATE: You said: "hello"')
    second = await Daemon(config).start()
    assert await second.wait() == 4
    refusal = second.stderr.decode()
    assert "another helpdesk-bridge (pid" in refusal and "SQLite holds one daemon" in refusal
    await first.say("and again")
    await first.expect('SATE: You said: "and again"')  # the first one carries on
    assert await first.stop() == 0
    assert [m["message"] for m in sandbox.received] == ["hello", "and again"]
    third = await Daemon(config).start()  # the lock went with the first: a restart starts
    await third.say("back")
    await third.expect('SATE: You said: "back"')
    assert await third.stop() == 0
