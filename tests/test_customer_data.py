"""What an operator answers a person who asks for their data (`helpdesk-bridge customers`):
list, show, export, on SQLite and PostgreSQL, through the real CLI where it matters."""
from __future__ import annotations

import asyncio
import json
import sys

import pytest

from bridge.customer_data import CustomerData, UnknownCustomer
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
