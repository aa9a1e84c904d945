from typing import Literal

from pydantic import SecretStr

from bridge.config import HttpUrl, StrictModel


class TelegramSettings(StrictModel):
    token: SecretStr
    api_url: HttpUrl = "https://api.telegram.org"
    # "polling": long polling, works behind any firewall. "webhook": Telegram POSTs updates
    # to [http] public_url + /telegram/webhook (set at start, with a secret token).
    mode: Literal["polling", "webhook"] = "polling"
    poll_timeout: int = 30   # seconds a getUpdates long poll may hang
    # "private_note": a mention in a group is answered with a note to write in private.
    # "conversations": a group is a support channel for a customer company; a member who
    # mentions the bot or replies to it has their own conversations (groups.py).
    groups: Literal["private_note", "conversations"] = "private_note"

    def needs_public_url(self) -> str | None:
        return 'mode = "webhook"' if self.mode == "webhook" else None
