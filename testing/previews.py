"""Pictures of one answer as Telegram and Slack show it, for the README: the real renderers'
output (Telegram's text and entities, Slack's blocks) drawn as HTML styled after each
client, photographed with Chromium. A faithful stand-in, not a screenshot of the apps:
what is drawn is exactly what the bridge sends, nothing else.

    python -m testing.previews [--answer tests/corpus/36-readme-sample.md]
"""
from __future__ import annotations

import argparse
import asyncio
import html
import os
from pathlib import Path

from adapters.slack import blocks as slack_blocks
from adapters.telegram.adapter import _document_of
from adapters.telegram.entities import messages
from bridge.events import Outgoing

CHROMIUM = os.environ.get("BRIDGE_TEST_CHROMIUM", "/usr/bin/chromium")
OUT = Path("docs/images")
_TAGS = {"bold": "b", "italic": "i", "strikethrough": "s", "code": "code", "pre": "pre",
         "blockquote": "blockquote", "expandable_blockquote": "blockquote",
         "spoiler": "span class=spoiler", "text_link": "a"}

TELEGRAM_CSS = """
body { margin: 0; background: #99ba92; font: 15px/1.38 -apple-system, 'Segoe UI', Roboto,
  'Noto Sans', sans-serif; }
.chat { padding: 18px 16px; width: 420px; }
.bubble { background: #fff; border-radius: 14px 14px 14px 4px; padding: 7px 11px 8px;
  margin-bottom: 6px; box-shadow: 0 1px 1px rgba(0,0,0,.15); white-space: pre-wrap;
  word-wrap: break-word; color: #000; display: flow-root; }
pre { background: #f1f4f8; border-radius: 6px; padding: 6px 8px; margin: 3px 0;
  font: 13px/1.35 'DejaVu Sans Mono', monospace; white-space: pre-wrap; color: #1b5ea8; }
code { font: 13px 'DejaVu Sans Mono', monospace; color: #1b5ea8; }
blockquote { margin: 3px 0; padding: 2px 8px; border-left: 3px solid #3a8ee6;
  background: #ebf3fc; border-radius: 4px; }
a { color: #2a7ab8; text-decoration: none; }
.spoiler { background: #bbb; color: transparent; border-radius: 3px; }
.time { float: right; color: #8a9aa9; font-size: 12px; margin: 6px 0 -4px 10px; }
"""

SLACK_CSS = """
body { margin: 0; background: #fff; font: 15px/1.46 Lato, 'Noto Sans', 'Segoe UI', sans-serif;
  color: #1d1c1d; }
.message { display: flex; padding: 16px 20px; width: 620px; }
.avatar { width: 36px; height: 36px; border-radius: 6px; background: #4a154b; color: #fff;
  font-weight: 700; display: flex; align-items: center; justify-content: center;
  margin-right: 9px; flex: none; }
.name { font-weight: 900; } .app { background: #e8e8e8; color: #616061; font-size: 10px;
  font-weight: 700; padding: 1px 3px; border-radius: 2px; margin-left: 4px; }
.when { color: #616061; font-size: 12px; margin-left: 6px; }
.context { color: #616061; font-size: 12px; margin: 2px 0; }
h1 { font-size: 18px; font-weight: 900; margin: 6px 0 2px; }
.section { white-space: pre-wrap; margin: 2px 0; }
ul, ol { margin: 2px 0; padding-left: 26px; }
pre { border: 1px solid #dddddd; background: #f8f8f8; border-radius: 4px; padding: 8px;
  font: 12px/1.5 Monaco, Menlo, 'DejaVu Sans Mono', monospace; white-space: pre-wrap;
  margin: 4px 0; }
code { font: 12px Monaco, Menlo, 'DejaVu Sans Mono', monospace; color: #c01343;
  background: #f8f8f8; border: 1px solid #e8e8e8; border-radius: 3px; padding: 0 2px; }
blockquote { border-left: 4px solid #dddddd; margin: 4px 0; padding: 0 10px;
  white-space: pre-wrap; }
hr { border: none; border-top: 1px solid #dddddd; margin: 8px 0; }
a { color: #1264a3; text-decoration: none; }
"""


def telegram_html(text: str, entities: list[dict]) -> str:
    """Text with entities as HTML: each entity opens and closes at its UTF-16 offsets."""
    units = text.encode("utf-16-le")
    opens: dict[int, list[str]] = {}
    closes: dict[int, list[str]] = {}
    for entity in sorted(entities, key=lambda e: (e["offset"], -e["length"])):
        tag = _TAGS.get(entity["type"], "span")
        attrs = f' href="{html.escape(entity["url"])}"' if entity["type"] == "text_link" else ""
        opens.setdefault(entity["offset"], []).append(f"<{tag}{attrs}>")
        closes.setdefault(entity["offset"] + entity["length"], []).insert(
            0, f"</{tag.split()[0]}>")
    out = []
    for index in range(len(units) // 2 + 1):
        out += closes.get(index, []) + opens.get(index, [])
        if index < len(units) // 2:
            out.append(units[2 * index:2 * index + 2])
    shown = _joined_units(out)
    for tag in ("pre", "blockquote"):  # clients draw these as blocks, eating one line break
        shown = shown.replace(f"\n<{tag}>", f"<{tag}>").replace(f"</{tag}>\n", f"</{tag}>")
    return shown


def _joined_units(parts: list) -> str:
    text, pending = [], b""
    for part in parts:
        if isinstance(part, bytes):
            pending += part
            continue
        text.append(html.escape(pending.decode("utf-16-le")) + part)
        pending = b""
    text.append(html.escape(pending.decode("utf-16-le")))
    return "".join(text)


def slack_html(rendered: list[dict]) -> str:
    out = []
    for block in rendered:
        kind = block["type"]
        if kind == "context":
            out.append(f'<div class="context">{_mrkdwn(block["elements"][0]["text"])}</div>')
        elif kind == "header":
            out.append(f"<h1>{html.escape(block['text']['text'])}</h1>")
        elif kind == "divider":
            out.append("<hr>")
        elif kind == "rich_text":
            out.append(_rich(block["elements"]))
    return "".join(out)


def _mrkdwn(text: str) -> str:
    bold = text.startswith("*") and text.endswith("*")
    return f"<b>{text.strip('*')}</b>" if bold else text  # already escaped by the bridge


def _rich(elements: list[dict]) -> str:
    out, stack = [], []  # open lists: (tag, indent)
    for element in elements:
        kind = element["type"]
        if kind == "rich_text_list":
            tag = "ol" if element["style"] == "ordered" else "ul"
            while stack and stack[-1][1] > element["indent"]:
                out.append(f"</{stack.pop()[0]}>")
            if stack and stack[-1][1] == element["indent"]:
                out.append(f"</{stack.pop()[0]}>")
            start = f' start="{element.get("offset", 0) + 1}"' if tag == "ol" else ""
            style = ' style="list-style-type: circle"' if element["indent"] % 3 == 1 else ""
            out.append(f"<{tag}{start}{style}>")
            stack.append((tag, element["indent"]))
            out += [f"<li>{_inline(item['elements'])}</li>" for item in element["elements"]]
            continue
        while stack:
            out.append(f"</{stack.pop()[0]}>")
        if kind == "rich_text_section":
            out.append(f'<div class="section">{_inline(element["elements"])}</div>')
        elif kind == "rich_text_preformatted":
            out.append(f"<pre>{_inline(element['elements'], plain=True)}</pre>")
        elif kind == "rich_text_quote":
            out.append(f"<blockquote>{_inline(element['elements'])}</blockquote>")
    while stack:
        out.append(f"</{stack.pop()[0]}>")
    return "".join(out)


def _inline(elements: list[dict], plain: bool = False) -> str:
    out = []
    for element in elements:
        text = html.escape(element.get("text", ""))
        style = {} if plain else element.get("style", {})
        for key, tag in (("code", "code"), ("bold", "b"), ("italic", "i"), ("strike", "s")):
            if style.get(key):
                text = f"<{tag}>{text}</{tag}>"
        if element["type"] == "link":
            text = f'<a href="{html.escape(element["url"])}">{text}</a>'
        out.append(text)
    return "".join(out)


def pages(answer: str) -> dict[str, str]:
    reply = Outgoing(kind="reply", text=answer, sender="sate", sender_name="SATE")
    bubbles = "".join(
        f'<div class="bubble">{telegram_html(text, [e.to_dict() for e in entities])}'
        '<span class="time">10:42</span></div>'
        for text, entities in messages(_document_of(reply)))
    slack = "".join(slack_html(rendered) for _, rendered in slack_blocks.render(reply))
    return {
        "telegram": f"<style>{TELEGRAM_CSS}</style><div class=chat>{bubbles}</div>",
        "slack": f'<style>{SLACK_CSS}</style><div class=message><div class=avatar>H</div>'
                 '<div><span class=name>Helpdesk</span><span class=app>APP</span>'
                 f'<span class=when>10:42 AM</span>{slack}</div></div>',
    }


async def draw(answer: str, out: Path) -> list[Path]:
    from playwright.async_api import async_playwright

    out.mkdir(parents=True, exist_ok=True)
    drawn = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                   args=["--no-sandbox", "--disable-gpu"])
        page = await browser.new_page(device_scale_factor=2)
        for name, content in pages(answer).items():
            await page.set_content(f"<!doctype html><meta charset=utf-8>{content}")
            path = out / f"formatting-{name}.png"
            await page.locator("body > div").screenshot(path=str(path))
            drawn.append(path)
        await browser.close()
    return drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answer", default="tests/corpus/36-readme-sample.md")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    answer = Path(args.answer).read_text(encoding="utf-8")
    for path in asyncio.run(draw(answer, Path(args.out))):
        print(path)


if __name__ == "__main__":
    main()
