"""The Telegram adapter against a local Bot API server (testing/fake_telegram.py) and the
sandbox helpdesk: python-telegram-bot really polls, sends and edits over HTTP."""
from __future__ import annotations

import asyncio
import logging

import pytest

from adapters.telegram import TelegramAdapter
from bridge.app import Bridge
from bridge.config import load_settings
from bridge.registry import adapter_schemas
from bridge.sandbox import DEFAULT_API_KEY
from testing.fake_telegram import FakeTelegram
from testing.local import free_port
from tests.conftest import fail_once

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
ANN, BOB = 501, 502


@pytest.fixture
async def telegram():
    fake = FakeTelegram(TOKEN)
    await fake.start()
    yield fake
    await fake.stop()


def _settings(telegram, sandbox, database_url, mode="polling", public_url=""):
    return load_settings({
        "helpdesk": {"url": sandbox.url, "api_key": DEFAULT_API_KEY, "request_timeout": 3},
        "storage": {"url": database_url},
        "http": {"listen": "127.0.0.1:0", "public_url": public_url},
        "telegram": {"token": TOKEN, "api_url": telegram.url, "poll_timeout": 1, "mode": mode},
    }, env={}, adapter_schemas=adapter_schemas())


async def start_bridge(telegram, sandbox, database_url, mode: str = "polling") -> Bridge:
    """A started bridge with its Telegram adapter, and a public URL on its own port."""
    port = free_port()
    settings = _settings(telegram, sandbox, database_url, mode=mode,
                         public_url=f"http://127.0.0.1:{port}")
    settings = settings.model_copy(update={"http": settings.http.model_copy(
        update={"listen": f"127.0.0.1:{port}"})})
    bridge = Bridge(settings, [TelegramAdapter(settings.adapters["telegram"])])
    await bridge.start()
    await bridge.relay.link.wait_connected(10)
    return bridge


@pytest.fixture(params=["polling", "webhook"])
async def bridge(request, telegram, sandbox, database_url):
    """The bridge with its Telegram adapter, receiving by long polling or by webhook."""
    bridge = await start_bridge(telegram, sandbox, database_url, request.param)
    yield bridge
    await asyncio.wait_for(bridge.stop(), 20)


def _buttons(message: dict) -> list[dict]:
    return [b for row in message.get("reply_markup", {}).get("inline_keyboard", []) for b in row]


async def test_whole_lifecycle_with_native_buttons(bridge, telegram, sandbox):
    commands = await telegram.wait_for(lambda: telegram.calls_of("setMyCommands"))
    assert [c["command"] for c in commands[0].params["commands"]] == [
        "start", "new", "conversations", "close", "call", "help"]

    telegram.say(ANN, "hello")
    reply = await telegram.wait_for_text(ANN, 'You said: "hello"')
    assert reply["text"].startswith("SATE: ") and reply.get("parse_mode") is None
    assert reply["entities"][0] == {"type": "bold", "offset": 0, "length": 5}

    telegram.say(ANN, "it is resolved")
    prompt = await telegram.wait_for_text(ANN, "Did this solve your issue?")
    yes, no = _buttons(prompt)
    assert (yes["text"], no["text"]) == ("Yes, solved", "No, I still need help")
    assert all(len(b["callback_data"].encode()) <= 64 for b in (yes, no))

    telegram.press(ANN, prompt, yes["callback_data"])
    await telegram.wait_for(lambda: "Yes, solved" in prompt["text"] and "reply_markup" not in prompt)
    rating = await telegram.wait_for_text(ANN, "How would you rate")
    assert [b["text"] for b in _buttons(rating)] == ["1 ★", "2 ★", "3 ★", "4 ★", "5 ★"]
    telegram.press(ANN, rating, _buttons(rating)[3]["callback_data"])
    await telegram.wait_for(lambda: rating["text"] == "Rated 4/5 - thank you!")
    comment = await telegram.wait_for_text(ANN, "add a comment")
    telegram.say(ANN, "fast & friendly")
    await telegram.wait_for(lambda: comment["text"] == "Thanks for your feedback!")
    await asyncio.sleep(0.2)
    conversation = next(iter(sandbox.conversations.values()))
    assert conversation.review == {"rating": "4", "review": "fast & friendly"}
    # every callback query was answered
    assert len(telegram.calls_of("answerCallbackQuery")) == 2


async def test_agent_takeover_shows_the_agent_name(bridge, telegram):
    telegram.say(ANN, "a human please")
    await telegram.wait_for_text(ANN, "You're now chatting with Alice.")
    message = await telegram.wait_for_text(ANN, "Hi, Alice here")
    assert message["text"].startswith("Alice: ")
    assert message["entities"][0] == {"type": "bold", "offset": 0, "length": 6}


async def test_a_forged_button_from_another_user_is_refused(bridge, telegram, sandbox):
    telegram.say(ANN, "resolved")
    prompt = await telegram.wait_for_text(ANN, "Did this solve your issue?")
    telegram.press(BOB, {**prompt, "chat": telegram.private_chat(BOB)},
                   _buttons(prompt)[0]["callback_data"])
    await telegram.wait_for_text(BOB, "This conversation is no longer open.")
    await asyncio.sleep(0.2)
    assert not [e for e, _ in sandbox.requests if e == "close_support"]
    assert "reply_markup" in prompt  # Ann's prompt is untouched
    assert telegram.calls_of("answerCallbackQuery")


async def test_a_press_on_a_prompt_older_than_48_hours_still_counts(bridge, telegram, sandbox):
    telegram.say(ANN, "resolved")
    prompt = await telegram.wait_for_text(ANN, "Did this solve your issue?")
    # Telegram then sends the prompt as an InaccessibleMessage: its chat, its id, date 0
    too_old = {"chat": prompt["chat"], "message_id": prompt["message_id"], "date": 0}
    telegram.press(ANN, too_old, _buttons(prompt)[0]["callback_data"])
    await telegram.wait_for(lambda: [e for e, _ in sandbox.requests if e == "close_support"])


async def test_429_and_5xx_are_retried_and_delivered_once(bridge, telegram):
    telegram.fail("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    telegram.fail("sendMessage", 502, "Bad Gateway", times=2)
    telegram.say(ANN, "hello")
    await telegram.wait_for_text(ANN, 'You said: "hello"', timeout=20)
    await asyncio.sleep(0.3)
    delivered = [m for m in telegram.sent_to(ANN) if "You said" in m["text"]]
    assert len(delivered) == 1
    assert len(telegram.calls_of("sendMessage")) == 4  # 429, 502, 502, then accepted


# PostgreSQL only: failing one write on cue needs a trigger (tests/conftest.py).
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_message_the_database_failed_to_store_is_stored_when_telegram_resends_it(
        bridge, telegram, sandbox, caplog):
    """Not stored means not confirmed: Telegram brings the update again (the next
    getUpdates, or a webhook retry), and this time it must not be taken for a repeat."""
    async with bridge.store.engine.begin() as connection:
        for statement in fail_once("to_helpdesk", "INSERT"):
            await connection.exec_driver_sql(statement)
    telegram.say(ANN, "hello")
    await telegram.wait_for_text(ANN, 'You said: "hello"', timeout=15)
    await asyncio.sleep(0.5)
    assert [m["message"] for m in sandbox.received] == ["hello"]
    assert "not stored" in caplog.text


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("bridge", ["polling"], indirect=True)
async def test_one_chat_failing_in_a_batch_holds_up_neither_the_others_nor_its_own_order(
        bridge, telegram, sandbox):
    """A getUpdates batch is handled chat by chat at once: when Ann's first message is not
    stored, Bob's goes on, and Ann's second does not overtake her first."""
    async with bridge.store.engine.begin() as connection:
        for statement in fail_once("to_helpdesk", "INSERT", "NEW.body::text LIKE '%first%'"):
            await connection.exec_driver_sql(statement)
    telegram.say(ANN, "first")  # no await between them: one getUpdates batch
    telegram.say(BOB, "from bob")
    telegram.say(ANN, "second")
    await telegram.wait_for_text(ANN, 'You said: "second"', timeout=15)
    await telegram.wait_for_text(BOB, 'You said: "from bob"')
    await asyncio.sleep(0.5)
    by_session: dict[str, list[str]] = {}
    for message in sandbox.received:
        by_session.setdefault(message["session_id"], []).append(message["message"])
    # "first" arriving at all shows it was fetched again after its failure
    assert sorted(by_session.values()) == [["first", "second"], ["from bob"]]


async def test_a_blocked_bot_marks_the_customer_unreachable_once(bridge, telegram, sandbox, caplog):
    telegram.fail("sendMessage", 403, "Forbidden: bot was blocked by the user")
    telegram.say(ANN, "hello")
    await telegram.wait_for(lambda: sandbox.received)
    await telegram.wait_for(lambda: telegram.calls_of("sendMessage"))
    await asyncio.sleep(0.3)
    ticket = sandbox.received[0]["ticket_chat_id"]
    for n in range(3):
        await sandbox.agent_reply(ticket, f"are you there? {n}")
    await asyncio.sleep(0.5)
    assert len(telegram.calls_of("sendMessage")) == 1  # no retry storm
    assert caplog.text.count("customer unreachable") == 1


async def test_a_10000_character_reply_is_split_at_word_boundaries(bridge, telegram, sandbox):
    telegram.say(ANN, "hello")
    await telegram.wait_for_text(ANN, "You said")
    paragraph = " ".join(f"word{n}" for n in range(150))
    long_text = "\n\n".join([paragraph] * 12)[:10_000]
    await sandbox.agent_reply(sandbox.received[0]["ticket_chat_id"], long_text)
    await telegram.wait_for(lambda: sum(1 for m in telegram.sent_to(ANN)
                                        if "word" in m["text"]) >= 3)
    await asyncio.sleep(0.3)
    parts = [m["text"] for m in telegram.sent_to(ANN) if "word" in m["text"]]
    assert all(len(p) <= 4096 for p in parts)
    joined = " ".join(parts).replace("Agent: ", "")
    assert joined.split() == long_text.split()  # nothing lost, no word cut in half


async def test_html_and_unbalanced_markdown_are_shown_as_written(bridge, telegram, sandbox):
    telegram.say(ANN, "hello")
    await telegram.wait_for_text(ANN, "You said")
    ticket = sandbox.received[0]["ticket_chat_id"]
    await sandbox.agent_reply(ticket, "Use <b>Save</b> & then **really** save *now")
    message = await telegram.wait_for_text(ANN, "Save")
    assert message["text"] == "Agent: Use <b>Save</b> & then really save *now"
    really = message["text"].index("really")
    assert {"type": "bold", "offset": really, "length": 6} in message["entities"]
    # if Telegram still refuses the entities, the words go out as plain text
    telegram.fail("sendMessage", 400, "Bad Request: can't parse entities: Unsupported start tag")
    await sandbox.agent_reply(ticket, "second **try**")
    plain = await telegram.wait_for_text(ANN, "second")
    assert plain["text"] == "Agent: second try" and "entities" not in plain


async def test_repeated_and_edited_messages(bridge, telegram, sandbox):
    message = telegram.text(ANN, "my order is late")
    telegram.push({"message": message})
    telegram.push({"message": message})  # the same message again under a new update
    await telegram.wait_for_text(ANN, "my order is late")
    edited = {**message, "text": "my order 4567 is late", "edit_date": message["date"] + 5}
    telegram.push({"edited_message": edited})
    await telegram.wait_for_text(ANN, "(edited) my order 4567 is late")
    assert [m["message"] for m in sandbox.received] == [
        "my order is late", "(edited) my order 4567 is late"]


async def test_groups_are_not_relayed_but_a_mention_is_answered(bridge, telegram, sandbox):
    group = {"id": -100200, "type": "supergroup", "title": "Customers"}
    message = telegram.text(ANN, "@support_bot help me", chat=group)
    message["entities"] = [{"type": "mention", "offset": 0, "length": 12}]
    telegram.push({"message": message})
    await telegram.wait_for_text(-100200, "private chat")
    telegram.push({"message": telegram.text(ANN, "just chatting", chat=group)})
    await asyncio.sleep(0.5)
    assert sandbox.received == []


async def test_without_a_public_url_photos_are_refused_plainly(telegram, sandbox, database_url):
    settings = _settings(telegram, sandbox, database_url, public_url="")
    bridge = Bridge(settings, [TelegramAdapter(settings.adapters["telegram"])])
    await bridge.start()
    try:
        message = telegram.text(ANN, "")
        del message["text"]
        message["photo"] = [{"file_id": "AgAD", "file_unique_id": "x", "width": 90, "height": 90}]
        telegram.push({"message": message})
        await telegram.wait_for_text(ANN, "Attachments can't be sent here.")
        assert sandbox.received == []
    finally:
        await asyncio.wait_for(bridge.stop(), 20)


async def test_the_bot_token_is_in_no_log_line(bridge, telegram, caplog):
    caplog.set_level(logging.DEBUG)
    telegram.say(ANN, "hello")
    await telegram.wait_for_text(ANN, "You said")
    telegram.fail("sendMessage", 502, "Bad Gateway")
    telegram.say(ANN, "again")
    await telegram.wait_for_text(ANN, 'You said: "again"', timeout=20)
    assert "/bot***/" in caplog.text  # httpx logged the request URL, redacted
    assert TOKEN not in caplog.text and TOKEN.split(":")[1] not in caplog.text


async def test_webhook_mode_checks_the_secret_token(telegram, sandbox, database_url):
    import aiohttp

    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    settings = _settings(telegram, sandbox, database_url, mode="webhook", public_url=public_url)
    settings = settings.model_copy(update={"http": settings.http.model_copy(
        update={"listen": f"127.0.0.1:{port}"})})
    bridge = Bridge(settings, [TelegramAdapter(settings.adapters["telegram"])])
    await bridge.start()
    try:
        await bridge.relay.link.wait_connected(10)
        assert telegram.webhook["url"] == f"{public_url}/telegram/webhook"
        secret = telegram.webhook["secret_token"]
        assert len(secret) >= 32
        assert not telegram.calls_of("getUpdates")  # webhook, not polling

        update = {"update_id": 9001, "message": telegram.text(ANN, "hello by webhook")}
        async with aiohttp.ClientSession() as http:
            async def post(headers: dict) -> int:
                async with http.post(f"{public_url}/telegram/webhook", json=update,
                                     headers=headers) as response:
                    return response.status

            assert await post({}) == 401
            assert await post({"X-Telegram-Bot-Api-Secret-Token": "guess"}) == 401
            await asyncio.sleep(0.2)
            assert sandbox.received == []  # refused requests were not processed
            assert await post({"X-Telegram-Bot-Api-Secret-Token": secret}) == 200
            assert await post({"X-Telegram-Bot-Api-Secret-Token": secret}) == 200  # retried
        await telegram.wait_for_text(ANN, 'You said: "hello by webhook"')
        await asyncio.sleep(0.3)
        assert [m["message"] for m in sandbox.received] == ["hello by webhook"]
    finally:
        await asyncio.wait_for(bridge.stop(), 20)


def _embedded_example(telegram, sandbox, database_url, monkeypatch):  # noqa: F811
    """examples/telegram_embedded.py's main(), set to the local servers."""
    import importlib.util
    from pathlib import Path

    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_API_URL", telegram.url)
    monkeypatch.setenv("EUSATE_URL", sandbox.url)
    monkeypatch.setenv("EUSATE_API_KEY", DEFAULT_API_KEY)
    monkeypatch.setenv("BRIDGE_STORAGE_URL", database_url)
    path = Path(__file__).parent.parent / "examples" / "telegram_embedded.py"
    spec = importlib.util.spec_from_file_location("telegram_embedded", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example.main


async def test_embedded_in_an_existing_bot(telegram, sandbox, database_url, monkeypatch):
    """examples/telegram_embedded.py, run for real against the local Bot API server."""
    running = asyncio.create_task(
        _embedded_example(telegram, sandbox, database_url, monkeypatch)())
    try:
        telegram.say(ANN, "/hello")
        await telegram.wait_for_text(ANN, "Hello from ACME's own bot!", timeout=20)
        telegram.say(ANN, "just chatting with the bot")
        await asyncio.sleep(0.5)
        assert sandbox.received == []  # not in support mode: not relayed

        telegram.say(ANN, "/support")
        await telegram.wait_for_text(ANN, "Write your question")
        telegram.say(ANN, "my parcel is lost")
        await telegram.wait_for_text(ANN, 'You said: "my parcel is lost"')
        telegram.say(BOB, "/hello")  # everyone else still talks to the bot
        await telegram.wait_for_text(BOB, "Hello from ACME's own bot!")

        telegram.say(ANN, "it is resolved now")
        prompt = await telegram.wait_for_text(ANN, "Did this solve")
        telegram.press(ANN, prompt, _buttons(prompt)[0]["callback_data"])
        rating = await telegram.wait_for_text(ANN, "How would you rate")
        telegram.press(ANN, rating, _buttons(rating)[4]["callback_data"])
        comment = await telegram.wait_for_text(ANN, "add a comment")
        telegram.press(ANN, comment, _buttons(comment)[0]["callback_data"])
        await telegram.wait_for(lambda: comment["text"] == "Thanks for your feedback!")
        telegram.say(ANN, "thanks bot")  # the conversation ended: support mode too
        await asyncio.sleep(0.5)
        assert "thanks bot" not in [m["message"] for m in sandbox.received]

        telegram.say(ANN, "/support")
        telegram.say(ANN, "another question")
        await telegram.wait_for_text(ANN, 'You said: "another question"')
        telegram.say(ANN, "/done")
        await telegram.wait_for_text(ANN, "You left support")
        telegram.say(ANN, "after done")
        await asyncio.sleep(0.5)
        assert "after done" not in [m["message"] for m in sandbox.received]
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_support_mode_of_an_embedded_bot_outlives_a_restart(
        telegram, sandbox, database_url, monkeypatch):
    """A customer in support mode when the company's bot restarts (a deploy) goes on
    talking to the helpdesk; it is kept in the database, which every daemon shares."""
    main = _embedded_example(telegram, sandbox, database_url, monkeypatch)
    running = asyncio.create_task(main())
    try:
        telegram.say(ANN, "/support")
        telegram.say(ANN, "before the restart")
        await telegram.wait_for_text(ANN, 'You said: "before the restart"', timeout=20)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    running = asyncio.create_task(main())
    try:
        telegram.say(ANN, "after the restart")
        await telegram.wait_for_text(ANN, 'You said: "after the restart"', timeout=20)
        telegram.say(ANN, "/done")
        await telegram.wait_for_text(ANN, "You left support")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_typing_is_shown_while_sate_answers(bridge, telegram, sandbox):
    sandbox.behaviour.sate_delay = 5.5  # longer than one "typing" lasts
    telegram.say(ANN, "hello")
    await telegram.wait_for_text(ANN, 'You said: "hello"', timeout=15)
    actions = telegram.calls_of("sendChatAction")
    assert len(actions) == 2  # after 1 s, renewed 4 s later, then stopped by the reply
    assert all(a.params["action"] == "typing" and a.params["chat_id"] == ANN for a in actions)
    await asyncio.sleep(4.5)
    assert len(telegram.calls_of("sendChatAction")) == 2


async def test_a_quick_answer_needs_no_typing(bridge, telegram, sandbox):
    telegram.say(ANN, "hello")
    await telegram.wait_for_text(ANN, 'You said: "hello"')
    await asyncio.sleep(1.5)
    assert telegram.calls_of("sendChatAction") == []


async def test_agent_attachments_are_sent_natively_or_as_a_link(bridge, telegram, sandbox):
    telegram.say(ANN, "hello")
    await telegram.wait_for_text(ANN, "You said")
    ticket = sandbox.received[0]["ticket_chat_id"]
    await sandbox.agent_reply(ticket, "", attachment_metadata={
        "url": "https://files.example.com/label.png", "name": "label.png",
        "mime_type": "image/png"})
    await sandbox.agent_reply(ticket, "Your invoice", attachment_metadata=[
        {"file_url": "https://files.example.com/invoice.pdf", "file_name": "invoice.pdf"}])
    photo = await telegram.wait_for(lambda: telegram.calls_of("sendPhoto"))
    assert photo[0].params["photo"] == "https://files.example.com/label.png"
    document = await telegram.wait_for(lambda: telegram.calls_of("sendDocument"))
    assert document[0].params["document"] == "https://files.example.com/invoice.pdf"
    await telegram.wait_for_text(ANN, "Your invoice")
    telegram.fail("sendDocument", 400, "Bad Request: wrong file identifier/HTTP URL specified")
    await sandbox.agent_reply(ticket, "", attachment_metadata={
        "url": "https://files.example.com/broken.zip", "name": "broken.zip"})
    await telegram.wait_for_text(ANN, "broken.zip: https://files.example.com/broken.zip")


async def test_customer_photos_reach_the_helpdesk_through_a_signed_bridge_link(
        bridge, telegram, sandbox):
    import aiohttp

    message = telegram.text(ANN, "")
    message["text"], message["caption"] = None, "the broken part"
    del message["text"]
    message["photo"] = [{"file_id": "small", "file_unique_id": "a", "width": 90, "height": 90},
                        {"file_id": "AgADBig", "file_unique_id": "b", "width": 800, "height": 600}]
    telegram.push({"message": message})
    await telegram.wait_for(lambda: sandbox.received)
    sent = sandbox.received[0]
    assert sent["message"] == "the broken part"
    link = sent["attachment_metadata"]["url"]
    assert link.startswith(bridge.http.public_url + "/files/telegram/AgADBig?exp=")
    assert TOKEN not in str(sent) and TOKEN.split(":")[1] not in str(sent)
    async with aiohttp.ClientSession() as http:
        async with http.get(link) as response:  # the helpdesk fetching the file
            assert response.status == 200
            assert await response.read() == b"\xff\xd8 jpeg \xff\xd9"
            assert response.content_type == "image/jpeg"
        async with http.get(link.replace("sig=", "sig=0")) as response:
            assert response.status == 403
        expired = link.split("?")[0] + "?exp=1000&sig=" + link.split("sig=")[1]
        async with http.get(expired) as response:
            assert response.status == 403


async def test_auto_close_takes_the_buttons_off_an_unanswered_close_prompt(
        bridge, telegram, sandbox):
    telegram.say(ANN, "resolved")
    prompt = await telegram.wait_for_text(ANN, "Did this solve your issue?")
    await sandbox.auto_close(sandbox.received[0]["ticket_chat_id"])
    await telegram.wait_for_text(ANN, "closed because it looked resolved")
    await telegram.wait_for(lambda: telegram.calls_of("editMessageReplyMarkup"))
    assert "reply_markup" not in prompt and prompt["text"] == "Did this solve your issue?"
    await telegram.wait_for_text(ANN, "How would you rate")


async def test_check_tells_whether_telegram_takes_the_token(tmp_path, telegram, sandbox,
                                                          database_url):
    import subprocess
    import sys

    def check(token: str) -> subprocess.CompletedProcess:
        config = tmp_path / "bridge.toml"
        config.write_text(f'''
[helpdesk]
url = "{sandbox.url}"
api_key = "{DEFAULT_API_KEY}"
[storage]
url = "{database_url}"
[telegram]
token = "${{BOT_TOKEN}}"
api_url = "{telegram.url}"
''')
        return subprocess.run([sys.executable, "-m", "bridge", "check", "--config", str(config)],
                              capture_output=True, text=True, timeout=60,
                              env={**__import__("os").environ, "BOT_TOKEN": token})

    good = await asyncio.to_thread(check, TOKEN)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "ok   telegram accepted the bot token (@support_bot)" in good.stdout
    bad = await asyncio.to_thread(check, "999:wrong")
    assert bad.returncode == 1
    assert "FAIL telegram refused the bot token" in bad.stdout
    assert "999:wrong" not in bad.stdout + bad.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_stop_during_load_finishes_or_keeps_deliveries_and_logs_no_failure(
        telegram, sandbox, database_url, caplog):
    """On SIGTERM the core stops taking work, lets deliveries in flight finish (or leaves
    them stored), and only then are the platform clients closed: closing Telegram's client
    first made every delivery in flight fail ("This HTTPXRequest is not initialized")."""
    telegram.latency["sendMessage"] = 0.4
    customers = range(700, 712)
    bridge = await start_bridge(telegram, sandbox, database_url)
    for customer in customers:
        telegram.say(customer, f"hello {customer}")
    await telegram.wait_for(lambda: len(telegram.calls_of("sendMessage")) >= 3)
    await asyncio.wait_for(bridge.stop(), 20)
    failures = [r.getMessage() for r in caplog.records
                if r.levelno >= logging.WARNING and r.name.startswith(("bridge", "adapters"))]
    assert failures == []
    telegram.latency.clear()
    bridge = await start_bridge(telegram, sandbox, database_url)  # what was left is sent now
    try:
        for customer in customers:
            await telegram.wait_for_text(customer, f'You said: "hello {customer}"')
        await asyncio.sleep(0.3)
        for customer in customers:
            assert len([m for m in telegram.sent_to(customer) if "You said" in m["text"]]) == 1
    finally:
        await asyncio.wait_for(bridge.stop(), 20)


@pytest.mark.parametrize("bridge", ["polling"], indirect=True)
async def test_a_prompt_the_customer_deleted_is_answered_by_a_new_message(
        bridge, telegram, sandbox):
    """Editing a message the customer deleted fails ("message to edit not found"): the
    edit's text is said as a new message, and an edit that only took buttons away is
    dropped."""
    telegram.say(ANN, "resolved")
    prompt = await telegram.wait_for_text(ANN, "Did this solve your issue?")
    telegram.fail("editMessageText", 400, "Bad Request: message to edit not found")
    telegram.press(ANN, prompt, _buttons(prompt)[0]["callback_data"])
    answered = await telegram.wait_for_text(ANN, "Did this solve your issue? Yes, solved")
    assert answered is not prompt and "reply_markup" in prompt  # a new message
    rating = await telegram.wait_for_text(ANN, "How would you rate")
    telegram.fail("editMessageText", 400, "Bad Request: message to edit not found")
    telegram.press(ANN, rating, _buttons(rating)[4]["callback_data"])
    await telegram.wait_for_text(ANN, "Rated 5/5")
    await telegram.wait_for_text(ANN, "add a comment")
    telegram.fail("editMessageText", 400, "Bad Request: message to edit not found")
    telegram.say(ANN, "great")
    await telegram.wait_for_text(ANN, "Thanks for your feedback")


@pytest.mark.parametrize("bridge", ["polling"], indirect=True)
async def test_every_file_of_an_agent_message_is_sent(bridge, telegram, sandbox):
    """Only the first of several files reached the customer."""
    telegram.say(ANN, "hello")
    await telegram.wait_for_text(ANN, "You said")
    await sandbox.agent_reply(sandbox.received[0]["ticket_chat_id"], "Both pages", [
        {"url": "https://files.example.com/page1.png", "mime_type": "image/png"},
        {"url": "https://files.example.com/page2.pdf?sig=1"}])
    await telegram.wait_for_text(ANN, "Both pages")
    assert [c.params["photo"] for c in telegram.calls_of("sendPhoto")] == [
        "https://files.example.com/page1.png"]
    document = telegram.calls_of("sendDocument")
    assert [(c.params["document"], c.params["caption"]) for c in document] == [
        ("https://files.example.com/page2.pdf?sig=1", "page2.pdf")]


def test_a_reply_queued_with_the_raw_metadata_still_shows_its_files():
    """Rows queued by a version that stored the helpdesk's attachment_metadata as is."""
    from bridge.events import Attachment, Outgoing

    outgoing = Outgoing.from_json({"kind": "reply", "text": "", "attachment": [
        {"url": "https://f.example.com/a.png", "mime_type": "image/png"},
        {"file_url": "https://f.example.com/b.pdf", "file_name": "b.pdf"}, "junk"]})
    assert outgoing.attachments == [
        Attachment("https://f.example.com/a.png", "a.png", "image/png"),
        Attachment("https://f.example.com/b.pdf", "b.pdf", "")]
    assert Outgoing.from_json(outgoing.to_json()) == outgoing


async def test_every_daemon_of_a_bot_expects_the_same_webhook_secret(telegram, sandbox,
                                                                     tmp_path):
    """Behind a load balancer, Telegram sends each update with the secret it was last given
    (by whichever daemon started last): a daemon that made up its own secret at start would
    refuse every update the balancer brings it."""
    import aiohttp

    first = await start_bridge(telegram, sandbox, f"sqlite+aiosqlite:///{tmp_path / '1.db'}",
                               mode="webhook")
    second = await start_bridge(telegram, sandbox, f"sqlite+aiosqlite:///{tmp_path / '2.db'}",
                                mode="webhook")
    try:
        update = {"update_id": 9002, "message": telegram.text(ANN, "to the first daemon")}
        async with aiohttp.ClientSession() as http:
            async with http.post(
                    f"{first.settings.http.public_url}/telegram/webhook", json=update,
                    headers={"X-Telegram-Bot-Api-Secret-Token":
                             telegram.webhook["secret_token"]}) as response:
                assert response.status == 200
        await telegram.wait_for_text(ANN, 'You said: "to the first daemon"')
    finally:
        for bridge in (first, second):
            await asyncio.wait_for(bridge.stop(), 20)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_another_program_polling_the_same_bot_is_said_plainly(telegram, sandbox,
                                                                    database_url, caplog):
    """Telegram answers getUpdates with 409 Conflict while another program polls the same
    bot (a second deployment, a developer's laptop): updates then go to either. The log
    says so in words an operator acts on, and polling carries on."""
    import logging

    telegram.fail("getUpdates", 409, "Conflict: terminated by other getUpdates request; "
                  "make sure that only one bot instance is running", times=2)
    caplog.set_level(logging.WARNING)
    bridge = await start_bridge(telegram, sandbox, database_url)
    try:
        telegram.say(ANN, "hello")
        await telegram.wait_for_text(ANN, 'You said: "hello"')
    finally:
        await asyncio.wait_for(bridge.stop(), 20)
    plain = [r for r in caplog.records if "another program is polling this bot" in r.message]
    assert plain and plain[0].levelname == "ERROR"
