"""What Slack checks in a message's blocks, for the kinds the bridge sends: Block Kit's
schema (no key it does not know, the right types) and its documented limits. Stricter
than Slack in one way on purpose: a rich-text element that mentions or notifies (user,
usergroup, channel, broadcast) is refused, since nothing the bridge relays may ever
become one. The local Slack Web API refuses (invalid_blocks) what this refuses."""
from __future__ import annotations

from urllib.parse import urlsplit

MAX_BLOCKS = 50
RICH_TEXT = 4000       # characters in one rich_text block (the bridge keeps to 3,000)
STYLE_KEYS = {"bold", "italic", "strike", "code", "underline"}
LIST_STYLES = {"bullet", "ordered"}


def problems(blocks: list) -> list[str]:
    if not isinstance(blocks, list):
        return ["blocks is not a list"]
    found = [f"{len(blocks)} blocks: at most {MAX_BLOCKS}"] if len(blocks) > MAX_BLOCKS else []
    for index, block in enumerate(blocks):
        found += [f"block {index}: {p}" for p in _block(block)]
    return found


def _keys(value: dict, allowed: set[str]) -> list[str]:
    extra = set(value) - allowed
    return [f"unknown keys {sorted(extra)} in {value.get('type')}"] if extra else []


def _text_object(value, limit: int, kinds=("plain_text", "mrkdwn")) -> list[str]:
    if not isinstance(value, dict) or value.get("type") not in kinds:
        return [f"a text object of type {kinds} is required"]
    text = value.get("text")
    if not isinstance(text, str) or not text or len(text) > limit:
        return [f"text must be 1-{limit} characters"]
    return _keys(value, {"type", "text", "emoji", "verbatim"})


def _block(block) -> list[str]:
    if not isinstance(block, dict):
        return ["not an object"]
    kind = block.get("type")
    if "block_id" in block and (not isinstance(block["block_id"], str)
                                or len(block["block_id"]) > 255):
        return ["block_id must be a string of at most 255 characters"]
    if kind == "divider":
        return _keys(block, {"type", "block_id"})
    if kind == "header":
        return _keys(block, {"type", "block_id", "text"}) + \
            _text_object(block.get("text"), 150, ("plain_text",))
    if kind == "section":
        return _keys(block, {"type", "block_id", "text"}) + _text_object(block.get("text"), 3000)
    if kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
            return ["context needs 1-10 elements"]
        return _keys(block, {"type", "block_id", "elements"}) + \
            [p for e in elements for p in _text_object(e, 3000)]
    if kind == "actions":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
            return ["actions needs 1-25 elements"]
        return _keys(block, {"type", "block_id", "elements"}) + \
            [p for e in elements for p in _button(e)]
    if kind == "rich_text":
        return _rich_text(block)
    return [f"the bridge sends no {kind!r} block"]


def _button(element) -> list[str]:
    if not isinstance(element, dict) or element.get("type") != "button":
        return ["only buttons are expected in actions"]
    found = _keys(element, {"type", "text", "action_id", "value", "url", "style"})
    found += _text_object(element.get("text"), 75, ("plain_text",))
    if len(str(element.get("action_id", ""))) > 255 or len(str(element.get("value", ""))) > 2000:
        found.append("button action_id or value too long")
    if element.get("style") not in (None, "primary", "danger"):
        found.append("button style must be primary or danger")
    return found


def _rich_text(block: dict) -> list[str]:
    found = _keys(block, {"type", "block_id", "elements"})
    elements = block.get("elements")
    if not isinstance(elements, list) or not elements:
        return found + ["rich_text needs elements"]
    total = 0
    for element in elements:
        kind = element.get("type") if isinstance(element, dict) else None
        if kind == "rich_text_section":
            found += _keys(element, {"type", "elements"})
            found += _inline(element.get("elements"))
        elif kind == "rich_text_list":
            found += _keys(element, {"type", "elements", "style", "indent", "offset", "border"})
            if element.get("style") not in LIST_STYLES:
                found.append("rich_text_list style must be bullet or ordered")
            if not isinstance(element.get("indent", 0), int) or \
                    not 0 <= element.get("indent", 0) <= 8:
                found.append("rich_text_list indent must be 0-8")
            if not isinstance(element.get("offset", 0), int) or element.get("offset", 0) < 0:
                found.append("rich_text_list offset must be 0 or more")
            items = element.get("elements")
            if not isinstance(items, list) or not items:
                found.append("rich_text_list needs items")
                continue
            for item in items:
                if not isinstance(item, dict) or item.get("type") != "rich_text_section":
                    found.append("a list item must be a rich_text_section")
                else:
                    found += _keys(item, {"type", "elements"}) + _inline(item.get("elements"))
        elif kind in ("rich_text_preformatted", "rich_text_quote"):
            found += _keys(element, {"type", "elements", "border"})
            found += _inline(element.get("elements"))
        else:
            found.append(f"unknown rich text element {kind!r}")
        total += _length(element)
    if total > RICH_TEXT:
        found.append(f"rich_text holds {total} characters (at most {RICH_TEXT})")
    return found


def _inline(elements) -> list[str]:
    if not isinstance(elements, list) or not elements:
        return ["rich text needs inline elements"]
    found = []
    for element in elements:
        kind = element.get("type") if isinstance(element, dict) else None
        if kind == "text":
            found += _keys(element, {"type", "text", "style"})
            if not isinstance(element.get("text"), str) or not element["text"]:
                found.append("a text element needs text")
        elif kind == "link":
            found += _keys(element, {"type", "text", "url", "style"})
            parts = urlsplit(str(element.get("url", "")))
            if parts.scheme not in ("http", "https", "mailto") or \
                    (parts.scheme != "mailto" and not parts.netloc):
                found.append(f"a link needs an http(s) or mailto url, not {element.get('url')!r}")
        else:
            found.append(f"inline element {kind!r} is not one the bridge may send")
            continue
        style = element.get("style", {})
        if not isinstance(style, dict) or set(style) - STYLE_KEYS or \
                not all(v is True or v is False for v in style.values()):
            found.append(f"bad style {style!r}")
    return found


def _length(element: dict) -> int:
    text = element.get("text")
    return (len(text) if isinstance(text, str) else 0) + sum(
        _length(e) for e in element.get("elements", []) if isinstance(e, dict))
