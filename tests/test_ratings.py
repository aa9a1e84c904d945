"""A rating always reaches the helpdesk, once: it waits at most [ratings] comment_wait for
its optional comment, durably (a SIGKILL during the wait changes nothing), and with no wait
it goes at once. On SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import signal
import time

from bridge.sandbox import DEFAULT_API_KEY
from tests.daemon import Daemon, write_config


def _reviews(sandbox) -> list[dict]:
    return [data for event, data in sandbox.requests if event == "review_support"]


async def _until(condition, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("not within the time")
        await asyncio.sleep(0.05)


async def test_a_rating_left_without_a_comment_goes_alone_after_the_wait(make_bridge, sandbox):
    _bridge, console = await make_bridge(ratings={"comment_wait": 1.5})
    await console.say("una", "bye")
    await console.press("una", "5")
    await console.expect("una", "add a comment")
    rated = time.monotonic()
    await asyncio.sleep(0.8)
    assert not _reviews(sandbox)  # still waiting for the comment

    await _until(lambda: _reviews(sandbox))
    assert 1.5 <= time.monotonic() - rated < 1.5 + 2.5  # looked for every second here
    await console.expect("una", "Thanks for your feedback")  # the prompt's Skip is gone
    conversation = next(iter(sandbox.conversations.values()))
    assert conversation.review == {"rating": "5", "review": None}
    await asyncio.sleep(2)
    assert len(_reviews(sandbox)) == 1

    # Written after the rating went alone: a message like any other, not a second review.
    await console.say("una", "one more question")
    await console.expect("una", 'You said: "one more question"')
    assert len(_reviews(sandbox)) == 1


async def test_with_no_wait_the_rating_goes_at_once_and_no_comment_is_asked(make_bridge,
                                                                            sandbox):
    _bridge, console = await make_bridge(ratings={"comment_wait": 0})
    await console.say("vic", "bye")
    await console.press("vic", "4")
    await console.expect("vic", "Rated 4/5")
    await _until(lambda: _reviews(sandbox), timeout=5)
    assert next(iter(sandbox.conversations.values())).review == {"rating": "4", "review": None}

    await console.say("vic", "and another thing")  # a new conversation, not a comment
    await console.expect("vic", 'You said: "and another thing"')
    assert not [text for text in console.shown_texts("vic") if "add a comment" in text]
    assert len(_reviews(sandbox)) == 1


async def test_a_comment_in_time_still_goes_with_its_rating(make_bridge, sandbox):
    _bridge, console = await make_bridge(ratings={"comment_wait": 2})
    await console.say("wes", "bye")
    await console.press("wes", "3")
    await console.expect("wes", "add a comment")
    await console.say("wes", "kind people")
    await console.expect("wes", "Thanks for your feedback")
    await asyncio.sleep(3)  # past the wait: nothing more goes
    assert len(_reviews(sandbox)) == 1
    assert next(iter(sandbox.conversations.values())).review == {"rating": "3",
                                                                 "review": "kind people"}


async def test_a_rating_waiting_when_the_daemon_is_killed_goes_once_after_the_restart(
        tmp_path, sandbox, database_url):
    config = write_config(tmp_path / "bridge.toml", sandbox.url, DEFAULT_API_KEY,
                          database_url, extra="[ratings]\ncomment_wait = 3\n")
    daemon = await Daemon(config).start()
    await daemon.say("bye")
    await daemon.expect("How would you rate")
    await daemon.say("5")  # presses the fifth button: 5 stars
    await daemon.expect("add a comment")
    rated = time.monotonic()
    daemon.signal(signal.SIGKILL)
    assert await daemon.wait() == -signal.SIGKILL
    assert not _reviews(sandbox)

    daemon = await Daemon(config).start()
    await daemon.expect("Thanks for your feedback", timeout=15)
    assert time.monotonic() - rated >= 3  # it waited out the wait, not less
    await _until(lambda: _reviews(sandbox))
    await asyncio.sleep(2)
    assert await daemon.stop() == 0
    assert len(_reviews(sandbox)) == 1
    assert next(iter(sandbox.conversations.values())).review == {"rating": "5", "review": None}
