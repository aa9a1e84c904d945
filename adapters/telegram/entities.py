"""A document (bridge/markdown.py) -> Telegram messages: plain text with `entities`.

Entities instead of parse_mode: no text can be refused as "can't parse entities", since
nothing in the text is markup; a `<`, `&` or `*` is simply a character. The entities
keep Telegram's nesting rules (core.telegram.org/bots/api#formatting-options): any two
either do not overlap or one holds the other; pre and code hold nothing and sit in no
bold, italic, strikethrough or spoiler; a link holds only those; a quote holds no quote.
A range that would break a rule is ended and begun again around what it may not hold.

Each message keeps to 4,096 UTF-16 code units (Telegram's count) and 100 entities (more
are ignored), split at block ends first (bridge/styled.py).
"""
from __future__ import annotations

from urllib.parse import urlsplit

from telegram import MessageEntity
from telegram.constants import MessageEntityType as T

from bridge.markdown import Document
from bridge.styled import Styled, layout, split

LIMIT = 4096       # UTF-16 code units a message may hold
MAX_ENTITIES = 100
STYLES = {"bold": T.BOLD, "italic": T.ITALIC, "strike": T.STRIKETHROUGH,
          "spoiler": T.SPOILER}
LINK_SCHEMES = ("http", "https", "tg")
# The order ranges that start together are opened in: the outer first.
_ORDER = {"quote": 0, "pre": 1, "link": 2, "bold": 3, "italic": 4, "strike": 5,
          "spoiler": 6, "code": 7}

Message = tuple[str, list[MessageEntity]]


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def messages(document: Document) -> list[Message]:
    """The texts to send, in order, each with its entities."""
    out: list[Message] = []
    for piece in split(layout(document), LIMIT, utf16_length):
        out += _within_entity_limit(piece, LIMIT)
    return out


def _within_entity_limit(piece: Styled, limit: int) -> list[Message]:
    entities = to_entities(piece)
    if len(entities) <= MAX_ENTITIES or limit < 64:
        return [(piece.text, entities[:MAX_ENTITIES])]
    smaller = max(1, utf16_length(piece.text) // 2)
    return [m for part in split(piece, smaller, utf16_length)
            for m in _within_entity_limit(part, smaller)]


def to_entities(styled: Styled) -> list[MessageEntity]:
    text = styled.text
    units = _utf16_offsets(text)
    entities: list[MessageEntity] = []
    stack: list[tuple[tuple[str, str], int]] = []  # (kind, value), where it opened

    def close_from(depth: int, at: int) -> None:
        while len(stack) > depth:
            (kind, value), opened = stack.pop()
            if opened < at:
                entities.append(_entity(kind, value, units[opened], units[at] - units[opened]))

    for start, _end, covering in styled.segments():
        active = _allowed(covering)
        depth = next((i for i, (key, _) in enumerate(stack) if key not in active), len(stack))
        close_from(depth, start)
        open_keys = {key for key, _ in stack}
        for key in sorted(active - open_keys, key=lambda k: (_ORDER[k[0]], k[1])):
            stack.append((key, start))
    close_from(0, len(text))
    return sorted(entities, key=lambda e: (e.offset, -e.length))


def _allowed(active: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """What one stretch of text may carry at once."""
    active = {(k, v) for k, v in active
              if k != "link" or urlsplit(v).scheme.lower() in LINK_SCHEMES}
    kinds = {k for k, _ in active}
    if "pre" in kinds:  # monospace blocks hold nothing
        return {(k, v) for k, v in active if k in ("pre", "quote")}
    if "code" in kinds:
        if "link" in kinds:  # a link outweighs its monospace look
            return {(k, v) for k, v in active if k != "code"}
        return {(k, v) for k, v in active if k in ("code", "quote")}
    return active


def _entity(kind: str, value: str, offset: int, length: int) -> MessageEntity:
    if kind == "link":
        return MessageEntity(T.TEXT_LINK, offset, length, url=value)
    if kind == "pre":
        return MessageEntity(T.PRE, offset, length, language=value or None)
    if kind == "quote":
        folded = T.EXPANDABLE_BLOCKQUOTE if value == "expandable" else T.BLOCKQUOTE
        return MessageEntity(folded, offset, length)
    if kind == "code":
        return MessageEntity(T.CODE, offset, length)
    return MessageEntity(STYLES[kind], offset, length)


def _utf16_offsets(text: str) -> list[int]:
    """For each character index (and the end), its offset in UTF-16 code units."""
    offsets, at = [0], 0
    for character in text:
        at += 2 if ord(character) > 0xFFFF else 1
        offsets.append(at)
    return offsets
