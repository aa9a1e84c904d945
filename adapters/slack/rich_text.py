"""A document (bridge/markdown.py) -> Block Kit: `rich_text` blocks, a `header` for a
short top heading, a `divider` for a rule.

Why rich_text (docs/formatting.md): its text elements are literal, so no answer can ever
become `<!channel>`, `<!here>` or `<@U…>`, whatever it holds, and there is no escaping to
get wrong; it has real lists (nested by indent, numbered from any start), quotes and
preformatted blocks; and Slack renders it the same on every client. A table is a
preformatted block with aligned columns while it fits, else a list of its rows.

A block's text keeps under BLOCK_TEXT characters (a longer one is split at line ends, its
structure shown as text), and a message under MESSAGE_BLOCKS blocks and MESSAGE_TEXT
characters; more makes more messages.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from bridge.markdown import (
    BOLD,
    CODE,
    ITALIC,
    STRIKE,
    CodeBlock,
    Document,
    Heading,
    ListBlock,
    Paragraph,
    Quote,
    Rule,
    Span,
    Table,
)
from bridge.styled import RULE, Styled, aligned_table, layout, plain, split

BLOCK_TEXT = 3000
MESSAGE_BLOCKS = 40
MESSAGE_TEXT = 12_000
HEADER_TEXT = 150
TABLE_WIDTH = 60
MAX_INDENT = 6
LINK_SCHEMES = ("http", "https", "mailto")
_STYLE = {BOLD: "bold", ITALIC: "italic", STRIKE: "strike", CODE: "code"}


def blocks(document: Document) -> list[dict]:
    out: list[dict] = []
    for block in document.blocks:
        out += _block(block)
    return out


def messages(rendered: list[dict]) -> list[list[dict]]:
    """Blocks grouped into messages within Slack's limits, in order."""
    grouped: list[list[dict]] = [[]]
    size = 0
    for block in rendered:
        length = _text_length(block)
        if grouped[-1] and (len(grouped[-1]) >= MESSAGE_BLOCKS or size + length > MESSAGE_TEXT):
            grouped.append([])
            size = 0
        grouped[-1].append(block)
        size += length
    return [group for group in grouped if group]


def _block(block) -> list[dict]:
    if isinstance(block, Rule):
        return [{"type": "divider"}]
    heading = plain(block.spans) if isinstance(block, Heading) and block.level <= 2 else ""
    if 0 < len(heading) <= HEADER_TEXT and "\n" not in heading:
        return [{"type": "header", "text": {"type": "plain_text", "text": heading,
                                            "emoji": True}}]
    laid_out = layout(Document((block,)), TABLE_WIDTH)
    if len(laid_out.text) > BLOCK_TEXT:  # too long for one block: its text, in pieces
        return [_rich([_section(_elements(piece))]) if not isinstance(block, CodeBlock)
                else _rich([_preformatted(piece.text)])
                for piece in split(laid_out, BLOCK_TEXT)]
    if isinstance(block, Paragraph):
        return [_rich([_section(_inline(block.spans))])]
    if isinstance(block, Heading):
        return [_rich([_section(_inline(block.spans, extra=BOLD))])]
    if isinstance(block, CodeBlock):
        return [_rich([_preformatted(block.text)])] if block.text.strip() else []
    if isinstance(block, Quote):
        elements = _elements(layout(Document(block.blocks), TABLE_WIDTH).strip())
        return [_rich([{"type": "rich_text_quote", "elements": elements}])] if elements else []
    if isinstance(block, ListBlock):
        return [_rich(_list(block, 0))]
    if isinstance(block, Table):
        aligned = aligned_table(block, TABLE_WIDTH)
        if aligned is not None:
            return [_rich([_preformatted(aligned)])]
        return [_rich([_section(_elements(laid_out))])]  # the table as a list of rows
    return []


def _rich(elements: list[dict]) -> dict:
    return {"type": "rich_text", "elements": elements}


def _section(elements: list[dict]) -> dict:
    return {"type": "rich_text_section", "elements": elements or [_text(" ")]}


def _preformatted(text: str) -> dict:
    return {"type": "rich_text_preformatted", "elements": [_text(text)], "border": 0}


def _text(text: str, styles: frozenset[str] = frozenset()) -> dict:
    element: dict = {"type": "text", "text": text}
    style = {_STYLE[s]: True for s in sorted(styles) if s in _STYLE}
    if style:
        element["style"] = style
    return element


def _piece(text: str, styles: frozenset[str], url: str | None) -> dict:
    element = _text(text, styles)
    if url and urlsplit(url).scheme.lower() in LINK_SCHEMES:
        element["type"], element["url"] = "link", url
    return element


def _inline(spans: tuple[Span, ...], extra: str | None = None) -> list[dict]:
    extra_styles = frozenset({extra}) if extra else frozenset()
    return [_piece(span.text, span.styles | extra_styles, span.url)
            for span in spans if span.text]


def _elements(styled: Styled) -> list[dict]:
    """Laid-out text as styled text elements: marks become styles (a code block inside a
    quote or a list item is shown as code)."""
    out = []
    for start, end, covering in styled.segments():
        styles = frozenset(CODE if k == "pre" else k for k, _ in covering)
        url = next((v for k, v in covering if k == "link"), None)
        out.append(_piece(styled.text[start:end], styles, url))
    return out


def _list(block: ListBlock, depth: int) -> list[dict]:
    """Slack's lists are flat, nested by indent: a nested list ends its parent's run of
    items, and the parent goes on after it numbered from where it was."""
    runs: list[dict] = []
    style = "ordered" if block.ordered else "bullet"
    shown = block.start - 1
    for item in block.items:
        first, rest = (item[0], item[1:]) if item and isinstance(item[0], Paragraph) \
            else (None, item)
        nested = [b for b in rest if isinstance(b, ListBlock)]
        others = [b for b in rest if not isinstance(b, ListBlock)]
        elements = _inline(first.spans) if first is not None else []
        if others:
            extra = layout(Document(tuple(others)), TABLE_WIDTH)
            elements += ([_text("\n")] if elements else []) + _elements(extra)
        if runs and runs[-1]["indent"] == min(depth, MAX_INDENT) and runs[-1]["style"] == style:
            runs[-1]["elements"].append(_section(elements))
        else:
            run = {"type": "rich_text_list", "style": style, "indent": min(depth, MAX_INDENT),
                   "border": 0, "elements": [_section(elements)]}
            if block.ordered and shown:
                run["offset"] = shown
            runs.append(run)
        shown += 1
        for inner in nested:
            runs += _list(inner, depth + 1)
    return runs


def _text_length(block: dict) -> int:
    if block.get("type") == "text":
        return len(block.get("text", ""))
    total = 0
    for value in block.values():
        if isinstance(value, dict):
            total += _text_length(value)
        elif isinstance(value, list):
            total += sum(_text_length(v) for v in value if isinstance(v, dict))
    return total


def plain_blocks(rendered: list[dict]) -> list[dict]:
    """The same message as plain_text sections (and its buttons): what is posted should
    Slack refuse the rich blocks. Context lines go: they only name the sender."""
    lines = []
    for block in rendered:
        if block["type"] == "header":
            lines.append(block["text"]["text"])
        elif block["type"] == "divider":
            lines.append(RULE)
        elif block["type"] == "rich_text":
            lines += [_plain_element(element) for element in block["elements"]]
    text = "\n".join(line for line in lines if line.strip())
    pieces = [piece.text for piece in split(Styled(text), BLOCK_TEXT)]
    return [{"type": "section", "text": {"type": "plain_text", "text": piece, "emoji": True}}
            for piece in pieces] + [b for b in rendered if b["type"] == "actions"]


def _plain_element(element: dict) -> str:
    if element["type"] != "rich_text_list":
        return "".join(e.get("text", "") for e in element["elements"])
    items = []
    for number, item in enumerate(element["elements"], element.get("offset", 0) + 1):
        marker = f"{number}." if element["style"] == "ordered" else "•"
        items.append("   " * element["indent"] + f"{marker} " +
                     "".join(e.get("text", "") for e in item["elements"]))
    return "\n".join(items)
