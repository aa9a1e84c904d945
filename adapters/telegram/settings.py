from typing import Literal

from pydantic import SecretStr, field_validator

from bridge.config import StrictModel


class TelegramSettings(StrictModel):
    token: SecretStr
    api_url: str = "https://api.telegram.org"
    # "polling": long polling, works behind any firewall. "webhook": Telegram POSTs updates
    # to [http] public_url + /telegram/webhook (set at start, with a secret token).
    mode: Literal["polling", "webhook"] = "polling"
    poll_timeout: int = 30   # seconds a getUpdates long poll may hang

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    def needs_public_url(self) -> str | None:
        return 'mode = "webhook"' if self.mode == "webhook" else None
