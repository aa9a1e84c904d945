"""Answers as customers see them. Every answer of the corpus (tests/corpus: SATE's usual
Markdown, agents' texts with `<`, `&` and stray `*`, code, tables, nested lists, quotes,
right-to-left text, emoji, a 10,000-character guide) is rendered for Telegram and Slack:
each message passes a strict validator of the platform's rules (testing/), no raw
Markdown is left where the customer reads it, and no word of the answer is lost. Then any
text at all, built from Markdown's pieces, renders valid messages without raising."""
from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.console.render import render as console_render
from adapters.slack import blocks as slack_blocks
from adapters.telegram.entities import messages as telegram_messages
from bridge.events import Outgoing
from bridge.markdown import _MARKUP, full_parse, parse
from bridge.styled import layout
from testing import slack_blocks as slack_rules
from testing import telegram_entities as telegram_rules

CORPUS = {path.stem: path.read_text(encoding="utf-8")
          for path in sorted((Path(__file__).parent / "corpus").glob("*.md"))}
# Markup a reader must never see outside code: headings, fences, strong, strikethrough,
# a table's rule, raw bullets and quote signs at a line start, a link's (target).
RAW = [re.compile(p, re.M) for p in (
    r"^\s*#{1,6}\s", r"```", r"\*\*", r"__", r"~~", r"^\s*\|?\s*:?-{3,}:?\s*\|",
    r"^\s*[-+*]\s", r"^\s*>", r"\]\(\S+\)", r"\|\|")]


def _telegram(text: str) -> list[tuple[str, list[dict]]]:
    document = Outgoing(kind="notice", text=text).document
    return [(shown, [e.to_dict() for e in entities])
            for shown, entities in telegram_messages(document)]


def _outside_code(text: str, entities: list[dict]) -> str:
    units = bytearray(telegram_rules.utf16(text))
    for entity in entities:
        if entity["type"] in ("pre", "code"):
            start, end = 2 * entity["offset"], 2 * (entity["offset"] + entity["length"])
            units[start:end] = " ".encode("utf-16-le") * (entity["length"])
    return units.decode("utf-16-le")


def _slack_shown(rendered: list[dict], outside_code: bool) -> str:
    def texts(value, in_code: bool) -> list[str]:
        if isinstance(value, list):
            return [t for v in value for t in texts(v, in_code)]
        if not isinstance(value, dict):
            return []
        style = value.get("style")
        code = in_code or value.get("type") == "rich_text_preformatted" or \
            (isinstance(style, dict) and style.get("code", False))
        own = [value["text"]] if isinstance(value.get("text"), str) and \
            not (code and outside_code) else []
        if value.get("type") == "rich_text_list" and value.get("style") == "ordered":
            first = value.get("offset", 0) + 1  # Slack numbers the items itself
            own += [f"{n}." for n in range(first, first + len(value["elements"]))]
        return own + texts(value.get("text"), code) + texts(value.get("elements"), code)
    return "\n".join(texts(rendered, False))


def _words(source: str) -> set[str]:
    """The words a reader must find: the text without link targets, code fences'
    languages, Markdown's backslash escapes and HTML's character references."""
    source = re.sub(r"\]\([^)]*\)", "]", re.sub(r"```\w+", "```", source))
    return _tokens(html.unescape(source.replace("\\", "")))


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"[^\W_]+", text))


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_corpus_answer_reads_natively_on_telegram(name):
    source = CORPUS[name]
    sent = _telegram(source)
    assert sent
    for text, entities in sent:
        assert telegram_rules.problems(text, entities) == []
        readable = _outside_code(text, entities)
        assert not [p.pattern for p in RAW if p.search(readable)], readable
    shown = "\n".join(text for text, _ in sent)
    assert _words(source) <= _tokens(shown)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_corpus_answer_reads_natively_on_slack(name):
    source = CORPUS[name]
    rendered = slack_blocks.render(Outgoing(kind="reply", text=source, sender="sate",
                                            sender_name="SATE"))
    shown = []
    for fallback, message_blocks in rendered:
        assert slack_rules.problems(message_blocks) == []
        assert "<!" not in fallback and "<@" not in fallback
        readable = _slack_shown(message_blocks, outside_code=True)
        assert not [p.pattern for p in RAW if p.search(readable)], readable
        shown.append(_slack_shown(message_blocks, outside_code=False))
    assert _words(source) <= _tokens("\n".join(shown))


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_corpus_answer_reads_in_a_terminal(name):
    shown = console_render(Outgoing(kind="reply", text=CORPUS[name], sender_name="SATE"))
    assert "```" not in shown and "**" not in shown
    assert _words(CORPUS[name]) <= _tokens(shown)


def _entity_texts(text: str, entities: list[dict], kind: str) -> list[str]:
    units = telegram_rules.utf16(text)
    return [units[2 * e["offset"]:2 * (e["offset"] + e["length"])].decode("utf-16-le")
            for e in entities if e["type"] == kind]


def test_telegram_shows_headings_bold_code_as_blocks_and_lists_with_bullets():
    [(text, entities)] = _telegram(CORPUS["01-reset-password"])
    assert text.startswith("Reset your password\n\n1. Open Settings → Account.\n2. Tap")
    assert _entity_texts(text, entities, "bold")[0] == "Reset your password"
    assert _entity_texts(text, entities, "italic") == ["Reset password"]
    assert _entity_texts(text, entities, "code") == ["no-reply@example.com"]
    [(text, entities)] = _telegram(CORPUS["03-api-code"])
    [pre] = [e for e in entities if e["type"] == "pre"]
    assert pre["language"] == "python"
    assert _entity_texts(text, [pre], "pre")[0].startswith("import requests\n")
    [(text, _)] = _telegram(CORPUS["05-nested-list"])
    assert "• Plug it back in, then:\n  ◦ wait for the green light\n" in text
    assert "    ▪ user: admin" in text


def test_telegram_tables_align_when_they_fit_and_become_lists_when_not():
    [(text, entities)] = _telegram(CORPUS["02-billing-table"])
    [table] = _entity_texts(text, entities, "pre")
    assert table.splitlines() == ["Plan     │ Price │ Users", "─────────┼───────┼──────",
                                  "Basic    │    $5 │   1", "Team     │   $25 │  10",
                                  "Business │   $99 │  50"]
    [(text, entities)] = _telegram(CORPUS["13-wide-table"])
    assert "Error code: E1001\nMeaning: The payment provider declined the card\n" \
        "What to do: Try another" in text
    assert "E1002" in _entity_texts(text, entities, "bold")


def test_telegram_quotes_strikethrough_spoilers_and_links():
    [(text, entities)] = _telegram(CORPUS["08-long-quote"])
    assert [e["type"] for e in entities] == ["expandable_blockquote"]
    [(text, entities)] = _telegram(CORPUS["07-blockquote"])
    assert _entity_texts(text, entities, "blockquote")[0].startswith("Refunds are issued")
    [(text, entities)] = _telegram(CORPUS["06-strike-underscore-bold"])
    assert _entity_texts(text, entities, "strikethrough") == ["old", "the fax number"]
    assert _entity_texts(text, entities, "bold") == ["Main Street 5"]
    [(text, entities)] = _telegram(CORPUS["18-spoiler"])
    assert _entity_texts(text, entities, "spoiler") == ["7H2K-99QP"]
    [(text, entities)] = _telegram(CORPUS["12-links"])
    assert [e["url"] for e in entities if e["type"] == "text_link"][0] == \
        "https://help.example.com/guides/export?format=csv&lang=en"


def test_telegram_offsets_count_utf16_after_emoji():
    [(text, entities)] = _telegram(CORPUS["11-emoji"])
    assert _entity_texts(text, entities, "bold") == ["Great news!"]
    assert "👨‍👩‍👧 Family plan" in text


def test_a_10000_character_answer_splits_between_blocks_and_never_inside_code():
    source = CORPUS["34-long-guide"]
    assert len(source) >= 10_000
    sent = _telegram(source)
    assert len(sent) >= 3
    assert all(len(telegram_rules.utf16(text)) // 2 <= 4096 for text, _ in sent)
    code_blocks = re.findall(r"```sh\n(.*?)\n```", source, re.S)
    shown_code = [c for text, entities in sent for c in _entity_texts(text, entities, "pre")]
    assert shown_code == code_blocks  # each whole, in one message, in order
    whole, at = layout(parse(source)).text, 0
    for text, _ in sent:  # each message begins a line of the whole answer
        at = whole.index(text, at)
        assert at == 0 or whole[at - 1] == "\n"
        at += len(text)


def test_slack_uses_rich_text_lists_headers_and_quotes():
    rendered = slack_blocks.render(Outgoing(kind="reply", text=CORPUS["14-headings-mix"],
                                            sender_name="SATE"))
    [(_, message_blocks)] = rendered
    headers = [b["text"]["text"] for b in message_blocks if b["type"] == "header"]
    assert headers == ["Getting started", "Step one: install", "Step two: sign in"]
    [(_, message_blocks)] = slack_blocks.render(Outgoing(
        kind="reply", text=CORPUS["17-ordered-start"], sender_name="SATE"))
    [listed] = [e for b in message_blocks if b["type"] == "rich_text"
                for e in b["elements"] if e["type"] == "rich_text_list"]
    assert (listed["style"], listed.get("offset"), len(listed["elements"])) == ("ordered", 3, 3)
    [(_, message_blocks)] = slack_blocks.render(Outgoing(
        kind="reply", text=CORPUS["05-nested-list"], sender_name="SATE"))
    lists = [e for b in message_blocks if b["type"] == "rich_text"
             for e in b["elements"] if e["type"] == "rich_text_list"]
    assert [(e["indent"], len(e["elements"])) for e in lists] == [(0, 2), (1, 2), (2, 2),
                                                                  (0, 1)]


def test_slack_can_never_be_made_to_mention_or_notify():
    [(fallback, message_blocks)] = slack_blocks.render(Outgoing(
        kind="reply", text=CORPUS["25-mentions-injection"], sender_name="<!channel>"))
    assert slack_rules.problems(message_blocks) == []  # only text and link elements
    assert "<!channel> and <!here>, <@U0BOSS>" in _slack_shown(message_blocks, False)
    assert "&lt;!channel&gt;" in fallback and "<!" not in fallback
    assert message_blocks[0]["elements"][0]["text"] == "*&lt;!channel&gt;*"


# Any text from Markdown's pieces: valid messages, never an exception.
PIECES = ["**", "*", "_", "__", "~~", "`", "```", "```py\n", "\n", "\n\n", "# ", "### ", "- ",
          "  - ", "1. ", "7) ", "> ", ">> ", "|", "| a | b |\n|---|--:|\n", "---", "[", "](",
          "https://x.example/p?a=1&b=2", "javascript:alert(1)", ")", "||", "<", ">", "&",
          "\\", "😀", "👨‍👩‍👧", "ש", "ع", "漢", "a", "word ", "  ", "\t", "<!channel>", "![x](",
          "\u200f", "\x00", "\x1b"]
markdownish = st.lists(st.sampled_from(PIECES), max_size=60).map("".join)
WRAPS = ["**{}**", "*{}*", "_{}_", "__{}__", "~~{}~~", "`{}`", "||{}||", "[{}](https://a.example)",
         "# {}\n", "> {}", "- {}\n", "1. {}\n", "  - {}", "| {} | x |\n|---|---|\n| y | {} |"]
nested = st.recursive(
    st.sampled_from(["a", "word", "😀", "<&>", "ش", " ", "\n"]),
    lambda inner: st.one_of(st.tuples(st.sampled_from(WRAPS), inner).map(
        lambda t: t[0].replace("{}", t[1])), st.lists(inner, max_size=4).map("".join)),
    max_leaves=20)
corpus_slices = st.tuples(st.sampled_from(sorted(CORPUS)), st.integers(0, 12_000),
                          st.integers(0, 12_000)).map(
    lambda t: CORPUS[t[0]][min(t[1], t[2]):max(t[1], t[2])])


@settings(max_examples=400, deadline=None)
@given(text=markdownish | nested | corpus_slices)
def test_any_text_renders_valid_messages_everywhere(text):
    message = Outgoing(kind="reply", text=text, sender="agent", sender_name="Eve")
    for shown, entities in _telegram(text):
        assert telegram_rules.problems(shown, entities) == []
    for fallback, message_blocks in slack_blocks.render(message):
        assert slack_rules.problems(message_blocks) == []
        assert "<!" not in fallback
    console_render(message)


@pytest.mark.parametrize("text", ["> " * 100 + "deep", "- " * 100 + "deep",
                                  "`" * 50 + "deep", "```deep"])
def test_what_the_parser_would_lose_is_shown_as_written(text):
    """Nesting past the parser's bound, or a fence's first line taken as its language,
    would drop the words: the text is shown as it came instead."""
    [(shown, entities)] = _telegram(text)
    assert shown == text and entities == []


def _e(kind: str, offset: int, length: int, **extra) -> dict:
    return {"type": kind, "offset": offset, "length": length, **extra}


@pytest.mark.parametrize("text, entities, refused", [
    ("bold and code", [_e("bold", 0, 8), _e("italic", 5, 8)], "overlap"),
    ("bold and code", [_e("bold", 0, 13), _e("code", 9, 4)], "may not nest"),
    ("code", [_e("code", 0, 4), _e("italic", 0, 2)], "may not nest"),
    ("quote", [_e("blockquote", 0, 5), _e("expandable_blockquote", 0, 3)], "may not nest"),
    ("link", [_e("text_link", 0, 4, url="javascript:alert(1)")], "wrong HTTP URL"),
    ("link", [_e("text_link", 0, 4, url="https://a.example"), _e("code", 0, 2)], "may not"),
    ("😀 hi", [_e("bold", 1, 3)], "splits a character"),
    ("hi", [_e("bold", 0, 3)], "after the text"),
    (" hi", [], "white space"),
    ("x" * 4097, [], "too long"),
    ("x" * 101, [_e("bold", n, 1) for n in range(101)], "ignores"),
])
def test_the_telegram_validator_refuses_what_telegram_refuses(text, entities, refused):
    assert refused in " ".join(telegram_rules.problems(text, entities))


def test_the_telegram_validator_takes_what_telegram_takes():
    text = "😀 bold link code quoted"
    assert telegram_rules.problems(text, [
        _e("bold", 3, 4), _e("italic", 3, 4), _e("text_link", 8, 4, url="https://a.example"),
        _e("bold", 8, 4), _e("code", 13, 4), _e("blockquote", 0, 24),
        _e("pre", 18, 6, language="")]) == []


@pytest.mark.parametrize("block, refused", [
    ({"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [
        {"type": "broadcast", "range": "channel"}]}]}, "not one the bridge may send"),
    ({"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [
        {"type": "user", "user_id": "U0BOSS"}]}]}, "not one the bridge may send"),
    ({"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [
        {"type": "text", "text": ""}]}]}, "needs text"),
    ({"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [
        {"type": "link", "url": "javascript:x", "text": "x"}]}]}, "http(s) or mailto"),
    ({"type": "rich_text", "elements": [{"type": "rich_text_list", "style": "dashed",
                                         "elements": []}]}, "bullet or ordered"),
    ({"type": "rich_text", "elements": [{"type": "rich_text_preformatted", "elements": [
        {"type": "text", "text": "x" * 4001}]}]}, "characters"),
    ({"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}, "1-150"),
    ({"type": "section", "text": {"type": "mrkdwn", "text": "hi"}, "colour": "red"}, "unknown"),
])
def test_the_slack_validator_refuses_what_slack_would(block, refused):
    assert refused in " ".join(slack_rules.problems([block]))


@settings(max_examples=300, deadline=None)
@given(text=st.lists(st.sampled_from(list("ab Z.,:;'\"?!()0123456789\n\t") +
                                     ["1 ", "e-mail", "Grüße", "😀", "\u2028"]),
                    max_size=40).map("".join))
def test_a_text_without_markup_reads_as_the_parser_would_read_it(text):
    """Such a text skips the parser (most short answers): the customer sees the same."""
    if not _MARKUP.search(text):
        assert layout(parse(text)).text == layout(full_parse(text)).text
