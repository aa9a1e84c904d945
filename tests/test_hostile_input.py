"""What a security review sent at a running daemon through its real edges (issue
"Hardening"), each case now a test: a local Bot API, a local Slack, the sandbox helpdesk
over Socket.IO, on SQLite and PostgreSQL. Each failed on the code before its fix."""
from __future__ import annotations

import asyncio
import json
import logging
import time
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from adapters.telegram import TelegramAdapter
from bridge.app import Bridge
from bridge.helpdesk import MAX_EVENT_BYTES
from bridge.store import ToCustomer
from bridge.texts import DEFAULT_TEXTS
from testing.fake_telegram import JPEG
from testing.local import free_port
from tests.conftest import fail_once, queue_rows
from tests.test_slack import ANN as SLACK_ANN
from tests.test_slack import _start as start_slack_bridge
from tests.test_slack import _ticket_after_hello, slack  # noqa: F401 (a fixture)
from tests.test_telegram import (
    ANN,
    BOB,
    start_bridge,
    telegram,  # noqa: F401 (a fixture)
)


@pytest.fixture
async def bridge(telegram, sandbox, database_url):  # noqa: F811
    """A Telegram bridge, polling, with a public URL (customer files are served)."""
    bridge = await start_bridge(telegram, sandbox, database_url)
    yield bridge
    await asyncio.wait_for(bridge.stop(), 20)


async def _healthz_seconds(bridge: Bridge) -> float:
    """How long /healthz takes to answer (a frozen event loop never answers)."""
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{bridge.http.url}/healthz",
                            timeout=aiohttp.ClientTimeout(total=5)) as response:
            assert response.status == 200
    return time.monotonic() - started


# --- 1 and 3: texts that broke the renderers, rows that blocked a customer's queue --------

async def test_a_code_span_like_a_placeholder_neither_freezes_the_daemon_nor_is_lost(
        slack, sandbox, database_url):  # noqa: F811
    """It expanded into itself forever in the Slack renderer: /healthz timed out, webhooks
    went unanswered. Reachable from an agent, and from a customer's text echoed by SATE."""
    bridge = await start_slack_bridge(slack, sandbox, database_url)
    try:
        _root, ticket = await _ticket_after_hello(slack, sandbox)
        await sandbox.agent_reply(ticket, "try `\x000\x00` now")
        assert await _healthz_seconds(bridge) < 2
        shown = await slack.wait_for_text(SLACK_ANN, "try 0 now")  # 0 in code style
        assert "\x00" not in json.dumps(shown)
        await slack.say(SLACK_ANN, "echo `\x001\x00` please")
        await slack.wait_for_text(SLACK_ANN, "echo 1 please")
        assert sandbox.received[-1]["message"] == "echo `1` please"  # stripped on the way in
    finally:
        await asyncio.wait_for(bridge.stop(), 20)


async def test_replies_that_broke_telegram_rendering_are_shown_and_the_queue_moves_on(
        bridge, telegram, sandbox):  # noqa: F811
    """`\\x007\\x00` raised IndexError, an attachment's numeric mime_type AttributeError:
    retried every second, forever, and nothing after them reached the customer."""
    telegram.say(ANN, "hello")
    await telegram.wait_for_text(ANN, "You said")
    ticket = sandbox.received[0]["ticket_chat_id"]
    await sandbox.agent_reply(ticket, "see note \x007\x00")
    await sandbox.agent_reply(ticket, "the label", attachment_metadata={
        "url": "https://files.example.com/label.bin", "name": 12, "mime_type": 5})
    await sandbox.agent_reply(ticket, "and after that")
    await telegram.wait_for_text(ANN, "see note 7")
    await telegram.wait_for_text(ANN, "and after that")
    document = await telegram.wait_for(lambda: telegram.calls_of("sendDocument"))
    assert document[0].params["document"] == "https://files.example.com/label.bin"


async def test_a_row_that_cannot_be_shown_is_set_aside_and_the_customer_told(
        make_bridge, sandbox):
    """A failure that is not the platform's (a bug, a row of no known shape) is retried a
    few times, then the row is marked rejected with the reason, the customer hears that a
    message could not be shown, and the queue moves on."""
    bridge, console = await make_bridge()
    await console.say("ivy", "hello")
    await console.expect("ivy", "You said")
    ticket = sandbox.received[0]["ticket_chat_id"]
    customer = (await bridge.store.customer_for("console", "console", "ivy", "ivy")).id
    console.fail_next(*[RuntimeError("a renderer bug")] * 3)
    await sandbox.agent_reply(ticket, "cannot be drawn")
    await sandbox.agent_reply(ticket, "the next one")
    await console.expect("ivy", "could not be shown here")
    await console.expect("ivy", "the next one")
    await bridge.store.enqueue_to_customer(customer, None, {"kind": "reply", "shape": "new"})
    await sandbox.agent_reply(ticket, "after the odd row")
    await console.expect("ivy", "after the odd row")
    await console.expect("ivy", "could not be shown here", count=2)
    rows = await queue_rows(bridge.store, ToCustomer, customer)
    rejected = [row for row in rows if row.status == "rejected"]
    assert [row.error.split(":")[0] for row in rejected] == ["RuntimeError", "TypeError"]
    assert "cannot be drawn" not in console.shown_texts("ivy")
    errors = bridge.relay.metrics.errors.labels("message_unshowable")._value.get()
    assert errors == 2


async def test_a_failure_or_two_is_retried_and_shown_once(make_bridge, sandbox):
    bridge, console = await make_bridge()
    await console.say("jay", "hello")
    await console.expect("jay", "You said")
    console.fail_next(RuntimeError("a passing bug"), RuntimeError("again"))
    await sandbox.agent_reply(sandbox.received[0]["ticket_chat_id"], "shown in the end")
    await console.expect("jay", "shown in the end")
    await asyncio.sleep(0.3)
    assert len([t for t in console.shown_texts("jay") if "shown in the end" in t]) == 1
    assert not [t for t in console.shown_texts("jay") if "could not be shown" in t]


# --- 6 and 8: callback data -------------------------------------------------------------

async def test_an_id_out_of_range_in_button_data_is_refused_before_the_database(
        make_bridge, sandbox):
    _bridge, console = await make_bridge()
    for action in ("close:99999999999999999999:yes", "rate:4294967296:5", "switch:2147483648",
                   "close:1:yes:extra", "rate:-1:5"):
        await console.press_action("kim", action)  # raised a database error before
    await console.expect("kim", "no longer open", count=5)


async def test_an_out_of_range_press_is_answered_once_and_holds_nobody_up(
        bridge, telegram, sandbox):  # noqa: F811
    """Polling fetched it again forever (that chat's next message waited over 10 s)."""
    telegram.say(ANN, "hello")
    prompt = await telegram.wait_for_text(ANN, "You said")
    telegram.press(ANN, prompt, "close:99999999999999999999:yes")
    telegram.say(ANN, "next")
    await telegram.wait_for_text(ANN, 'You said: "next"', timeout=5)
    await telegram.wait_for_text(ANN, "no longer open")
    await asyncio.sleep(1.5)  # another poll or two
    assert len(telegram.calls_of("answerCallbackQuery")) == 1


async def test_a_press_in_another_customers_chat_never_redirects_replies(
        bridge, telegram, sandbox):  # noqa: F811
    """`from` Bob, the message in Ann's chat: Bob's next reply went into Ann's chat."""
    telegram.say(ANN, "hello from ann")
    ann_prompt = await telegram.wait_for_text(ANN, "You said")
    telegram.say(BOB, "hello from bob")
    await telegram.wait_for_text(BOB, "You said")
    telegram.press(BOB, ann_prompt, "close:1:yes")
    forged = {**telegram.text(BOB, "sneaky"), "chat": telegram.private_chat(ANN)}
    telegram.push({"message": forged})
    telegram.say(BOB, "bob again")
    await telegram.wait_for_text(BOB, 'You said: "bob again"')
    await asyncio.sleep(0.3)
    assert not [m for m in telegram.sent_to(ANN) if "bob" in m["text"].lower()]
    assert "sneaky" not in [m["message"] for m in sandbox.received]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_message_the_database_always_refuses_is_skipped_and_the_customer_told(
        bridge, telegram, sandbox):  # noqa: F811
    """An update that can never be stored was brought back forever; now, after a few
    tries, the offset moves on, the customer is asked to send it again, and the chat goes
    on. (A trigger refuses that one message, as a constraint would.)"""
    async with bridge.store.engine.begin() as connection:
        for statement in fail_once("to_helpdesk", "INSERT", "NEW.body::text LIKE '%refused%'",
                                   always=True):
            await connection.exec_driver_sql(statement)
    telegram.say(ANN, "this is refused")
    telegram.say(ANN, "this is fine")
    await telegram.wait_for_text(ANN, DEFAULT_TEXTS["not_received"], timeout=15)
    await telegram.wait_for_text(ANN, 'You said: "this is fine"')
    assert [m["message"] for m in sandbox.received] == ["this is fine"]


# --- 7: a late reply while another conversation opens ------------------------------------

async def test_a_late_reply_of_a_closed_conversation_during_an_opening(make_bridge, sandbox):
    """It was taken for the new conversation's id: the bind hit a unique key, was retried
    for ~6 s inside the connection's event consumer (everyone on it stalled), and the
    late reply was dropped."""
    _bridge, console = await make_bridge(connections=1)
    await console.say("lou", "bye")  # SATE says goodbye and the conversation auto-closes
    await console.expect("lou", "How would you rate")
    old = sandbox.received[0]["ticket_chat_id"]
    sandbox.behaviour.sate_delay = 1.0  # the next opening waits a second for its id
    await console.say("lou", "a new question")
    await asyncio.sleep(0.3)
    late = sandbox._message(sandbox.conversations[old], "one more thing", "agent")
    await sandbox.emit_raw("support", {"status_code": 200, "message": "", "data": late},
                           room=f"customer:{sandbox.received[0]['session_id']}")
    started = time.monotonic()
    await console.expect("lou", 'You said: "a new question"', timeout=5)
    await console.expect("lou", "one more thing")
    assert time.monotonic() - started < 4.5  # not behind a 6-second stall


# --- 2, 4, 5, 9: files ---------------------------------------------------------------------

def _document(telegram, file_id: str, name: str) -> dict:  # noqa: F811
    message = telegram.text(ANN, "")
    del message["text"]
    message["caption"] = "see attached"
    message["document"] = {"file_id": file_id, "file_unique_id": file_id, "file_name": name}
    return message


async def _fetch(link: str) -> tuple[int, bytes, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.get(link) as response:
            return response.status, await response.read(), dict(response.headers)


async def _link_for(telegram, sandbox, file_id: str, name: str) -> str:  # noqa: F811
    before = len(sandbox.received)
    telegram.push({"message": _document(telegram, file_id, name)})
    await telegram.wait_for(lambda: len(sandbox.received) > before)
    return sandbox.received[-1]["attachment_metadata"]["url"]


async def test_telegram_files_over_the_bot_limit_are_not_downloaded(bridge, telegram, sandbox):  # noqa: F811
    telegram.files["BIG"] = ("documents/big.zip", b"x" * 1000, 200 * 1024 * 1024)
    status, _body, _headers = await _fetch(await _link_for(telegram, sandbox, "BIG", "big.zip"))
    assert status == 502
    assert not telegram.calls_of("download")  # a 200 MB document was fetched whole


async def test_telegram_downloads_stop_at_the_cap_when_no_size_is_given(
        bridge, telegram, sandbox):  # noqa: F811
    telegram.files["HUGE"] = ("documents/huge.bin", b"\x01" * (21 * 1024 * 1024), None)
    status, body, _headers = await _fetch(await _link_for(telegram, sandbox, "HUGE", "huge.bin"))
    assert status == 502 and len(body) < 1024


async def test_a_file_path_on_this_machine_is_never_read(bridge, telegram, sandbox, tmp_path):  # noqa: F811
    """python-telegram-bot reads a file_path that exists on this machine from the disk: a
    Bot API (or a proxy in front of it) answering bridge.toml had it served."""
    secret = tmp_path / "bridge.toml"
    secret.write_text("[helpdesk]\napi_key = 'do-not-serve-me'\n")
    telegram.files["LOCAL"] = (str(secret), b"", 40)
    status, body, _headers = await _fetch(await _link_for(telegram, sandbox, "LOCAL", "x.txt"))
    assert status == 502 and b"do-not-serve-me" not in body


async def test_a_customers_html_is_served_as_a_download_that_no_browser_runs(
        bridge, telegram, sandbox):  # noqa: F811
    telegram.files["PAGE"] = ("documents/page.html", b"<script>alert(1)</script>", 25)
    status, body, headers = await _fetch(await _link_for(telegram, sandbox, "PAGE", "page.html"))
    assert status == 200 and body == b"<script>alert(1)</script>"
    assert headers["Content-Disposition"].startswith("attachment")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in headers["Content-Security-Policy"]
    telegram.files["PIC"] = ("photos/pic.jpg", JPEG, len(JPEG))
    status, body, headers = await _fetch(await _link_for(telegram, sandbox, "PIC", "pic.jpg"))
    assert status == 200 and body == JPEG and headers["Content-Disposition"].startswith("inline")


# --- 10, 11: calls ---------------------------------------------------------------------------

def _fragment(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).fragment).items()}


async def test_call_tokens_are_in_no_log_line_and_not_kept_once_delivered(
        make_bridge, sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    bridge, console = await make_bridge(public_url="https://bridge.example.com")
    await console.say("max", "hello")
    await console.expect("max", "You said")
    await console.command("max", "call")
    invite = await console.expect("max", "Your voice call is ready")
    token = _fragment(invite.message.url)["token"]
    await asyncio.sleep(0.3)
    assert token not in caplog.text  # the Socket.IO transport logged it at DEBUG
    customer = await bridge.store.customer_for("console", "console", "max", "max")
    rows = await queue_rows(bridge.store, ToCustomer, customer.id)
    assert [r.body["url"] for r in rows if r.body["kind"] == "call_invite"] == [None]
    assert token not in json.dumps([r.body for r in rows])


async def test_an_old_call_link_cannot_end_a_newer_call(make_bridge, sandbox):
    bridge, console = await make_bridge(public_url="https://bridge.example.com")
    await console.say("ned", "hello")
    await console.expect("ned", "You said")
    await console.command("ned", "call")
    first = (await console.expect("ned", "Your voice call is ready")).message.url
    ticket = sandbox.received[0]["ticket_chat_id"]
    sandbox.conversations[ticket].call = None
    await sandbox.sate_left_call(ticket)
    await console.expect("ned", "The call has ended")
    await console.command("ned", "call")
    await console.expect("ned", "Your voice call is ready", count=2)
    second = [s.message.url for s in console.shown["ned"] if s.message.kind == "call_invite"][-1]
    assert second != first
    async with aiohttp.ClientSession() as http:
        async def post(path: str, url: str, **options) -> tuple[int, dict]:
            async with http.post(f"{bridge.http.url}/call/{path}", **options,
                                 json={"end": _fragment(url)["end"]}) as response:
                return response.status, await response.json()

        assert await post("state", first) == (200, {"state": "closed"})
        assert (await post("end", first))[0] == 202
        assert await post("state", second) == (200, {"state": "live"})
        await asyncio.sleep(0.3)
        assert not [e for e, _ in sandbox.requests if e == "close_call_support"]
        # A cross-site form or text/plain post (no preflight) ends nothing.
        async with http.post(f"{bridge.http.url}/call/end", headers={
                "Content-Type": "text/plain"}, data=json.dumps(
                {"end": _fragment(second)["end"]})) as response:
            assert response.status == 403
        assert (await post("end", second))[0] == 202
        await asyncio.sleep(0.3)
        assert len([e for e, _ in sandbox.requests if e == "close_call_support"]) == 1


async def test_the_call_page_says_what_it_may_load(make_bridge):
    bridge, _console = await make_bridge(public_url="https://bridge.example.com")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{bridge.http.url}/call") as response:
            policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "connect-src 'self' wss://livekit.example.com" in policy


# --- 11: the rest ---------------------------------------------------------------------------

async def test_a_replayed_slash_command_is_acted_on_once(
        slack, sandbox, database_url):  # noqa: F811
    bridge = await start_slack_bridge(slack, sandbox, database_url)
    try:
        form = slack.command_form(SLACK_ANN, "")
        for _ in range(3):  # the same signed request, within Slack's five minutes
            status, _body = await slack.send_form(form)
            assert status == 200
        await slack.wait_for_text(SLACK_ANN, "your next message starts a new conversation")
        await asyncio.sleep(0.5)
        assert len([m for m in slack.messages[slack.dm(SLACK_ANN)]
                    if "starts a new conversation" in m["text"]]) == 1
    finally:
        await asyncio.wait_for(bridge.stop(), 20)


async def test_a_socketio_message_over_the_limit_is_said_plainly(make_bridge, sandbox, caplog):
    bridge, console = await make_bridge(connections=1)
    await console.say("oli", "hello")
    await console.expect("oli", "You said")
    ticket = sandbox.received[0]["ticket_chat_id"]
    reconnects = bridge.relay.link.reconnects
    huge = sandbox._message(sandbox.conversations[ticket], "x" * (MAX_EVENT_BYTES + 1), "agent")
    await sandbox.emit_raw("support", {"status_code": 200, "data": huge}, room=ticket)
    for _ in range(200):
        if "larger than" in caplog.text and bridge.relay.link.reconnects > reconnects:
            break
        await asyncio.sleep(0.05)
    errors = [r for r in caplog.records if "larger than" in r.getMessage()]
    assert errors and errors[0].levelno == logging.ERROR
    await console.say("oli", "still here")
    await console.expect("oli", 'You said: "still here"')


# --- the daemon stays responsive through all of it ---------------------------------------

async def test_the_daemon_answers_healthz_throughout_the_hostile_inputs(
        telegram, slack, sandbox, database_url):  # noqa: F811
    """Telegram and Slack on one daemon, fed the review's inputs one after another while
    /healthz is asked every 50 ms. A frozen event loop never answers; the figures on this
    machine are in the issue's closing note."""
    from adapters.slack import SlackAdapter
    from bridge.config import load_settings
    from bridge.registry import adapter_schemas
    from bridge.sandbox import DEFAULT_API_KEY
    from tests.test_slack import BOT_TOKEN, SIGNING_SECRET
    from tests.test_telegram import TOKEN

    port = free_port()
    settings = load_settings({
        "helpdesk": {"url": sandbox.url, "api_key": DEFAULT_API_KEY, "request_timeout": 3},
        "storage": {"url": database_url},
        "http": {"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"},
        "telegram": {"token": TOKEN, "api_url": telegram.url, "poll_timeout": 1},
        "slack": {"bot_token": BOT_TOKEN, "api_url": slack.api_url, "mode": "http",
                  "signing_secret": SIGNING_SECRET},
    }, env={}, adapter_schemas=adapter_schemas())
    bridge = Bridge(settings, [TelegramAdapter(settings.adapters["telegram"]),
                               SlackAdapter(settings.adapters["slack"])])
    await bridge.start()
    await bridge.relay.link.wait_connected(10)
    slack.app_url = f"{settings.http.public_url}/slack/events"
    answers: list[float] = []
    stop = asyncio.Event()

    async def ask_healthz() -> None:
        while not stop.is_set():
            answers.append(await _healthz_seconds(bridge))
            await asyncio.sleep(0.05)

    poller = asyncio.create_task(ask_healthz())
    try:
        telegram.say(ANN, "hello `\x000\x00` see note \x007\x00")
        prompt = await telegram.wait_for_text(ANN, "You said")
        telegram_ticket = sandbox.received[0]["ticket_chat_id"]
        await slack.say(SLACK_ANN, "hello")
        await slack.wait_for_text(SLACK_ANN, "You said")
        slack_ticket = sandbox.received[-1]["ticket_chat_id"]
        for ticket in (telegram_ticket, slack_ticket):
            await sandbox.agent_reply(ticket, "`\x000\x00` and \x007\x00", attachment_metadata={
                "url": f"http://127.0.0.1:{port}/metrics", "name": 7, "mime_type": 5})
        telegram.press(ANN, prompt, "close:99999999999999999999:yes")
        telegram.press(BOB, prompt, "close:1:yes")
        telegram.files["BIG"] = ("documents/big.zip", b"x", 200 * 1024 * 1024)
        telegram.files["LOCAL"] = ("/etc/hostname", b"", 10)
        for file_id in ("BIG", "LOCAL"):
            assert (await _fetch(await _link_for(telegram, sandbox, file_id, "f")))[0] == 502
        for ticket in (telegram_ticket, slack_ticket):
            await sandbox.agent_reply(ticket, "the last word")
        await telegram.wait_for_text(ANN, "the last word", timeout=15)
        await slack.wait_for_text(SLACK_ANN, "the last word", timeout=15)
    finally:
        stop.set()
        await poller
        await asyncio.wait_for(bridge.stop(), 20)
    assert len(answers) > 10 and max(answers) < 2.0, (len(answers), max(answers))
    print(f"healthz: {len(answers)} answers, median {sorted(answers)[len(answers) // 2]:.4f} s,"
          f" max {max(answers):.4f} s")
