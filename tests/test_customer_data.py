"""What an operator answers a person who asks for their data, or to be erased, and how
they stop an abusive account (`helpdesk-bridge customers`): list, show, export, forget,
block, unblock, and retention; on SQLite and PostgreSQL, through the real CLI where it
matters, with the daemon running (it makes the change) and without."""
from __future__ import annotations

import asyncio
import json
import sys
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web

from bridge.customer_data import CustomerData, UnknownCustomer
from bridge.metrics import Metrics
from bridge.retention import Pruner
from bridge.store.models import utcnow
from tests.daemon import write_config


async def _cli(config, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "customers", *args, "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


async def test_an_export_holds_everything_said_and_shown(make_bridge, sandbox, database_url,
                                                          tmp_path):
    bridge, console = await make_bridge()
    await console.say("ann", "my card number ends in 4242")
    await console.expect("ann", 'You said: "my card number ends in 4242"')
    await console.say("bob", "hello")
    await console.expect("bob", 'You said: "hello"')

    data = CustomerData(bridge.store)
    listed = {row["customer"]: row for row in await data.list()}
    assert set(listed) == {"console:console:ann", "console:console:bob"}
    assert listed["console:console:ann"]["open"] == 1

    exported = await data.export("console:ann")  # the short form, with one bot
    said = [row["body"]["text"] for row in exported["rows"]["to_helpdesk"]]
    shown = [row["body"]["text"] for row in exported["rows"]["to_customer"]]
    assert said == ["my card number ends in 4242"]
    assert any("my card number ends in 4242" in text for text in shown)  # SATE's answer
    assert exported["session_id"] == next(iter(sandbox.conversations.values())).session_id
    assert "hello" not in json.dumps(exported)  # nothing of bob's
    assert "erase it there" in exported["helpdesk"]

    config = write_config(tmp_path / "bridge.toml", sandbox.url, "any-key", database_url)
    code, out, _ = await _cli(config, "export", "console:console:ann")
    assert code == 0 and json.loads(out)["rows"] == json.loads(json.dumps(exported["rows"]))
    code, out, _ = await _cli(config, "show", "console:ann")
    shown = json.loads(out)
    assert code == 0 and shown["conversations"][0]["state"] == "open"
    code, out, _ = await _cli(config, "list")
    assert code == 0 and "console:console:ann" in out and "console:console:bob" in out
    code, _, err = await _cli(config, "export", "console:nobody")
    assert code == 1 and "no customer console:nobody" in err
    code, _, err = await _cli(config, "show", "ann")
    assert code == 1 and "PLATFORM:ID" in err


async def test_a_name_shared_by_two_bots_must_say_which(store):
    for account in ("bot-a", "bot-b"):
        await store.customer_for("telegram", account, "42", "42")
    with pytest.raises(UnknownCustomer, match="names 2 customers"):
        await CustomerData(store).find("telegram:42")
    found = await CustomerData(store).find("telegram:bot-b:42")
    assert found.account == "bot-b"


async def _served(url: str) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as response:
            return response.status


async def test_a_forgotten_customer_leaves_nothing_and_starts_afresh(make_bridge, sandbox,
                                                                     database_url, tmp_path):
    bridge, console = await make_bridge(public_url="http://127.0.0.1:1")  # links only
    bridge.http.public_url = bridge.http.url

    async def fetch(_request, file_id: str) -> web.Response:
        return web.Response(text=f"the file {file_id}")
    bridge.http.serve_files("/files/test/", fetch)
    await console.say("ann", "my address is 1 Main St")
    await console.expect("ann", "You said")
    link = bridge.http.file_link("/files/test/", "passport-scan")
    ann = await CustomerData(bridge.store).find("console:ann")
    await bridge.store.accept_message(ann.id, {"text": "", "attachment": {"url": link}}, "f1")
    await console.say("bob", "hello")
    await console.expect("bob", "You said")
    assert await _served(link) == 200

    config = write_config(tmp_path / "bridge.toml", sandbox.url, "any-key", database_url)
    code, out, err = await _cli(config, "forget", "console:ann")  # the running bridge does it
    assert code == 0, err
    assert "forgot console:console:ann" in out and "erase it there too" in out
    assert ann.session_id in out and "done by the daemon working them" in out

    assert await _served(link) == 410  # its signature is still valid: revoked
    with pytest.raises(UnknownCustomer):
        await CustomerData(bridge.store).find("console:ann")
    for table in ("customers", "conversations", "to_helpdesk", "to_customer"):
        column = "id" if table == "customers" else "customer_id"
        assert await bridge.store._db.read(
            f"SELECT count(*) FROM {table} WHERE {column} = ?", ann.id) == (0,), table
    assert (await CustomerData(bridge.store).find("console:bob")).session_id

    await console.say("ann", "hello again")  # a new customer, with a new session
    await console.expect("ann", 'You said: "hello again"')
    again = await CustomerData(bridge.store).find("console:ann")
    assert again.session_id != ann.session_id
    assert "my address" not in json.dumps(await CustomerData(bridge.store).export("console:ann"))


async def test_a_blocked_customer_is_told_once_and_nothing_is_relayed(make_bridge, sandbox,
                                                                      database_url, tmp_path):
    _bridge, console = await make_bridge()
    await console.say("max", "first")
    await console.expect("max", 'You said: "first"')
    config = write_config(tmp_path / "bridge.toml", sandbox.url, "any-key", database_url)
    code, out, err = await _cli(config, "block", "console:max")
    assert code == 0 and "blocked console:console:max" in out, err

    await console.say("max", "spam 1")
    await console.say("max", "spam 2")
    await console.expect("max", "no longer passed on to our support team")
    await asyncio.sleep(2.5)
    assert len([t for t in console.shown_texts("max") if "no longer passed on" in t]) == 1
    assert [m["message"] for m in sandbox.received] == ["first"]

    code, out, err = await _cli(config, "unblock", "console:max")
    assert code == 0 and "unblocked" in out, err
    await console.say("max", "sorry about that")
    await console.expect("max", 'You said: "sorry about that"')


async def test_with_no_daemon_running_the_cli_makes_the_change_itself(store, sandbox,
                                                                      database_url, tmp_path):
    customer = await store.customer_for("telegram", "bot", "777", "777")
    config = write_config(tmp_path / "bridge.toml", sandbox.url, "any-key", database_url)
    code, out, err = await _cli(config, "forget", "telegram:777")
    assert code == 0 and "forgot telegram:bot:777" in out, err
    assert "done by the daemon" not in out
    assert not await store.customers_named("telegram", "777")
    assert customer.session_id in out


async def test_customers_idle_for_the_retention_period_are_forgotten(make_bridge, sandbox):
    bridge, console = await make_bridge()
    for name in ("old", "new"):
        await console.say(name, "bye")
        await console.press(name, "5")
        await console.press(name, "Skip")
        await console.expect(name, "Thanks for your feedback")
    old = await CustomerData(bridge.store).find("console:old")
    long_ago = utcnow() - timedelta(days=40)
    await bridge.store.set_customer(old.id, created_at=long_ago)
    await bridge.store._db.write("UPDATE conversations SET created_at = ?, closed_at = ? "
                                 "WHERE customer_id = ?", bridge.store._db.from_time(long_ago),
                                 bridge.store._db.from_time(long_ago), old.id)

    pruner = Pruner(bridge.store, 0, Metrics(), forget_after_days=30)
    assert await pruner.forget_idle_customers() == 1
    for _ in range(100):  # the daemon working them carries it out
        if not await bridge.store.customers_named("console", "old"):
            break
        await asyncio.sleep(0.1)
    assert not await bridge.store.customers_named("console", "old")
    assert await bridge.store.customers_named("console", "new")
