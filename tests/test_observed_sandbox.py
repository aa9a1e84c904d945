"""The watched sandbox that bench.scale times a re-join with (testing/observed_sandbox.py)."""
from __future__ import annotations

import asyncio

import pytest

from testing.observed_sandbox import ObservedSandbox
from tests.conftest import serving


@pytest.fixture
async def sandbox():
    """make_bridge's helpdesk, watched."""
    async with serving(ObservedSandbox()) as helpdesk:
        yield helpdesk


async def test_the_sandbox_says_which_rooms_are_joined_again_after_a_drop(make_bridge, sandbox):
    """What bench.scale reads to time a re-join, with the sandbox in another process."""
    import aiohttp

    _bridge, console = await make_bridge()
    await console.say("una", "hello")
    await console.expect("una", "You said")
    async with aiohttp.ClientSession(sandbox.url) as http:
        async with http.get("/sandbox/rooms") as response:
            before = await response.json()
        async with http.post("/sandbox/admin/drop-connections") as response:
            assert response.status == 200
        for _ in range(100):
            async with http.get("/sandbox/rejoined") as response:
                rejoined = (await response.json())["conversation_rooms"]
            if rejoined:
                break
            await asyncio.sleep(0.05)
        async with http.get("/sandbox/rooms") as response:
            after = await response.json()
    assert rejoined == 1
    assert before["conversation_rooms_joined"] == after["conversation_rooms_joined"] == 1
    assert len(after["connect_attempts"]) > len(before["connect_attempts"])
