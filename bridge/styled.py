"""A document (bridge/markdown.py) laid out as lines of text with marks over them: what a
chat shows when it takes text and ranges of formatting (Telegram's entities), what a
terminal shows, and every platform's plain-text fallback (the same text, marks dropped).

Headings are bold lines; lists get bullets or numbers, nested ones indented; quotes and
code blocks are marked ranges; a table is an aligned monospace block while it fits
`table_width` characters, and otherwise a list of its rows, each with its headers.
"""
from __future__ import annotations

import bisect
import unicodedata
from dataclasses import dataclass, field
from typing import Iterator

from bridge.markdown import (
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

# kinds: the span styles (bold, italic, strike, code, spoiler), "link" (value: the URL),
# "pre" (value: the language), "quote" (value: "expandable" for a long one)
Mark = tuple[int, int, str, str]  # start, end (in characters of `text`), kind, value

BULLETS = ("•", "◦", "▪")
RULE = "──────────"
TABLE_WIDTH = 40  # monospace characters a phone shows on one line
LONG_QUOTE = 400  # characters: a longer quote is shown folded, where the platform can


@dataclass
class Styled:
    text: str = ""
    marks: list[Mark] = field(default_factory=list)
    cuts: list[int] = field(default_factory=list)  # where a split reads well: block ends

    def add(self, other: "Styled | str", kind: str | None = None, value: str = "") -> None:
        """Append text or laid-out text; kind: mark what is appended."""
        other = Styled(other) if isinstance(other, str) else other
        shift = len(self.text)
        self.text += other.text
        self.marks += [(s + shift, e + shift, k, v) for s, e, k, v in other.marks]
        self.cuts += [c + shift for c in other.cuts]
        if kind is not None and other.text:
            self.marks.append((shift, len(self.text), kind, value))

    def slice(self, start: int, end: int) -> "Styled":
        marks = [(max(s, start) - start, min(e, end) - start, k, v)
                 for s, e, k, v in self.marks if s < end and e > start]
        return Styled(self.text[start:end], [m for m in marks if m[0] < m[1]],
                      [c - start for c in self.cuts if start < c < end])

    def segments(self) -> Iterator[tuple[int, int, set[tuple[str, str]]]]:
        """The text in stretches no mark starts or ends inside: (start, end, the
        (kind, value) of every mark over it)."""
        points = sorted({0, len(self.text), *(p for s, e, *_ in self.marks for p in (s, e))})
        for start, end in zip(points, points[1:]):
            yield start, end, {(k, v) for s, e, k, v in self.marks if s <= start and e >= end}

    def strip(self) -> "Styled":
        """Without the blank lines and spaces around (a chat drops them, and with them
        would shift every mark)."""
        start = len(self.text) - len(self.text.lstrip())
        end = len(self.text.rstrip())
        return self.slice(start, max(start, end))


def layout(document: Document, table_width: int = TABLE_WIDTH) -> Styled:
    return _joined([_block(b, 0, False, table_width) for b in document.blocks], "\n\n")


def plain(spans: tuple[Span, ...]) -> str:
    return "".join(span.text for span in spans)


def split(styled: Styled, limit: int, measure=len) -> list[Styled]:
    """Pieces whose text measures at most `limit`: at block ends where one fits, else at a
    line end, else at a space, else where the limit falls. A mark cut in two (a long code
    block) is marked again in each piece."""
    pieces, start, text = [], 0, styled.text
    while start < len(text):
        end = len(text) if measure(text[start:]) <= limit else \
            _cut(text, start, limit, styled.cuts, measure)
        pieces.append(styled.slice(start, end).strip())
        start = end
    return [piece for piece in pieces if piece.text]


def display_width(text: str) -> int:
    return sum(0 if unicodedata.combining(c) else
               2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def aligned_table(table: Table, width: int) -> str | None:
    """The table as monospace lines (header, rule, rows) aligned as its columns say, or
    None when wider than `width` or when a cell holds a line break."""
    rows = [[plain(cell) for cell in row] for row in (table.header, *table.rows)]
    columns = max(len(row) for row in rows)
    rows = [row + [""] * (columns - len(row)) for row in rows]
    if any("\n" in cell for row in rows for cell in row):
        return None
    widths = [max(display_width(row[i]) for row in rows) for i in range(columns)]
    if sum(widths) + 3 * (columns - 1) > width:
        return None
    align = list(table.align) + ["left"] * (columns - len(table.align))
    lines = [" │ ".join(_pad(cell, widths[i], align[i]) for i, cell in enumerate(row)).rstrip()
             for row in rows]
    lines.insert(1, "─┼─".join("─" * w for w in widths))
    return "\n".join(lines)


def _pad(cell: str, width: int, align: str) -> str:
    gap = width - display_width(cell)
    if align == "right":
        return " " * gap + cell
    if align == "center":
        return " " * (gap // 2) + cell + " " * (gap - gap // 2)
    return cell + " " * gap


def _joined(parts: list[Styled], separator: str) -> Styled:
    out = Styled()
    for part in parts:
        if not part.text:
            continue
        if out.text:
            out.add(separator)
        out.add(part)
        out.cuts.append(len(out.text))
    return out


def _spans(spans: tuple[Span, ...]) -> Styled:
    out = Styled()
    for span in spans:
        start = len(out.text)
        out.text += span.text
        out.marks += [(start, len(out.text), style, "") for style in sorted(span.styles)]
        if span.url:
            out.marks.append((start, len(out.text), "link", span.url))
    return out


def _block(block, depth: int, in_quote: bool, table_width: int) -> Styled:
    out = Styled()
    if isinstance(block, Paragraph):
        return _spans(block.spans)
    if isinstance(block, Heading):
        out.add(_spans(block.spans), "bold")
    elif isinstance(block, CodeBlock):
        out.add(block.text, "pre", block.language)
    elif isinstance(block, Quote):
        inner = _joined([_block(b, depth, True, table_width) for b in block.blocks], "\n")
        if in_quote:  # a quote in a quote: one level is all a chat shows
            return inner
        long = len(inner.text) > LONG_QUOTE
        out.add(inner, "quote", "expandable" if long else "")
    elif isinstance(block, ListBlock):
        return _list(block, depth, in_quote, table_width)
    elif isinstance(block, Table):
        return _table_layout(block, table_width)
    elif isinstance(block, Rule):
        out.add(RULE)
    return out


def _list(block: ListBlock, depth: int, in_quote: bool, table_width: int) -> Styled:
    items = []
    for number, item in enumerate(block.items, block.start):
        marker = f"{number}." if block.ordered else BULLETS[depth % len(BULLETS)]
        body = _joined([_block(b, depth + 1, in_quote, table_width) for b in item], "\n")
        items.append(_indent(body, marker + " ", " " * (len(marker) + 1)))
    return _joined(items, "\n")


def _table_layout(table: Table, width: int) -> Styled:
    """Aligned monospace while it fits `width`, else each row a few lines, with its
    headers."""
    out = Styled()
    aligned = aligned_table(table, width)
    if aligned is not None:
        out.add(aligned, "pre", "")
        return out
    rows = []
    for row in table.rows:
        entry = Styled()
        for index, cell in enumerate(row):
            header = plain(table.header[index]) if index < len(table.header) else ""
            if index:
                entry.add("\n")
            if header:
                entry.add(f"{header}: ")
            if index == 0:  # the row's name
                entry.add(_spans(cell), "bold")
            else:
                entry.add(_spans(cell))
        rows.append(entry)
    return _joined(rows, "\n\n")


def _indent(styled: Styled, first: str, rest: str) -> Styled:
    """Each line prefixed: the first with `first`, the others with `rest`; marks move with
    their text (a mark that starts a line starts after its prefix)."""
    text = styled.text
    breaks = [i for i, c in enumerate(text) if c == "\n"]

    def before(position: int, inclusive: bool) -> int:
        """Characters inserted before `position` (at it too, when inclusive)."""
        count = bisect.bisect_left(breaks, position if inclusive else position - 1)
        return len(first) + len(rest) * count if (position > 0 or inclusive) else 0

    lines = text.split("\n")
    out = Styled(first + ("\n" + rest).join(lines))
    out.marks = [(s + before(s, True), e + before(e, False), k, v)
                 for s, e, k, v in styled.marks]
    out.cuts = [c + before(c, True) for c in styled.cuts]
    return out


def _cut(text: str, start: int, limit: int, cuts: list[int], measure) -> int:
    low, high = start + 1, len(text)  # the furthest end that fits: found by halving
    while low < high:
        middle = (low + high + 1) // 2
        if measure(text[start:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    hard = low
    fitting = [c for c in cuts if start < c <= hard]
    if fitting:
        return fitting[-1]
    for separator in ("\n", " "):
        found = text.rfind(separator, start, hard)
        if found > start:
            return found + 1
    return hard
