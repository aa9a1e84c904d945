"""Every kind of message a Telegram customer sends reaches the helpdesk, as an attachment
or as text, or the customer is told plainly why not; agent files go by the method that
fits their type. Through the local Bot API server, with messages as Telegram sends them."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.test_telegram import ANN, TOKEN, start_bridge, telegram  # noqa: F401 (fixture)

MB = 1024 * 1024


@pytest.fixture
async def bridge(telegram, sandbox, database_url):  # noqa: F811
    bridge = await start_bridge(telegram, sandbox, database_url)
    yield bridge
    await asyncio.wait_for(bridge.stop(), 20)


def _sent(telegram, content: dict, caption: str | None = None) -> int:  # noqa: F811
    """A message from Ann carrying `content` (and a caption) instead of text."""
    message = telegram.text(ANN, "")
    del message["text"]
    message.update(content)
    if caption is not None:
        message["caption"] = caption
    return telegram.push({"message": message})


def _file(file_id: str, **fields) -> dict:
    return {"file_id": file_id, "file_unique_id": f"u-{file_id}", **fields}


# Each kind as the Bot API sends it, and what the helpdesk should be told of it.
MEDIA = {
    "voice": ({"voice": _file("VOICE", duration=3, mime_type="audio/ogg", file_size=4521)},
              "voice.ogg", "audio/ogg"),
    "audio": ({"audio": _file("AUDIO", duration=120, performer="Band", title="Song",
                              file_name="song.mp3", mime_type="audio/mpeg",
                              file_size=2 * MB)},
              "song.mp3", "audio/mpeg"),
    "video": ({"video": _file("VIDEO", width=1280, height=720, duration=10,
                              file_name="clip.mp4", mime_type="video/mp4", file_size=5 * MB)},
              "clip.mp4", "video/mp4"),
    "video_note": ({"video_note": _file("ROUND", length=240, duration=5, file_size=300_000)},
                   "video_note.mp4", "video/mp4"),
    "animation": ({"animation": _file("GIF", width=320, height=240, duration=2,
                                      file_name="giphy.mp4", mime_type="video/mp4"),
                   "document": _file("GIF", file_name="giphy.mp4", mime_type="video/mp4")},
                  "giphy.mp4", "video/mp4"),
    "sticker": ({"sticker": _file("STICKER", type="regular", width=512, height=512,
                                  is_animated=False, is_video=False, emoji="👍",
                                  set_name="Cats", file_size=20_000)},
                "sticker.webp", "image/webp"),
    "animated sticker": ({"sticker": _file("TGS", type="regular", width=512, height=512,
                                           is_animated=True, is_video=False, emoji="🎉")},
                         "sticker.tgs", "application/x-tgsticker"),
    "document": ({"document": _file("PDF", file_name="invoice.pdf",
                                    mime_type="application/pdf", file_size=80_000)},
                 "invoice.pdf", "application/pdf"),
}


async def test_every_media_kind_reaches_the_helpdesk_through_a_signed_link(
        bridge, telegram, sandbox):  # noqa: F811
    for kind, (content, _name, _mime) in MEDIA.items():
        _sent(telegram, content, caption=f"my {kind}")
    await telegram.wait_for(lambda: len(sandbox.received) >= len(MEDIA))
    received = {m["message"]: m["attachment_metadata"] for m in sandbox.received}
    for kind, (content, name, mime) in MEDIA.items():
        attachment = received[f"my {kind}"]
        file_id = next(iter(content.values()))["file_id"]
        assert (attachment["name"], attachment["mime_type"]) == (name, mime), kind
        assert attachment["url"].startswith(
            f"{bridge.http.public_url}/files/telegram/{file_id}?exp="), kind
    assert TOKEN.split(":")[1] not in str(sandbox.received)
    async with aiohttp.ClientSession() as http:  # the helpdesk fetching the voice note
        async with http.get(received["my voice"]["url"]) as response:
            assert response.status == 200


async def test_a_voice_note_without_a_caption_is_relayed_not_dropped(
        bridge, telegram, sandbox):  # noqa: F811
    _sent(telegram, MEDIA["voice"][0])
    await telegram.wait_for(lambda: sandbox.received)
    assert sandbox.received[0]["message"] == ""
    assert sandbox.received[0]["attachment_metadata"]["name"] == "voice.ogg"


async def test_places_and_contacts_arrive_as_text_with_a_map_link(
        bridge, telegram, sandbox):  # noqa: F811
    location = {"latitude": 52.516275, "longitude": 13.377704}
    _sent(telegram, {"location": location})
    await telegram.wait_for(lambda: len(sandbox.received) == 1)
    _sent(telegram, {"location": location, "venue": {
        "location": location, "title": "Brandenburg Gate", "address": "Pariser Platz, Berlin"}})
    await telegram.wait_for(lambda: len(sandbox.received) == 2)
    _sent(telegram, {"contact": {"phone_number": "+4915112345678", "first_name": "Eva",
                                 "last_name": "Muster", "user_id": 777}})
    await telegram.wait_for(lambda: len(sandbox.received) == 3)
    texts = [m["message"] for m in sandbox.received]
    link = "https://www.openstreetmap.org/?mlat=52.516275&mlon=13.377704#map=17/52.516275/13.377704"
    assert texts[0] == f"📍 52.516275, 13.377704\n{link}"
    assert texts[1] == f"📍 Brandenburg Gate, Pariser Platz, Berlin\n{link}"
    assert texts[2] == "👤 Eva Muster: +4915112345678"


async def test_a_live_location_moving_is_not_relayed_again_and_again(
        bridge, telegram, sandbox):  # noqa: F811
    message = telegram.text(ANN, "")
    del message["text"]
    message["location"] = {"latitude": 52.5, "longitude": 13.4, "live_period": 900}
    telegram.push({"message": message})
    await telegram.wait_for(lambda: sandbox.received)
    for step in range(3):
        moved = {**message, "location": {"latitude": 52.5 + step / 1000, "longitude": 13.4,
                                         "live_period": 900},
                 "edit_date": message["date"] + step + 1}
        telegram.push({"edited_message": moved})
    telegram.say(ANN, "here I am")
    await telegram.wait_for(lambda: len(sandbox.received) == 2)
    await asyncio.sleep(0.3)
    assert [m["message"].split("\n")[0] for m in sandbox.received] == [
        "📍 52.5, 13.4", "here I am"]


def _album_part(telegram, album: str, file_id: str, caption: str | None = None) -> dict:  # noqa: F811
    message = telegram.text(ANN, "")
    del message["text"]
    message.update(media_group_id=album,
                   photo=[_file(f"{file_id}-small", width=90, height=90, file_size=1_000),
                          _file(file_id, width=1280, height=960, file_size=90_000)])
    if caption is not None:
        message["caption"] = caption
    return message


async def test_an_album_reaches_the_helpdesk_as_one_message_complete_in_order(
        bridge, telegram, sandbox):  # noqa: F811
    parts = [_album_part(telegram, "13579", "FIRST", caption="the damage, three sides"),
             _album_part(telegram, "13579", "SECOND"), _album_part(telegram, "13579", "THIRD")]
    for part in parts:
        telegram.push({"message": part})
    telegram.push({"message": parts[1]})  # Telegram bringing a part again
    await telegram.wait_for(lambda: sandbox.received)
    await telegram.wait_for_text(ANN, "the damage, three sides")  # SATE's one answer
    await asyncio.sleep(1.5)  # longer than an album waits for its parts
    assert len(sandbox.received) == 1
    album = sandbox.received[0]
    assert album["message"] == "the damage, three sides"
    assert [a["url"].split("/files/telegram/")[1].split("?")[0]
            for a in album["attachment_metadata"]] == ["FIRST", "SECOND", "THIRD"]
    assert len([m for m in telegram.sent_to(ANN) if "SATE" in m["text"]]) == 1


async def test_an_album_after_its_time_and_a_message_between_are_not_mixed(
        bridge, telegram, sandbox):  # noqa: F811
    telegram.push({"message": _album_part(telegram, "24680", "ONE", caption="first album")})
    await telegram.wait_for(lambda: sandbox.received)
    telegram.push({"message": _album_part(telegram, "24680", "LATE")})  # long after: its own
    telegram.say(ANN, "and a word")
    telegram.push({"message": _album_part(telegram, "97531", "OTHER")})
    await telegram.wait_for(lambda: len(sandbox.received) == 4)
    assert [m["message"] for m in sandbox.received] == ["first album", "", "and a word", ""]
    assert sandbox.received[1]["attachment_metadata"]["name"] == "photo.jpg"


async def test_a_file_over_20_mb_gets_a_plain_sentence_and_its_caption_still_goes(
        bridge, telegram, sandbox):  # noqa: F811
    _sent(telegram, {"video": _file("BIG", width=1920, height=1080, duration=300,
                                    mime_type="video/mp4", file_size=25 * MB)},
          caption="the whole recording")
    notice = await telegram.wait_for_text(ANN, "larger than 20 MB")
    assert "smaller file, or a link" in notice["text"]
    await telegram.wait_for(lambda: sandbox.received)
    assert sandbox.received[0]["message"] == "the whole recording"
    assert sandbox.received[0]["attachment_metadata"] is None
    _sent(telegram, {"document": _file("HUGE", file_name="dump.zip", file_size=30 * MB)})
    await telegram.wait_for(lambda: len([m for m in telegram.sent_to(ANN)
                                         if "larger than 20 MB" in m.get("text", "")]) == 2)
    await asyncio.sleep(0.3)
    assert len(sandbox.received) == 1  # nothing to relay: no caption


async def test_a_poll_or_a_die_is_refused_plainly(bridge, telegram, sandbox):  # noqa: F811
    _sent(telegram, {"poll": {"id": "5", "question": "Which plan?", "options": [
        {"persistent_id": "0", "text": "Basic", "voter_count": 0},
        {"persistent_id": "1", "text": "Pro", "voter_count": 0}],
        "total_voter_count": 0, "is_closed": False, "is_anonymous": True, "type": "regular",
        "allows_multiple_answers": False, "allows_revoting": False,
        "members_only": False}})
    await telegram.wait_for_text(ANN, "Sorry, polls cannot be sent to the support team")
    _sent(telegram, {"dice": {"emoji": "🎲", "value": 4}})
    await telegram.wait_for_text(ANN, "Sorry, dice cannot be sent to the support team")
    await asyncio.sleep(0.3)
    assert sandbox.received == []


@pytest.mark.parametrize("mime, method, field", [
    ("image/png", "sendPhoto", "photo"),
    ("video/mp4", "sendVideo", "video"),
    ("audio/ogg", "sendVoice", "voice"),
    ("audio/mpeg", "sendAudio", "audio"),
    ("image/gif", "sendDocument", "document"),
    ("application/zip", "sendDocument", "document"),
])
async def test_agent_files_go_by_the_method_of_their_type(
        bridge, telegram, sandbox, mime, method, field):  # noqa: F811
    telegram.say(ANN, "hello")
    await telegram.wait_for_text(ANN, "You said")
    url = f"https://files.example.com/file-of-{mime.replace('/', '-')}"
    await sandbox.agent_reply(sandbox.received[0]["ticket_chat_id"], "", attachment_metadata={
        "url": url, "name": "the file", "mime_type": mime})
    calls = await telegram.wait_for(lambda: telegram.calls_of(method))
    assert calls[0].params[field] == url and calls[0].params["caption"] == "the file"


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_an_update_the_library_cannot_read_is_skipped_and_receiving_goes_on(
        telegram, sandbox, database_url, caplog, mode):  # noqa: F811
    """python-telegram-bot refuses a poll in the shape before Bot API 9.6 (no persistent_id):
    a shape it does not know, as a newer Bot API could send. Receiving must not stop there:
    polled, it came back with every getUpdates; by webhook, Telegram would send it again."""
    bridge = await start_bridge(telegram, sandbox, database_url, mode)
    try:
        await _unreadable_then_more(telegram, sandbox, caplog)
    finally:
        await asyncio.wait_for(bridge.stop(), 20)


async def _unreadable_then_more(telegram, sandbox, caplog) -> None:  # noqa: F811
    _sent(telegram, {"poll": {"id": "6", "question": "?", "options": [
        {"text": "yes", "voter_count": 0}], "total_voter_count": 0, "is_closed": False,
        "is_anonymous": True, "type": "regular", "allows_multiple_answers": False}})
    telegram.say(ANN, "still there?")
    await telegram.wait_for_text(ANN, 'You said: "still there?"')
    assert [m["message"] for m in sandbox.received] == ["still there?"]
    assert any("could not be read" in r.getMessage() for r in caplog.records)
    assert "Which plan" not in caplog.text and "question" not in caplog.text
