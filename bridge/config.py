"""TOML + ${ENV} -> validated settings.

Every problem is raised as one ConfigError naming the key, so the CLI can print it and
exit 2 without a traceback.  Adapter sections ([telegram], [slack], [console], ...) are
validated by the adapter's own schema, found through the adapter registry.
"""
from __future__ import annotations

import os
import re
import string
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from bridge.texts import DEFAULT_TEXTS

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """A config problem, phrased for the person who wrote the file."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value.rstrip("/")


#: a base URL of a service: http(s) only, no trailing slash
HttpUrl = Annotated[str, AfterValidator(_http_url)]


class HelpdeskSettings(StrictModel):
    url: HttpUrl = "https://api.eusate.com"
    api_key: SecretStr
    namespace: str = "/helpdesk"
    # Sockets in the pool. Each can have one conversation opening at a time (a first
    # reply carries no session id), so this is also how many can open at once.
    connections: int = Field(4, ge=1, le=256)
    request_timeout: float = Field(15.0, gt=0)


class StorageSettings(StrictModel):
    url: SecretStr = SecretStr("sqlite+aiosqlite:///bridge.db")
    # Days finished messages are kept (0: forever). At least one: a message delivered
    # again within a day (Telegram keeps updates 24 h) must still be recognised.
    keep_days: float = 7.0
    # Customers with no conversation open, begun or closed for this many days are
    # forgotten, as `helpdesk-bridge customers forget` would (0: never). docs/customers.md.
    forget_customers_after_days: float = Field(0.0, ge=0)

    @field_validator("url")
    @classmethod
    def _a_file_or_a_server(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()  # never echoed: it may hold a password
        if url.startswith("sqlite") and url.split("?")[0].rstrip("/").endswith(
                (":", ":memory:")):
            raise ValueError("SQLite in memory cannot hold the queues (a restart would lose "
                             "them): give a file, e.g. sqlite+aiosqlite:///bridge.db")
        return value

    @field_validator("keep_days")
    @classmethod
    def _keep_at_least_a_day(cls, value: float) -> float:
        if value != 0 and value < 1:
            raise ValueError("must be 0 (keep forever) or at least 1")
        return value


class HttpSettings(StrictModel):
    listen: str = "127.0.0.1:8080"
    public_url: str = ""


# livekit-client, pinned: the call page loads exactly this file or nothing (the browser
# checks the Subresource Integrity hash). Bump both together (README "Voice calls").
LIVEKIT_SDK_URL = "https://cdn.jsdelivr.net/npm/livekit-client@2.23.0/dist/livekit-client.umd.js"
LIVEKIT_SDK_INTEGRITY = "sha384-HkA7rQNo8H04l1p4zoXX1Cy+h9YoYp8LvKt4vfMFhv4KFk07UkrNwIUnyBum8Pw6"


class CallsSettings(StrictModel):
    # The LiveKit server the helpdesk's call tokens are for (wss://...). Empty: no calls.
    livekit_url: str = ""
    # A self-hosted copy of livekit-client's UMD build, instead of the pinned CDN file.
    sdk_url: str = ""
    sdk_integrity: str = ""   # its SRI hash ("sha384-..."); recommended with sdk_url

    @field_validator("livekit_url")
    @classmethod
    def _websocket_url(cls, value: str) -> str:
        if value and not value.startswith(("wss://", "ws://")):
            raise ValueError("must be a wss:// (or ws://) URL")
        return value.rstrip("/")

    @property
    def sdk(self) -> tuple[str, str]:
        """(script URL, integrity) the call page loads."""
        if self.sdk_url:
            return self.sdk_url, self.sdk_integrity
        return LIVEKIT_SDK_URL, LIVEKIT_SDK_INTEGRITY


class ClusterSettings(StrictModel):
    # PostgreSQL: how long a daemon's lease on the customers lasts unless renewed (every
    # third of it), so how long its customers wait when it dies without a stop.
    lease_seconds: float = Field(10.0, ge=2, le=300)


class RatingsSettings(StrictModel):
    # Seconds a rating waits for the customer's optional comment before it is sent alone
    # (0: sent at once, and no comment is asked for). docs/ratings.md.
    comment_wait: float = Field(300.0, ge=0, le=86_400)


class LimitsSettings(StrictModel):
    # One customer's messages reach the helpdesk at most this fast (a burst of 10 seconds'
    # worth, then this pace); beyond it they wait, in order. 0: no limit. docs/customers.md.
    messages_per_minute: float = Field(30.0, ge=0)


class LoggingSettings(StrictModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Settings(StrictModel):
    helpdesk: HelpdeskSettings
    storage: StorageSettings = StorageSettings()
    http: HttpSettings = HttpSettings()
    calls: CallsSettings = CallsSettings()
    cluster: ClusterSettings = ClusterSettings()
    ratings: RatingsSettings = RatingsSettings()
    limits: LimitsSettings = LimitsSettings()
    logging: LoggingSettings = LoggingSettings()
    # language -> key -> template; "" is the default language.
    texts: dict[str, dict[str, str]] = Field(default_factory=dict)
    default_language: str = "en"
    # section name -> the adapter's validated settings model
    adapters: dict[str, Any] = Field(default_factory=dict)

    def secrets(self) -> list[str]:
        """Every configured secret value, for the log redactor."""
        found: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, SecretStr):
                found.append(value.get_secret_value())
            elif isinstance(value, BaseModel):
                for name in type(value).model_fields:
                    walk(getattr(value, name))
            elif isinstance(value, dict):
                for item in value.values():
                    walk(item)

        walk(self)
        found.extend(url_passwords(self.storage.url.get_secret_value()))
        return [s for s in found if s and not s.startswith("sqlite")]


def url_passwords(url: str) -> list[str]:
    """The password in a database URL, if any (for the log redactor)."""
    from sqlalchemy.engine import make_url

    try:
        password = make_url(url).password
    except Exception:
        return []
    return [password] if password else []


def substitute_env(raw: Any, env: dict[str, str], path: str = "") -> Any:
    """Replace ${VAR} in every string of the TOML tree."""
    if isinstance(raw, dict):
        return {key: substitute_env(value, env, f"{path}.{key}" if path else key)
                for key, value in raw.items()}
    if isinstance(raw, list):
        return [substitute_env(item, env, path) for item in raw]
    if isinstance(raw, str):
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise ConfigError(f"{_where(path)}: environment variable {name} is not set")
            return env[name]

        return _ENV_REF.sub(replace, raw)
    return raw


def _where(path: str) -> str:
    section, _, key = path.partition(".")
    return f"[{section}] {key}" if key else f"[{section}]"


def _explain(error: ValidationError, section: str = "") -> ConfigError:
    first = error.errors()[0]
    location = [str(part) for part in first["loc"]]
    if section:
        location.insert(0, section)
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "is required"
    else:
        message = first["msg"].removeprefix("Value error, ")
    path = ".".join(location)
    return ConfigError(f"{_where(path)}: {message}")


def _texts(raw: dict[str, Any]) -> dict[str, dict[str, str]]:
    """[texts] key = "..." for the default language, [texts.de] key = "..." per language."""
    by_language: dict[str, dict[str, str]] = {"": {}}
    for key, value in raw.items():
        if isinstance(value, dict):
            for text_key, template in value.items():
                _check_text(f"{key}.{text_key}", text_key, template)
            by_language[key] = dict(value)
        else:
            _check_text(key, key, value)
            by_language[""][key] = value
    return by_language


def _check_text(path: str, key: str, template: Any) -> None:
    if key not in DEFAULT_TEXTS:
        raise ConfigError(f"[texts] {path}: unknown text (known: {', '.join(sorted(DEFAULT_TEXTS))})")
    if not isinstance(template, str):
        raise ConfigError(f"[texts] {path}: must be a string")
    # A placeholder the bridge does not fill would fail at the moment a customer needs the
    # text: refused here instead.
    allowed = _placeholders(DEFAULT_TEXTS[key])
    try:
        unknown = _placeholders(template) - allowed
    except ValueError as error:
        raise ConfigError(f"[texts] {path}: {error}") from None
    if unknown:
        known = ", ".join("{%s}" % name for name in sorted(allowed)) or "none"
        raise ConfigError(f"[texts] {path}: unknown placeholder {{{sorted(unknown)[0]}}} "
                          f"(this text has: {known})")


def _placeholders(template: str) -> set[str]:
    return {name for _text, name, _spec, _conv in string.Formatter().parse(template) if name}


CORE_SECTIONS = {"helpdesk", "storage", "http", "calls", "cluster", "ratings", "limits",
                 "logging", "texts"}


def load_settings(raw: dict[str, Any], env: dict[str, str] | None = None,
                  adapter_schemas: dict[str, type[BaseModel]] | None = None) -> Settings:
    """Validate a parsed TOML document. adapter_schemas maps section name -> settings model."""
    env = dict(os.environ) if env is None else env
    adapter_schemas = adapter_schemas or {}
    data = substitute_env(raw, env)
    core: dict[str, Any] = {}
    adapters: dict[str, Any] = {}
    for section, value in data.items():
        if section == "default_language":
            core[section] = value
        elif section in CORE_SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"[{section}]: must be a table")
            core[section] = _texts(value) if section == "texts" else value
        elif section in adapter_schemas:
            if not isinstance(value, dict):
                raise ConfigError(f"[{section}]: must be a table")
            try:
                adapters[section] = adapter_schemas[section].model_validate(value)
            except ValidationError as error:
                raise _explain(error, section) from None
        else:
            known = sorted(CORE_SECTIONS | set(adapter_schemas))
            raise ConfigError(f"[{section}]: unknown section (known: {', '.join(known)})")
    if "helpdesk" not in core:
        raise ConfigError("[helpdesk]: section is required")
    try:
        settings = Settings.model_validate({**core, "adapters": adapters})
    except ValidationError as error:
        raise _explain(error) from None
    if settings.calls.livekit_url and not settings.http.public_url:
        raise ConfigError("[calls] livekit_url needs [http] public_url (the call page is "
                          "served by the bridge)")
    for name, section in settings.adapters.items():
        # An adapter section may say it needs the public URL (webhooks, file links).
        needs = getattr(section, "needs_public_url", None)
        reason = needs() if callable(needs) else None
        if reason and not settings.http.public_url:
            raise ConfigError(f"[{name}] {reason} needs [http] public_url")
    return settings


def read_config_file(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
