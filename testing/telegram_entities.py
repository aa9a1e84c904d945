"""What Telegram checks in a message's `entities`, strictly: the nesting rules of
core.telegram.org/bots/api#formatting-options read in their narrowest sense, UTF-16
offsets, and the limits. Written from the documentation, not from our renderer: the
local Bot API server refuses what this refuses, as Telegram would."""
from __future__ import annotations

from urllib.parse import urlsplit

STYLES = {"bold", "italic", "underline", "strikethrough", "spoiler"}
MONOSPACE = {"code", "pre"}
QUOTES = {"blockquote", "expandable_blockquote"}
KNOWN = STYLES | MONOSPACE | QUOTES | {"text_link", "url", "mention", "hashtag", "cashtag",
                                       "bot_command", "email", "phone_number", "text_mention",
                                       "custom_emoji"}
MAX_LENGTH = 4096
MAX_ENTITIES = 100


def utf16(text: str) -> bytes:
    return text.encode("utf-16-le")


def problems(text: str, entities: list[dict]) -> list[str]:
    """Why Telegram would refuse (or silently mangle) this message; [] when it would not."""
    found: list[str] = []
    units = utf16(text)
    size = len(units) // 2
    if not text.strip():
        found.append("message text is empty")
    if size > MAX_LENGTH:
        found.append(f"message is too long ({size} UTF-16 code units)")
    if text != text.strip():
        found.append("text starts or ends with white space (Telegram strips it, and the "
                     "entities would move)")
    if len(entities) > MAX_ENTITIES:
        found.append(f"{len(entities)} entities: Telegram ignores all after the 100th")
    for entity in entities:
        found += _one(entity, units, size)
    for index, a in enumerate(entities):
        for b in entities[index + 1:]:
            found += _pair(a, b)
    return found


def _one(entity: dict, units: bytes, size: int) -> list[str]:
    kind, offset, length = entity.get("type"), entity.get("offset"), entity.get("length")
    if kind not in KNOWN:
        return [f"unknown entity type {kind!r}"]
    if not isinstance(offset, int) or not isinstance(length, int) or offset < 0 or length < 1:
        return [f"{kind}: bad offset or length ({offset}, {length})"]
    if offset + length > size:
        return [f"{kind}: ends at {offset + length}, after the text ({size})"]
    for edge in (offset, offset + length):  # never between the halves of a surrogate pair
        if 0 < edge < size and 0xDC00 <= int.from_bytes(units[2 * edge:2 * edge + 2],
                                                        "little") <= 0xDFFF:
            return [f"{kind}: an edge at {edge} splits a character"]
    if kind == "text_link":
        url = entity.get("url") or ""
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https", "tg") or \
                (parts.scheme.lower() != "tg" and not parts.netloc):
            return [f"text_link: wrong HTTP URL {url!r}"]
    if kind == "pre" and not isinstance(entity.get("language", ""), (str, type(None))):
        return ["pre: language is not a string"]
    return []


def _pair(a: dict, b: dict) -> list[str]:
    a_start, a_end = a["offset"], a["offset"] + a["length"]
    b_start, b_end = b["offset"], b["offset"] + b["length"]
    if a_end <= b_start or b_end <= a_start:
        return []
    a_holds_b = a_start <= b_start and b_end <= a_end
    b_holds_a = b_start <= a_start and a_end <= b_end
    if not a_holds_b and not b_holds_a:
        return [f"{a['type']} and {b['type']} overlap without one holding the other"]
    if (a_holds_b and _may_hold(a["type"], b["type"])) or \
            (b_holds_a and _may_hold(b["type"], a["type"])):
        return []
    return [f"{a['type']} and {b['type']} may not nest"]


def _may_hold(outer: str, inner: str) -> bool:
    if outer in MONOSPACE:
        return False  # pre and code hold nothing
    if inner in MONOSPACE:
        return outer in QUOTES  # never inside bold, italic, ... nor a link
    if outer in STYLES or inner in STYLES:
        return True
    if outer in QUOTES:
        return inner not in QUOTES
    return False
