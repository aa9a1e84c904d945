from typing import Literal

from pydantic import SecretStr, model_validator

from bridge.config import HttpUrl, StrictModel


class SlackSettings(StrictModel):
    bot_token: SecretStr                     # xoxb-…
    # "socket": Socket Mode over the app-level token, no public URL needed.
    # "http": Slack POSTs events and interactions to [http] public_url + /slack/events.
    # "embedded": a company's own Bolt app receives (set by adapters.slack.install()).
    mode: Literal["socket", "http", "embedded"] = "socket"
    app_token: SecretStr | None = None       # xapp-…, for mode = "socket"
    signing_secret: SecretStr | None = None  # for mode = "http"
    api_url: HttpUrl = "https://slack.com/api/"
    command: str = "/support"                # the slash command, as in the app manifest

    @model_validator(mode="after")
    def _mode_has_its_secret(self) -> "SlackSettings":
        if self.mode == "socket" and self.app_token is None:
            raise ValueError('app_token is required for mode = "socket"')
        if self.mode == "http" and self.signing_secret is None:
            raise ValueError('signing_secret is required for mode = "http"')
        if not self.command.startswith("/"):
            raise ValueError('command must start with "/", as in the app manifest')
        return self

    def needs_public_url(self) -> str | None:
        return 'mode = "http"' if self.mode == "http" else None
