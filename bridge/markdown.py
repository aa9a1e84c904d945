"""Markdown, as SATE and agents write it, parsed once into a neutral document that every
adapter renders the best way its platform can (docs/formatting.md).

The parser is markdown-it-py (CommonMark, with GitHub's tables and strikethrough). Raw
HTML is not HTML here: `<b>` in an agent's text is three characters to show as written.
The document keeps only what a chat can show: paragraphs, headings, lists, code, quotes,
tables and rules; inline text is a flat run of spans, each with its styles and link.
`||spoiler||` (Telegram's and Discord's syntax) is a style too.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Union

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

BOLD, ITALIC, STRIKE, CODE, SPOILER = "bold", "italic", "strike", "code", "spoiler"
_SPOILER = re.compile(r"\|\|(?=\S)(.+?)(?<=\S)\|\|")
_STYLE_OF = {"strong": BOLD, "em": ITALIC, "s": STRIKE}
# What can make a text more than paragraphs: a sign Markdown reads anywhere, or at a
# line's start (a heading, a quote, a list, a setext underline, an indented code block).
_MARKUP = re.compile(r"[*_`~\[\]<>|\\&\r]|^[ \t]*(?:[#>]|[-+]\s|\d+[.)]|[=-]{2})|^(?: {4}| {0,3}\t)",
                     re.M)
# Markdown's syntax is letters' punctuation: a parse that shows less than this share of
# the text's letters and digits lost words.
LOSS_ALLOWED = 0.8


@dataclass(frozen=True)
class Span:
    text: str
    styles: frozenset[str] = frozenset()
    url: str | None = None


@dataclass(frozen=True)
class Paragraph:
    spans: tuple[Span, ...]


@dataclass(frozen=True)
class Heading:
    level: int
    spans: tuple[Span, ...]


@dataclass(frozen=True)
class CodeBlock:
    text: str
    language: str = ""


@dataclass(frozen=True)
class Quote:
    blocks: tuple["Block", ...]


@dataclass(frozen=True)
class ListBlock:
    ordered: bool
    start: int
    items: tuple[tuple["Block", ...], ...]


@dataclass(frozen=True)
class Table:
    header: tuple[tuple[Span, ...], ...]
    rows: tuple[tuple[tuple[Span, ...], ...], ...]
    align: tuple[str, ...]  # per column: "left", "center" or "right"


@dataclass(frozen=True)
class Rule:
    pass


Block = Union[Paragraph, Heading, CodeBlock, Quote, ListBlock, Table, Rule]


@dataclass(frozen=True)
class Document:
    blocks: tuple[Block, ...] = field(default_factory=tuple)

    def with_prefix(self, spans: tuple[Span, ...]) -> "Document":
        """The document with spans put before its first words ("SATE: …"): in its first
        paragraph or heading, or as a line of their own before a list or a code block."""
        if not spans:
            return self
        first = self.blocks[0] if self.blocks else None
        if isinstance(first, Paragraph):
            return Document((Paragraph(spans + first.spans), *self.blocks[1:]))
        if isinstance(first, Heading):
            return Document((Heading(first.level, spans + first.spans), *self.blocks[1:]))
        return Document((Paragraph(spans), *self.blocks))


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # maxNesting (20 in this preset) bounds how deep a hostile text can nest.
    return MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])


def parse(source: str) -> Document:
    """Never raises for any text: what is not Markdown is text. Should the parse lose
    words (nesting past the parser's bound drops the rest; a fence's first line is read
    as a language), the whole text is one plain paragraph instead."""
    if not _MARKUP.search(source):  # most short answers: the parser would find paragraphs
        return Document(tuple(Paragraph(plain_spans(p)) for p in _paragraphs(source)))
    document = full_parse(source)
    if _letters(html.unescape(source)) * LOSS_ALLOWED > _letters_in(document):
        return Document((Paragraph(plain_spans(source.strip())),)) if source.strip() \
            else document
    return document


def full_parse(source: str) -> Document:
    """The parser's reading, as it is."""
    tree = SyntaxTreeNode(_parser().parse(source))
    return Document(tuple(block for node in tree.children for block in _blocks(node)))


def _paragraphs(text: str) -> list[str]:
    """Paragraphs as CommonMark reads them in a text without markup: blank lines between
    them, the spaces that open a line and those that end it dropped."""
    paragraphs = re.split(r"\n[ \t]*\n", text)
    lines = ("\n".join(line.lstrip(" \t").rstrip(" ") for line in part.split("\n"))
             for part in paragraphs)
    return [p for p in (part.strip() for part in lines) if p]


def plain_spans(text: str) -> tuple[Span, ...]:
    return (Span(text),) if text else ()


def _blocks(node: SyntaxTreeNode) -> list[Block]:
    kind = node.type
    if kind == "paragraph":
        spans = _inline(node.children[0]) if node.children else ()
        return [Paragraph(spans)] if spans else []
    if kind == "heading":
        return [Heading(int(node.tag[1:]), _inline(node.children[0]) if node.children else ())]
    if kind in ("fence", "code_block"):
        language = next(iter((node.info or "").split()), "") if kind == "fence" else ""
        return [CodeBlock(node.content.rstrip("\n"), language)]
    if kind == "blockquote":
        return [Quote(tuple(b for child in node.children for b in _blocks(child)))]
    if kind in ("bullet_list", "ordered_list"):
        start = int(node.attrs.get("start", 1)) if kind == "ordered_list" else 1
        items = tuple(tuple(b for child in item.children for b in _blocks(child))
                      for item in node.children)
        return [ListBlock(kind == "ordered_list", start, items)]
    if kind == "table":
        return [_table(node)]
    if kind == "hr":
        return [Rule()]
    return [b for child in node.children for b in _blocks(child)]


def _table(node: SyntaxTreeNode) -> Table:
    rows: list[tuple[tuple[Span, ...], ...]] = []
    align: list[str] = []
    for section in node.children:  # thead, tbody
        for row in section.children:
            cells = []
            for cell in row.children:
                if not rows:
                    style = str(cell.attrs.get("style", ""))
                    align.append(style.removeprefix("text-align:") or "left")
                cells.append(_inline(cell.children[0]) if cell.children else ())
            rows.append(tuple(cells))
    return Table(rows[0], tuple(rows[1:]), tuple(align))


def _inline(node: SyntaxTreeNode) -> tuple[Span, ...]:
    spans: list[Span] = []
    _walk(node, frozenset(), None, spans)
    return tuple(_merge(spans))


def _walk(node: SyntaxTreeNode, styles: frozenset[str], url: str | None,
          out: list[Span]) -> None:
    for child in node.children:
        kind = child.type
        if kind == "text":
            out += _spoilers(child.content, styles, url)
        elif kind == "code_inline":
            out.append(Span(child.content, styles | {CODE}, url))
        elif kind in ("softbreak", "hardbreak"):
            out.append(Span("\n", styles, url))  # a chat keeps the lines as written
        elif kind == "link":
            _walk(child, styles, str(child.attrs.get("href", "")) or None, out)
        elif kind == "image":
            alt = "".join(s.text for s in _inline(child)) or str(child.attrs.get("src", ""))
            out.append(Span(alt, styles, str(child.attrs.get("src", "")) or None))
        elif kind in _STYLE_OF:
            _walk(child, styles | {_STYLE_OF[kind]}, url, out)
        else:
            _walk(child, styles, url, out)


def _spoilers(text: str, styles: frozenset[str], url: str | None) -> list[Span]:
    spans, at = [], 0
    for match in _SPOILER.finditer(text):
        spans.append(Span(text[at:match.start()], styles, url))
        spans.append(Span(match.group(1), styles | {SPOILER}, url))
        at = match.end()
    spans.append(Span(text[at:], styles, url))
    return [span for span in spans if span.text]


def _merge(spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for span in spans:
        if merged and merged[-1].styles == span.styles and merged[-1].url == span.url:
            merged[-1] = Span(merged[-1].text + span.text, span.styles, span.url)
        else:
            merged.append(span)
    return merged


def _letters(text: str) -> int:
    return sum(1 for c in text if c.isalnum())


def _letters_in(document: Document) -> int:
    def of_spans(spans: tuple[Span, ...]) -> int:
        return sum(_letters(s.text) + (_letters(s.url) if s.url else 0) for s in spans)

    def of(block) -> int:
        if isinstance(block, (Paragraph, Heading)):
            return of_spans(block.spans)
        if isinstance(block, CodeBlock):
            return _letters(block.text) + (_letters(block.language) if block.text else 0)
        if isinstance(block, Quote):
            return sum(of(b) for b in block.blocks)
        if isinstance(block, ListBlock):
            return sum(of(b) for item in block.items for b in item)
        if isinstance(block, Table):
            return sum(of_spans(cell) for row in (block.header, *block.rows) for cell in row)
        return 0
    return sum(of(block) for block in document.blocks)
