"""The Slack adapter against a local Slack (testing/fake_slack.py) and the sandbox helpdesk:
slack-bolt really receives signed HTTP requests or Socket Mode envelopes, and slack-sdk
really calls the Web API over HTTP."""
from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager

import pytest

from adapters.slack import SlackAdapter
from bridge.app import Bridge
from bridge.config import load_settings
from bridge.registry import adapter_schemas
from bridge.sandbox import DEFAULT_API_KEY
from testing.fake_slack import BOT_USER, FakeSlack, buttons_of, pattern, shown_text, sign
from testing.local import free_port, serve

BOT_TOKEN = "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"
APP_TOKEN = "xapp-1-A0BRIDGE-1234567890-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ANN, BOB = "U0ANN", "U0BOB"


@pytest.fixture
async def slack():
    fake = FakeSlack(BOT_TOKEN, APP_TOKEN, SIGNING_SECRET)
    await fake.start()
    yield fake
    await fake.stop()



# The local Slack (its /cdn/ stands for the helpdesk's file host) is on loopback, which
# the bridge never fetches from unless told to (bridge/files.py).
LOCAL_FILES = ["127.0.0.1/32"]


def _settings(slack, sandbox, database_url, mode="http", file_networks=LOCAL_FILES,
              ratings: dict | None = None):
    port = free_port()
    section = {"bot_token": BOT_TOKEN, "api_url": slack.api_url, "mode": mode,
               "file_networks": file_networks}
    section.update({"signing_secret": SIGNING_SECRET} if mode == "http"
                   else {"app_token": APP_TOKEN})
    return load_settings({
        "helpdesk": {"url": sandbox.url, "api_key": DEFAULT_API_KEY, "request_timeout": 3},
        "storage": {"url": database_url},
        "http": {"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"},
        "calls": {"livekit_url": "wss://livekit.example.com"},
        "ratings": ratings or {},
        "slack": section,
    }, env={}, adapter_schemas=adapter_schemas())


async def _start(slack, sandbox, database_url, mode="http", adapter_options: dict | None = None,
                 **options) -> Bridge:
    """adapter_options: more of [slack] (support channels)."""
    settings = _settings(slack, sandbox, database_url, mode, **options)
    adapter_settings = settings.adapters["slack"].model_copy(update=adapter_options or {})
    return await started(slack, settings, SlackAdapter(adapter_settings))


async def started(slack, settings, adapter: SlackAdapter) -> Bridge:
    """The bridge with this Slack adapter, started, and the local Slack sending to it."""
    bridge = Bridge(settings, [adapter])
    await bridge.start()
    await bridge.relay.link.wait_connected(10)
    slack.mode = adapter.settings.mode
    slack.app_url = f"{settings.http.public_url}/slack/events"
    if slack.mode == "socket":
        await slack.wait_for_socket()
    return bridge


@pytest.fixture
async def bridge(slack, sandbox, database_url):
    """The bridge with its Slack adapter in HTTP mode (Events API on /slack/events)."""
    bridge = await _start(slack, sandbox, database_url)
    yield bridge
    await asyncio.wait_for(bridge.stop(), 20)


def _in_thread(slack, user: str, thread: str) -> list[dict]:
    return [m for m in slack.messages[slack.dm(user)] if m.get("thread_ts") == thread]


async def _lifecycle(slack, sandbox) -> None:
    question = await slack.say(ANN, "hello & <welcome>")
    root = question["event"]["ts"]
    reply = await slack.wait_for_text(ANN, "You said")
    assert reply["thread_ts"] == root  # answered in the conversation's thread
    assert reply["blocks"][0] == {"type": "context", "elements": [
        {"type": "mrkdwn", "text": "*SATE*"}]}
    assert reply["blocks"][1]["type"] == "rich_text"  # its text is literal: nothing to escape
    assert 'You said: "hello & <welcome>"' in shown_text({"blocks": reply["blocks"][1:]})
    assert sandbox.received[0]["message"] == "hello & <welcome>"

    await slack.say(ANN, "it is resolved", thread_ts=root)
    prompt = await slack.wait_for_text(ANN, "Did this solve your issue?")
    assert prompt["thread_ts"] == root
    yes, no = buttons_of(prompt)
    assert (yes["style"], no["style"]) == ("primary", "danger")
    await slack.press(ANN, prompt, 0)
    await slack.wait_for(lambda: prompt.get("edited"))
    assert not buttons_of(prompt) and "Yes, solved" in shown_text(prompt)

    rating = await slack.wait_for_text(ANN, "How would you rate")
    assert rating["thread_ts"] == root
    assert [b["text"]["text"] for b in buttons_of(rating)] == ["1 ★", "2 ★", "3 ★", "4 ★", "5 ★"]
    await slack.press(ANN, rating, 3)
    modal = await slack.wait_for(lambda: slack.views)
    assert modal[0]["type"] == "modal" and modal[0]["trigger_id"].endswith(".trigger")
    await slack.wait_for(lambda: "Rated 4/5" in json.dumps(rating["blocks"]))
    await slack.submit(ANN, modal[0], "fast & friendly")
    await slack.wait_for_text(ANN, "Thanks for your feedback!")
    await slack.wait_for(lambda: next(iter(sandbox.conversations.values())).review)
    conversation = next(iter(sandbox.conversations.values()))
    assert conversation.review == {"rating": "4", "review": "fast & friendly"}


async def test_whole_lifecycle_over_http(bridge, slack, sandbox):
    await _lifecycle(slack, sandbox)


async def test_a_comment_typed_after_its_rating_went_alone_is_thanked_and_not_sent(
        slack, sandbox, database_url, caplog):
    """The comment form stays open on the customer's screen while the wait runs out: what
    they then submit is thanked and kept in the log, not sent as a second review (the
    helpdesk takes one review per conversation)."""
    bridge = await _start(slack, sandbox, database_url, ratings={"comment_wait": 1})
    try:
        await slack.say(ANN, "bye")
        rating = await slack.wait_for_text(ANN, "How would you rate")
        await slack.press(ANN, rating, 4)
        modal = await slack.wait_for(lambda: slack.views)
        await slack.wait_for(lambda: next(iter(sandbox.conversations.values())).review)
        assert next(iter(sandbox.conversations.values())).review == {"rating": "5",
                                                                     "review": None}
        await slack.wait_for_text(ANN, "Thanks for your feedback!")

        caplog.set_level(logging.INFO, logger="bridge")
        await slack.submit(ANN, modal[0], "it took a while, but fine")
        await slack.wait_for(lambda: len([m for m in slack.messages[slack.dm(ANN)]
                                          if "Thanks for your feedback!" in shown_text(m)]) == 2)
        await asyncio.sleep(0.3)
        assert len([e for e, _ in sandbox.requests if e == "review_support"]) == 1
        assert "it took a while, but fine" in caplog.text
        assert "it took a while" not in [m["message"] for m in sandbox.received]
    finally:
        await asyncio.wait_for(bridge.stop(), 20)


async def test_whole_lifecycle_over_socket_mode(slack, sandbox, database_url):
    bridge = await _start(slack, sandbox, database_url, mode="socket")
    try:
        await _lifecycle(slack, sandbox)
        assert slack.acks  # every envelope was acknowledged
        assert slack.calls_of("apps.connections.open")
    finally:
        await asyncio.wait_for(bridge.stop(), 20)


async def test_a_forged_signature_is_refused_and_not_processed(bridge, slack, sandbox):
    body = json.dumps(slack.message_event(ANN, "forged")).encode()
    status, _ = await slack.post_signed(body, "application/json",
                                        signature=sign("not-the-secret", int(time.time()), body))
    assert status == 401
    status, _ = await slack.post_signed(body, "application/json", signature="v0=")
    assert status == 401
    await asyncio.sleep(0.5)
    assert sandbox.received == []


async def test_an_unreadable_request_is_refused_plainly(bridge, slack, sandbox):
    event = slack.message_event(ANN, "hello")
    event["event"]["user"] = True  # no Slack sends this; Bolt cannot read it
    status, text = await slack.send_event(event)
    assert (status, text) == (400, "not a Slack request")
    status, _ = await slack.send_event(slack.message_event(ANN, "a good one"))
    assert status == 200
    await slack.wait_for_text(ANN, 'You said: "a good one"')


async def test_a_five_minute_old_request_is_refused(bridge, slack, sandbox):
    body = json.dumps(slack.message_event(ANN, "from the past")).encode()
    status, _ = await slack.post_signed(body, "application/json",
                                        timestamp=int(time.time()) - 301)  # signed correctly
    assert status == 401
    await asyncio.sleep(0.5)
    assert sandbox.received == []


async def test_a_retried_event_is_processed_once(bridge, slack, sandbox):
    event = slack.message_event(ANN, "only once please")
    assert (await slack.send_event(event))[0] == 200
    status, _ = await slack.send_event(event, headers={"X-Slack-Retry-Num": "1",
                                                       "X-Slack-Retry-Reason": "http_timeout"})
    assert status == 200
    # the same message under another event id (Slack replays after an outage): still once
    assert (await slack.send_event({**event, "event_id": "Ev99999999"}))[0] == 200
    await slack.wait_for_text(ANN, "You said")
    await asyncio.sleep(0.5)
    assert [m["message"] for m in sandbox.received] == ["only once please"]


async def test_bots_our_own_messages_edits_and_deletions_are_not_relayed(bridge, slack, sandbox):
    await slack.say(ANN, "from a bot", bot_id="B0OTHER", subtype="bot_message")
    await slack.say(BOT_USER, "our own echo")
    await slack.say(ANN, "", subtype="message_changed",
                    message={"text": "edited", "user": ANN})
    await slack.say(ANN, "", subtype="message_deleted", deleted_ts="1.2")
    await slack.say(ANN, "a real one")
    await slack.wait_for_text(ANN, "You said")
    await asyncio.sleep(0.3)
    assert [m["message"] for m in sandbox.received] == ["a real one"]


async def test_a_button_pressed_by_another_user_is_refused(bridge, slack, sandbox):
    await slack.say(ANN, "resolved")
    prompt = await slack.wait_for_text(ANN, "Did this solve your issue?")
    await slack.press(BOB, prompt, 0)  # Bob's user id, Ann's message and channel
    await slack.wait_for_text(BOB, "This conversation is no longer open.")  # in Bob's DM
    await asyncio.sleep(0.3)
    assert not [e for e, _ in sandbox.requests if e == "close_support"]
    assert buttons_of(prompt) and "edited" not in prompt  # Ann's prompt untouched
    assert slack.calls_of("conversations.open")[0].params["users"] == BOB


async def test_ratelimited_is_waited_out_and_delivered_once(bridge, slack):
    # Slack-sdk waits Retry-After once itself; a second 429 goes back to the core's queue.
    slack.fail_next("chat.postMessage", "ratelimited", status=429, retry_after=1, times=2)
    started = time.monotonic()
    await slack.say(ANN, "hello")
    await slack.wait_for_text(ANN, "You said", timeout=20)
    assert time.monotonic() - started >= 2  # both Retry-After waits were honoured
    await asyncio.sleep(0.3)
    assert len(slack.calls_of("chat.postMessage")) == 3
    assert len([m for m in slack.messages[slack.dm(ANN)] if "You said" in m["text"]]) == 1


async def test_server_errors_are_retried_and_refused_blocks_go_as_plain_text(
        bridge, slack, sandbox):
    slack.fail_next("chat.postMessage", "internal_error", status=500, times=3)
    await slack.say(ANN, "hello")
    await slack.wait_for_text(ANN, 'You said: "hello"', timeout=20)
    slack.fail_next("chat.postMessage", "invalid_blocks")
    await slack.say(ANN, "second")
    plain = await slack.wait_for_text(ANN, 'You said: "second"')
    assert [(b["type"], b["text"]["type"]) for b in plain["blocks"]] == [
        ("section", "plain_text")]
    slack.fail_next("chat.postMessage", "invalid_blocks", times=2)  # even plain: dropped
    await slack.say(ANN, "third")
    await slack.wait_for(lambda: len(sandbox.received) == 3)
    await asyncio.sleep(1)
    await slack.say(ANN, "fourth")
    await slack.wait_for_text(ANN, 'You said: "fourth"')  # the queue did not stick
    assert not slack.find(ANN, 'You said: "third"')


async def test_agent_handover_is_a_context_block_and_replies_carry_the_name(
        bridge, slack, sandbox):
    await slack.say(ANN, "a human please")
    notice = await slack.wait_for_text(ANN, "chatting with Alice")
    assert notice["blocks"][0]["type"] == "context"
    reply = await slack.wait_for_text(ANN, "Hi, Alice here")
    assert reply["blocks"][0]["elements"][0]["text"] == "*Alice*"
    assert notice["thread_ts"] == reply["thread_ts"]


async def test_threads_and_top_level_messages(bridge, slack, sandbox):
    """A top-level message continues the active conversation (answered in its thread);
    /support starts a new one; a thread reply goes to that thread's conversation."""
    first = (await slack.say(ANN, "question one"))["event"]["ts"]
    await slack.wait_for_text(ANN, 'You said: "question one"')
    await slack.say(ANN, "more on that")  # top level, no thread
    more = await slack.wait_for_text(ANN, 'You said: "more on that"')
    assert more["thread_ts"] == first
    await slack.command(ANN)  # /support: a new conversation
    await slack.wait_for_text(ANN, "new conversation")
    second = (await slack.say(ANN, "question two"))["event"]["ts"]
    two = await slack.wait_for_text(ANN, 'You said: "question two"')
    assert two["thread_ts"] == second
    await slack.say(ANN, "back to one", thread_ts=first)
    back = await slack.wait_for_text(ANN, 'You said: "back to one"')
    assert back["thread_ts"] == first
    tickets = {m["ticket_chat_id"] for m in sandbox.received}
    assert len(tickets) == 2
    by_text = {m["message"]: m["ticket_chat_id"] for m in sandbox.received}
    assert by_text["back to one"] == by_text["question one"] == by_text["more on that"]
    assert by_text["question two"] != by_text["question one"]


async def test_a_command_mentioning_payload_starts_the_conversation_with_it(
        bridge, slack, sandbox):
    """slack_bolt alone reads a form body containing "payload" as an empty interaction
    (answered 404, the question lost); the bridge reads it again after the signature check."""
    status, _ = await slack.send_form(slack.command_form(ANN, "my payload failed"))
    assert status == 200
    await slack.wait_for_text(ANN, 'You said: "my payload failed"')
    assert [m["message"] for m in sandbox.received] == ["my payload failed"]
    forged = await slack.post_signed(b"command=%2Fsupport&user_id=U0ANN&text=payload",
                                     "application/x-www-form-urlencoded", signature="v0=00")
    assert forged[0] == 401  # read again only once the signature holds
    assert len(sandbox.received) == 1


async def test_support_close_and_call_act_on_the_active_conversation(bridge, slack, sandbox):
    root = (await slack.say(ANN, "hello"))["event"]["ts"]
    await slack.wait_for_text(ANN, "You said")
    await slack.command(ANN, "call")
    invite = await slack.wait_for_text(ANN, "Join the call")
    link = buttons_of(invite)[0]
    assert link["url"].startswith(bridge.http.public_url + "/call#") and invite["thread_ts"] == root
    await slack.press(ANN, invite, 0)  # a link button: acknowledged, nothing relayed
    await slack.command(ANN, "close")
    prompt = await slack.wait_for_text(ANN, "Did this solve your issue?")
    assert prompt["thread_ts"] == root
    await slack.command(ANN, "help")
    help_text = await slack.wait_for_text(ANN, "Commands:")
    assert "/support starts a new conversation, /support list lists" in help_text["text"]


async def test_agent_attachments_are_uploaded_into_the_thread_or_linked(bridge, slack, sandbox):
    root = (await slack.say(ANN, "hello"))["event"]["ts"]
    await slack.wait_for_text(ANN, "You said")
    ticket = sandbox.received[0]["ticket_chat_id"]
    await sandbox.agent_reply(ticket, "Your label", attachment_metadata={
        "url": f"{slack.url}/cdn/label.png", "name": "label.png", "mime_type": "image/png"})
    await slack.wait_for(lambda: any(u.get("completed") for u in slack.uploads.values()))
    upload = next(u for u in slack.uploads.values() if u.get("completed"))
    assert upload["content"] == b"contents of label.png"
    assert (upload["name"], upload["channel"], upload["thread_ts"]) == (
        "label.png", slack.dm(ANN), root)
    await slack.wait_for_text(ANN, "Your label")
    await sandbox.agent_reply(ticket, "", attachment_metadata={
        "url": f"{slack.url}/cdn/missing.zip", "name": "missing.zip"})
    linked = await slack.wait_for_text(ANN, f"<{slack.url}/cdn/missing.zip|missing.zip>")
    assert linked["thread_ts"] == root
    assert not slack.calls_of("files.upload")  # the retired method is never used


async def test_customer_files_reach_the_helpdesk_through_a_signed_bridge_link(
        bridge, slack, sandbox):
    import aiohttp

    slack.customer_files["F0PHOTO"] = ("broken.png", b"\x89PNG broken part")
    await slack.say(ANN, "the broken part", subtype="file_share", files=[{
        "id": "F0PHOTO", "name": "broken.png", "mimetype": "image/png",
        "url_private": f"{slack.url}/private/F0PHOTO"}])
    await slack.wait_for(lambda: sandbox.received)
    sent = sandbox.received[0]
    assert sent["message"] == "the broken part"
    link = sent["attachment_metadata"]["url"]
    assert link.startswith(bridge.http.public_url + "/files/slack/F0PHOTO?exp=")
    assert "/private/" not in json.dumps(sent)
    async with aiohttp.ClientSession() as http:
        async with http.get(link) as response:  # the helpdesk fetching the file
            assert response.status == 200
            assert await response.read() == b"\x89PNG broken part"
        async with http.get(link.replace("sig=", "sig=0")) as response:
            assert response.status == 403


async def test_no_secret_in_any_log_line(slack, sandbox, database_url, caplog):
    caplog.set_level(logging.DEBUG)
    bridge = await _start(slack, sandbox, database_url, mode="socket")
    try:
        await slack.say(ANN, "hello")
        await slack.wait_for_text(ANN, "You said")
        slack.fail_next("chat.postMessage", "internal_error", status=500, times=2)
        await slack.say(ANN, "again")
        await slack.wait_for_text(ANN, 'You said: "again"', timeout=20)
    finally:
        await asyncio.wait_for(bridge.stop(), 20)
    assert "chat.postMessage" in caplog.text  # slack-sdk did log its requests
    for secret in (BOT_TOKEN, APP_TOKEN, SIGNING_SECRET):
        assert secret not in caplog.text


def _embedded_example(slack, sandbox, database_url, monkeypatch):
    """examples/slack_embedded.py's main(), set to the local servers."""
    import importlib.util
    from pathlib import Path

    port = free_port()
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("SLACK_API_URL", slack.api_url)
    monkeypatch.setenv("SLACK_APP_PORT", str(port))
    monkeypatch.setenv("EUSATE_URL", sandbox.url)
    monkeypatch.setenv("EUSATE_API_KEY", DEFAULT_API_KEY)
    monkeypatch.setenv("BRIDGE_STORAGE_URL", database_url)
    path = Path(__file__).parent.parent / "examples" / "slack_embedded.py"
    spec = importlib.util.spec_from_file_location("slack_embedded", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    slack.app_url = f"http://127.0.0.1:{port}/slack/events"
    return example.main


async def test_embedded_in_an_existing_slack_app(slack, sandbox, database_url, monkeypatch):
    """examples/slack_embedded.py, run for real against the local Slack."""
    async with _running(_embedded_example(slack, sandbox, database_url, monkeypatch)):
        status, answer = await _retry_until_listening(slack, slack.command_form(ANN, "", "/hello"))
        assert "Hello from ACME's own app!" in answer
        await slack.say(ANN, "just chatting")
        await slack.wait_for_text(ANN, "ACME bot here. You said: just chatting")

        await slack.command(ANN)  # /support
        await slack.wait_for_text(ANN, "new conversation")
        root = (await slack.say(ANN, "my parcel is lost"))["event"]["ts"]
        reply = await slack.wait_for_text(ANN, 'You said: "my parcel is lost"')
        assert reply["thread_ts"] == root
        await slack.say(BOB, "hi app")  # everyone else still talks to the app
        await slack.wait_for_text(BOB, "ACME bot here. You said: hi app")

        await slack.say(ANN, "it is resolved now", thread_ts=root)
        prompt = await slack.wait_for_text(ANN, "Did this solve")
        await slack.press(ANN, prompt, 0)
        rating = await slack.wait_for_text(ANN, "How would you rate")
        await slack.press(ANN, rating, 4)
        modal = (await slack.wait_for(lambda: slack.views))[0]
        await slack.submit(ANN, modal, "")  # no comment: the rating goes alone
        await slack.wait_for_text(ANN, "Thanks for your feedback!")
        await slack.wait_for(lambda: next(iter(sandbox.conversations.values())).review)
        review = next(iter(sandbox.conversations.values())).review
        assert review["rating"] == "5" and not review.get("review")
        await slack.say(ANN, "thanks bot")  # the conversation ended: support mode too
        await slack.wait_for_text(ANN, "ACME bot here. You said: thanks bot")

        await slack.command(ANN)
        await slack.command(ANN, "done")
        await slack.wait_for(lambda: slack.responses)
        assert "You left support" in slack.responses[0]["text"]
        assert "thanks bot" not in [m["message"] for m in sandbox.received]


async def test_support_mode_of_an_embedded_app_outlives_a_restart(slack, sandbox, database_url,
                                                                   monkeypatch):
    """A user in support mode when the company's app restarts (a deploy) goes on talking
    to the helpdesk; it is kept in the database, which every daemon shares."""
    main = _embedded_example(slack, sandbox, database_url, monkeypatch)
    async with _running(main):
        await _retry_until_listening(slack, slack.command_form(ANN, "", "/support"))
        await slack.say(ANN, "before the restart")
        await slack.wait_for_text(ANN, 'You said: "before the restart"')
    async with _running(main):
        await _retry_until_listening(slack, slack.command_form(ANN, "", "/hello"))
        await slack.say(ANN, "after the restart")
        await slack.wait_for_text(ANN, 'You said: "after the restart"')


@asynccontextmanager
async def _running(main):
    """The example app's main() running for the length of the block."""
    running = asyncio.create_task(main())
    try:
        yield
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def _retry_until_listening(slack, form: dict) -> tuple[int, str]:
    import aiohttp

    for _ in range(100):
        try:
            status, text = await slack.send_form(form)
            if status == 200:
                return status, text
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the example app never answered")


@pytest.mark.parametrize("section, error", [
    ({"bot_token": "x", "mode": "socket"}, '[slack]: app_token is required for mode = "socket"'),
    ({"bot_token": "x", "mode": "http"}, '[slack]: signing_secret is required for mode = "http"'),
    ({"bot_token": "x", "app_token": "y", "command": "support"},
     '[slack]: command must start with "/"'),
])
def test_slack_settings_say_what_is_missing(section, error):
    from bridge.config import ConfigError

    with pytest.raises(ConfigError) as raised:
        load_settings({"helpdesk": {"url": "http://127.0.0.1:1", "api_key": "k"},
                       "slack": section}, env={}, adapter_schemas=adapter_schemas())
    assert str(raised.value).startswith(error)


def test_http_mode_needs_a_public_url():
    from bridge.config import ConfigError

    with pytest.raises(ConfigError, match=r'\[slack\] mode = "http" needs \[http\] public_url'):
        load_settings({"helpdesk": {"url": "http://127.0.0.1:1", "api_key": "k"},
                       "slack": {"bot_token": "x", "mode": "http", "signing_secret": "s"}},
                      env={}, adapter_schemas=adapter_schemas())


async def test_check_tells_whether_slack_takes_the_token(tmp_path, slack, sandbox):
    import os
    import subprocess
    import sys

    def check(token: str) -> subprocess.CompletedProcess:
        config = tmp_path / "bridge.toml"
        config.write_text(f'''
[helpdesk]
url = "{sandbox.url}"
api_key = "{DEFAULT_API_KEY}"
[storage]
url = "sqlite+aiosqlite:///{tmp_path / 'check.db'}"
[slack]
bot_token = "${{SLACK_BOT_TOKEN}}"
app_token = "${{SLACK_APP_TOKEN}}"
api_url = "{slack.api_url}"
''')
        return subprocess.run([sys.executable, "-m", "bridge", "check", "--config", str(config)],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "SLACK_BOT_TOKEN": token,
                                   "SLACK_APP_TOKEN": APP_TOKEN})

    good = await asyncio.to_thread(check, BOT_TOKEN)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "ok   slack accepted the bot token (@helpdesk in ACME)" in good.stdout
    bad = await asyncio.to_thread(check, "xoxb-wrong-token")
    assert bad.returncode == 1
    assert "FAIL slack refused the bot token (invalid_auth)" in bad.stdout
    assert "xoxb-wrong-token" not in bad.stdout + bad.stderr and APP_TOKEN not in bad.stdout


# --- files: whole, capped, from public addresses only, served as downloads ---------------

async def _ticket_after_hello(slack, sandbox) -> tuple[str, str]:
    root = (await slack.say(ANN, "hello"))["event"]["ts"]
    await slack.wait_for_text(ANN, "You said")
    return root, sandbox.received[0]["ticket_chat_id"]


def _completed_upload(slack, name: str) -> dict | None:
    return next((u for u in slack.uploads.values() if u.get("completed") and u["name"] == name),
                None)


async def test_agent_files_larger_than_a_buffer_arrive_whole_and_the_cap_holds(
        bridge, slack, sandbox):
    """aiohttp's read(n) returns what is buffered: 1 and 5 MB files arrived as 98,304 bytes,
    and a 60 MB one was uploaded cut short instead of being refused."""
    _root, ticket = await _ticket_after_hello(slack, sandbox)
    for size in (1_000_000, 5_000_000):
        await sandbox.agent_reply(ticket, "", attachment_metadata={
            "url": f"{slack.url}/cdn/big-{size}.bin", "name": f"big-{size}.bin"})
        upload = await slack.wait_for(lambda: _completed_upload(slack, f"big-{size}.bin"),
                                      timeout=20)
        assert len(upload["content"]) == size and upload["content"] == pattern(size)
    await sandbox.agent_reply(ticket, "", attachment_metadata={
        "url": f"{slack.url}/cdn/big-60000000.bin", "name": "huge.bin"})
    await slack.wait_for_text(ANN, f"<{slack.url}/cdn/big-60000000.bin|huge.bin>", timeout=20)
    assert _completed_upload(slack, "huge.bin") is None


async def test_a_customer_file_larger_than_a_buffer_reaches_the_helpdesk_whole(
        bridge, slack, sandbox):
    import aiohttp

    slack.customer_files["F0BIG"] = ("logs.zip", pattern(5_000_000))
    await slack.say(ANN, "my logs", subtype="file_share", files=[{
        "id": "F0BIG", "name": "logs.zip", "mimetype": "application/zip"}])
    await slack.wait_for(lambda: sandbox.received)
    async with aiohttp.ClientSession() as http:
        async with http.get(sandbox.received[0]["attachment_metadata"]["url"]) as response:
            assert response.status == 200
            assert await response.read() == pattern(5_000_000)  # was 65,394 bytes


async def test_agent_files_are_never_fetched_from_the_bridges_own_network(
        slack, sandbox, database_url):
    """An "attachment" pointing at an internal service (here the bridge's own /metrics,
    and a redirect to it from a public-looking host) must not be fetched and posted into
    the customer's thread: it is sent as a link, which the customer's browser may follow."""
    from aiohttp import web

    hits: list[str] = []

    async def internal(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="internal secrets")

    app = web.Application()
    app.router.add_get("/{tail:.*}", internal)
    runner, port = await serve(app, "127.0.0.2")  # another loopback address: "internal"
    internal_url = f"http://127.0.0.2:{port}"
    bridge = await _start(slack, sandbox, database_url, file_networks=["127.0.0.1/32"])
    try:
        root, ticket = await _ticket_after_hello(slack, sandbox)
        await sandbox.agent_reply(ticket, "", attachment_metadata=[
            {"url": f"{internal_url}/admin", "name": "admin.txt"},
            {"url": f"{slack.url}/cdn/redirect?to={internal_url}/via-redirect",
             "name": "redirected.txt"},
            {"url": "file:///etc/passwd", "name": "passwd"}])
        await slack.wait_for_text(ANN, "|admin.txt>")
        await slack.wait_for_text(ANN, "|redirected.txt>")
        assert hits == []  # not even the request reached it
        assert not any(u.get("completed") for u in slack.uploads.values())
        assert "file://" not in json.dumps(slack.messages)  # not even as a link
        assert "redirect" in slack.cdn_requests  # the public hop was asked, the next refused
    finally:
        await asyncio.wait_for(bridge.stop(), 20)
        await runner.cleanup()
    # With nothing allowed, the bridge's own address is refused like any other.
    bridge = await _start(slack, sandbox, database_url, file_networks=[])
    try:
        await slack.say(ANN, "still there?", thread_ts=root)  # answered: the rooms are joined
        await slack.wait_for_text(ANN, 'You said: "still there?"')
        await sandbox.agent_reply(ticket, "", attachment_metadata={
            "url": f"http://localhost:{bridge.http.port}/metrics", "name": "metrics.txt"})
        await slack.wait_for_text(ANN, "|metrics.txt>")
        assert not any(u.get("completed") for u in slack.uploads.values())
    finally:
        await asyncio.wait_for(bridge.stop(), 20)


@pytest.mark.parametrize("name, inline", [("page.html", False), ("logo.svg", False),
                                          ("photo.png", True)])
async def test_customer_files_are_served_as_downloads_that_no_browser_runs(
        bridge, slack, sandbox, name, inline):
    import aiohttp

    slack.customer_files["F0FILE"] = (name, b"<script>alert(document.cookie)</script>")
    await slack.say(ANN, "see attached", subtype="file_share", files=[{
        "id": "F0FILE", "name": name}])
    await slack.wait_for(lambda: sandbox.received)
    async with aiohttp.ClientSession() as http:
        async with http.get(sandbox.received[0]["attachment_metadata"]["url"]) as response:
            assert response.status == 200
            disposition = response.headers["Content-Disposition"]
            assert disposition.startswith("inline" if inline else "attachment")
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert "sandbox" in response.headers["Content-Security-Policy"]


async def test_a_prompt_that_is_gone_is_answered_by_a_new_message(bridge, slack, sandbox):
    """chat.update on a deleted message fails (message_not_found): the edit's text is said
    as a new message in the thread."""
    root = (await slack.say(ANN, "it is resolved"))["event"]["ts"]
    prompt = await slack.wait_for_text(ANN, "Did this solve your issue?")
    slack.fail_next("chat.update", "message_not_found")
    await slack.press(ANN, prompt, 0)
    answered = await slack.wait_for(lambda: next((
        m for m in slack.messages[slack.dm(ANN)] if "Yes, solved" in json.dumps(m.get("blocks"))
        and m is not prompt), None))
    assert answered["thread_ts"] == root and buttons_of(prompt)  # the old one is untouched
    await slack.wait_for_text(ANN, "How would you rate")


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_an_event_on_another_daemons_socket_is_answered_by_the_one_working_the_customer(
        slack, sandbox, database_url):
    """Slack spreads an app's events over its Socket Mode connections, one per daemon: an
    event that reaches a daemon for a customer of the other one is stored for that one,
    which answers it, once."""
    from bridge.shards import SHARDS

    first = await _start(slack, sandbox, database_url, mode="socket")
    settings = _settings(slack, sandbox, database_url, "socket")
    second = Bridge(settings, [SlackAdapter(settings.adapters["slack"])])
    users = [f"U0C{n:02d}" for n in range(8)]  # some in each daemon's shards
    try:
        firsts_socket = slack._socket
        await second.start()
        await slack.wait_for(lambda: len(first.shards.held) == len(second.shards.held)
                             == SHARDS // 2)
        await slack.wait_for(lambda: slack._socket is not firsts_socket)  # the fake's latest
        await slack.wait_for_socket()
        for user in users:
            await slack.say(user, f"hello from {user}")
        for user in users:
            await slack.wait_for_text(user, "You said")
        forwarded = second.metrics.registry.get_sample_value("bridge_events_forwarded_total")
        assert forwarded >= 1
        await asyncio.sleep(0.5)
        for user in users:
            assert len([m for m in slack.messages[slack.dm(user)] if "You said" in str(m)]) == 1
        assert sorted(m["message"] for m in sandbox.received) == \
            sorted(f"hello from {user}" for user in users)
    finally:
        await asyncio.wait_for(second.stop(), 20)
        await asyncio.wait_for(first.stop(), 20)
