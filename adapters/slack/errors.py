"""Slack's errors, in a word each, and what they mean for a message being delivered."""
from __future__ import annotations

from slack_sdk.errors import SlackApiError

from bridge.adapter import DeliveryError
from bridge.files import FileRefused

# Errors after which this customer cannot be reached until they write again.
UNREACHABLE = {"channel_not_found", "is_archived", "user_disabled", "account_inactive",
               "cannot_dm_bot", "messages_tab_disabled", "user_not_found", "not_in_channel"}
# The message's blocks were refused: its words can still go as plain text.
BLOCKS_REFUSED = {"invalid_blocks", "invalid_blocks_format"}
# Errors that mean this one message will never be taken.
REFUSED = BLOCKS_REFUSED | {"msg_too_long", "no_text", "invalid_arguments",
                            "too_many_attachments", "invalid_attachments"}


def error_code(error: BaseException) -> str:
    """What went wrong, in a word: never the response body or the request (tokens)."""
    if isinstance(error, SlackApiError):
        data = error.response.data if isinstance(error.response.data, dict) else {}
        return str(data.get("error") or f"http {error.response.status_code}")
    if isinstance(error, FileRefused):
        return str(error)
    return type(error).__name__


def delivery_error(error: SlackApiError) -> DeliveryError:
    code = error_code(error)
    if error.response.status_code == 429 or code == "ratelimited":
        headers = {k.lower(): v for k, v in (error.response.headers or {}).items()}
        value = headers.get("retry-after", "1")
        retry_after = float(value[0] if isinstance(value, list) else value or 1)
        return DeliveryError("slack: rate limited (429)", retry_after=retry_after)
    if code in UNREACHABLE:
        return DeliveryError(f"slack: {code}", permanent=True)
    if code in REFUSED:
        return DeliveryError(f"slack: {code}", rejected=True)
    return DeliveryError(f"slack: {code}")
