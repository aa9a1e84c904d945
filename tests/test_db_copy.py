"""`helpdesk-bridge db copy`: a deployment moves from SQLite to PostgreSQL and its customers
notice nothing (same session ids, the open conversation goes on); a source in use or a
target with rows is refused and left as it was."""
from __future__ import annotations

import asyncio
import sys
from contextlib import asynccontextmanager

import pytest

from bridge.app import Bridge
from bridge.config import load_settings
from bridge.sandbox import DEFAULT_API_KEY
from testing.console import ConsoleHarness

pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@asynccontextmanager
async def _bridge(sandbox, url: str):
    settings = load_settings({
        "helpdesk": {"url": sandbox.url, "api_key": DEFAULT_API_KEY, "request_timeout": 3},
        "storage": {"url": url}, "http": {"listen": "127.0.0.1:0"}}, env={})
    console = ConsoleHarness()
    bridge = Bridge(settings, [console])
    await bridge.start()
    await bridge.relay.link.wait_connected(10)
    try:
        yield console
    finally:
        await asyncio.wait_for(bridge.stop(), 20)


async def _copy(source: str, target: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "db", "copy", "--from", source, "--to", target,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, output.decode()


async def test_a_copy_to_postgresql_goes_on_with_the_open_conversation(tmp_path, sandbox,
                                                                       database_url):
    sqlite = f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"
    async with _bridge(sandbox, sqlite) as console:
        await console.say("ann", "my parcel is lost")
        await console.expect("ann", 'You said: "my parcel is lost"')
        await console.say("bob", "hello")
        await console.expect("bob", 'You said: "hello"')
    sessions = {c.session_id for c in sandbox.conversations.values()}

    code, output = await _copy(sqlite, database_url)
    assert code == 0, output
    assert "customers" in output and " 2 rows" in output and "checked" in output

    async with _bridge(sandbox, database_url) as console:
        await console.say("ann", "any news?")
        await console.expect("ann", 'You said: "any news?"')
        await console.say("cy", "first time here")  # a new customer: new ids go on after
        await console.expect("cy", 'You said: "first time here"')
    ann = next(c for c in sandbox.conversations.values()
               if [m["message"] for m in c.messages][:1] == ["my parcel is lost"])
    assert "any news?" in [m["message"] for m in ann.messages]
    assert len(sandbox.conversations) == 3  # ann's went on: no new one for her
    assert sessions <= {c.session_id for c in sandbox.conversations.values()}


async def test_a_source_in_use_or_a_target_with_rows_is_refused(tmp_path, sandbox,
                                                                database_url):
    sqlite = f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"
    async with _bridge(sandbox, sqlite) as console:
        await console.say("ann", "hello")
        await console.expect("ann", 'You said: "hello"')
        code, output = await _copy(sqlite, database_url)
        assert code == 1 and "a daemon is running on the source database" in output

    code, output = await _copy(sqlite, database_url)  # the refusal left the target empty
    assert code == 0, output
    code, output = await _copy(sqlite, database_url)
    assert code == 1 and "the target database is not empty" in output
    code, output = await _copy(f"sqlite+aiosqlite:///{tmp_path / 'missing.db'}", database_url)
    assert code == 1 and "there is no SQLite database" in output
