"""The helpdesk's Markdown-ish text -> Telegram HTML, safely, and split to fit a message.

Everything is HTML-escaped first, so a reply containing `<b>` or `&` shows those characters
as written. Then only *balanced* Markdown becomes tags: `**bold**`, `*italic*`/`_italic_`,
`` `code` `` and `[text](https://url)`; an unbalanced `*` stays a literal asterisk.
"""
from __future__ import annotations

import html
import re

from bridge.chunks import split as split_text
from bridge.sanitize import strip_controls

LIMIT = 4096          # Telegram's maximum message length, after entity parsing
SOURCE_CHUNK = 3500   # split the source below this, so escaping rarely pushes it over

_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", re.S)
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_ITALIC_UNDERSCORE = re.compile(r"(?<!\w)_(?=\S)([^_\n]+?)(?<=\S)_(?!\w)")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^\s)]+)\)")


def to_html(text: str) -> str:
    # NUL delimits the placeholders below: stripped, so a text cannot forge one.
    escaped = html.escape(strip_controls(text), quote=False)
    codes: list[str] = []

    def keep_code(match: re.Match[str]) -> str:
        codes.append(f"<code>{match.group(1)}</code>")
        return f"\x00{len(codes) - 1}\x00"

    escaped = _CODE.sub(keep_code, escaped)  # nothing inside code is formatted
    escaped = _LINK.sub(_link, escaped)
    escaped = _BOLD.sub(r"<b>\1</b>", escaped)
    escaped = _ITALIC_STAR.sub(r"<i>\1</i>", escaped)
    escaped = _ITALIC_UNDERSCORE.sub(r"<i>\1</i>", escaped)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], escaped)


def _link(match: re.Match[str]) -> str:
    # The URL is escaped already (with the rest of the text), but for its quotes.
    return f'<a href="{match.group(2).replace(chr(34), "&quot;")}">{match.group(1)}</a>'


def split(text: str, limit: int = SOURCE_CHUNK) -> list[str]:
    return split_text(text, limit)
