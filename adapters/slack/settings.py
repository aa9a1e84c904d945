import ipaddress
from typing import Literal

from pydantic import SecretStr, field_validator, model_validator

from bridge.config import HttpUrl, StrictModel

# What a distributed app asks of each workspace it is installed in (README's manifest).
DEFAULT_SCOPES = ["chat:write", "im:history", "im:write", "commands", "files:read",
                  "files:write", "channels:history", "groups:history", "app_mentions:read"]


class SlackSettings(StrictModel):
    # One workspace: its bot token. Many (the app distributed, OAuth v2): client_id and
    # client_secret instead; customers install it at [http] public_url + /slack/install.
    bot_token: SecretStr | None = None       # xoxb-…
    client_id: str = ""
    client_secret: SecretStr | None = None
    scopes: list[str] = DEFAULT_SCOPES       # asked of each workspace that installs it
    # "socket": Socket Mode over the app-level token, no public URL needed.
    # "http": Slack POSTs events and interactions to [http] public_url + /slack/events.
    # "embedded": a company's own Bolt app receives (set by adapters.slack.install()).
    mode: Literal["socket", "http", "embedded"] = "socket"
    app_token: SecretStr | None = None       # xapp-…, for mode = "socket"
    signing_secret: SecretStr | None = None  # for mode = "http"
    api_url: HttpUrl = "https://slack.com/api/"
    command: str = "/support"                # the slash command, as in the app manifest
    # Agents' files are fetched (to upload them into the thread) from public addresses
    # only. CIDRs listed here are allowed too: a self-hosted helpdesk's file server on an
    # internal network, e.g. ["10.20.0.0/16"]. Nothing else that is loopback, private,
    # link-local or a cloud metadata address is ever fetched (it is sent as a link).
    file_networks: list[str] = []
    # Support channels (README "Slack support channels"): a channel the app's bot is a
    # member of, Slack Connect channels shared with a customer's organisation included.
    # Each thread there is a conversation. Empty: every channel the bot is in.
    channels: list[str] = []
    # Kept out of the helpdesk: channel messages that begin with this prefix ("" : none)...
    internal_prefix: str = ""
    # ...and, when true, channel messages from members of the app's own workspace (in a
    # shared channel: the company's staff, talking among themselves).
    internal_own_workspace: bool = False
    # Who may close or rate any channel conversation, besides the person who opened it:
    # Slack user ids (U…).
    channel_admins: list[str] = []

    @field_validator("file_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not a network (e.g. 10.20.0.0/16)") from None
        return value

    @model_validator(mode="after")
    def _mode_has_its_secret(self) -> "SlackSettings":
        if (self.bot_token is None) == (not (self.client_id and self.client_secret)):
            raise ValueError("set either bot_token (one workspace) or client_id and "
                             "client_secret (an app installed in many workspaces)")
        if self.mode == "socket" and self.app_token is None:
            raise ValueError('app_token is required for mode = "socket"')
        if self.mode == "http" and self.signing_secret is None:
            raise ValueError('signing_secret is required for mode = "http"')
        if not self.command.startswith("/"):
            raise ValueError('command must start with "/", as in the app manifest')
        return self

    def needs_public_url(self) -> str | None:
        if self.mode == "http":
            return 'mode = "http"'
        return "client_id (the install page)" if self.client_id else None
