"""Slack's mrkdwn, where the bridge still writes it (notification texts, context lines):
`&`, `<` and `>` escaped, so that a text can never ping `<!channel>` or forge a link."""
from __future__ import annotations


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
