"""The helpdesk's Markdown-ish text -> Slack mrkdwn, safely.

`&`, `<` and `>` are escaped first, so a reply can never ping `<!channel>` or forge a link;
then only *balanced* Markdown is converted: `**bold**` -> `*bold*`, `*italic*` ->
`_italic_` (`_italic_` is already mrkdwn), `[text](https://url)` -> `<url|text>`; code
spans are left alone. An unbalanced `*` stays a literal asterisk.
"""
from __future__ import annotations

import re

from bridge.chunks import split
from bridge.sanitize import strip_controls

SECTION_LIMIT = 3000   # a section block's text, after escaping
SOURCE_CHUNK = 2500    # split the source below that, so escaping rarely pushes it over

_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", re.S)
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_LINK = re.compile(r"\[([^\]\n|]+)\]\((https?://[^\s)|]+)\)")
_KEPT = re.compile("\x00(\\d+)\x00")


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_mrkdwn(text: str) -> str:
    # Rendered pieces are kept aside behind NUL-delimited placeholders. The text itself can
    # hold no NUL (stripped here too, not only where texts enter), and a piece is stored
    # with the placeholders inside it already filled in, so one pass restores everything.
    kept: list[str] = []

    def restore(rendered: str) -> str:
        return _KEPT.sub(lambda m: kept[int(m.group(1))], rendered)

    def keep(rendered: str) -> str:
        kept.append(restore(rendered))
        return f"\x00{len(kept) - 1}\x00"

    out = _CODE.sub(lambda m: keep(f"`{m.group(1)}`"), escape(strip_controls(text)))
    out = _LINK.sub(lambda m: keep(f"<{m.group(2)}|{m.group(1)}>"), out)
    out = _ITALIC_STAR.sub(r"_\1_", out)   # before bold, whose output is a single *
    out = _BOLD.sub(lambda m: keep(f"*{m.group(1)}*"), out)
    return restore(out)


def sections(text: str) -> list[str]:
    """mrkdwn pieces that each fit a section block."""
    pieces = []
    for chunk in split(text, SOURCE_CHUNK):
        rendered = to_mrkdwn(chunk)
        pieces += split(rendered, SECTION_LIMIT) if len(rendered) > SECTION_LIMIT else [rendered]
    return pieces
