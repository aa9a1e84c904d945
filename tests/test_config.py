"""Config: one clear message naming the key, exit code 2, no traceback, no secret."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bridge.config import ConfigError, load_settings
from bridge.registry import adapter_schemas
from bridge.texts import Texts

ROOT = Path(__file__).resolve().parent.parent


def _load(raw: dict, env: dict | None = None):
    return load_settings(raw, env=env or {}, adapter_schemas=adapter_schemas())


def test_the_example_config_is_valid_and_documents_the_defaults():
    raw = tomllib.loads((ROOT / "config.example.toml").read_text())
    settings = _load(raw, {"EUSATE_API_KEY": "k-123456", "TELEGRAM_BOT_TOKEN": "1:abcdef"})
    assert settings.helpdesk.url == "https://api.eusate.com"
    assert settings.helpdesk.api_key.get_secret_value() == "k-123456"
    assert settings.storage.url.get_secret_value() == "sqlite+aiosqlite:///bridge.db"
    assert settings.http.listen == "127.0.0.1:8080"
    assert settings.adapters["telegram"].mode == "polling"
    assert "1:abcdef" in settings.secrets()  # so the log redactor knows the bot token


def test_the_compose_deployments_config_is_valid():
    """deploy/compose.yaml's daemons start with it: two on PostgreSQL, with the sandbox."""
    raw = tomllib.loads((ROOT / "deploy" / "compose-bridge.toml").read_text())
    settings = _load(raw, {"HELPDESK_API_KEY": "sandbox-key", "DB_PASSWORD": "pw",
                           "TELEGRAM_BOT_TOKEN": "1:abcdef"})
    assert settings.storage.url.get_secret_value() == \
        "postgresql+asyncpg://bridge:pw@postgres/bridge"
    assert settings.helpdesk.url == "http://helpdesk:8765"
    assert settings.http.listen == "0.0.0.0:8080"
    assert "pw" in settings.secrets()


@pytest.mark.parametrize("raw, env, message", [
    ({"helpdesk": {"api_key": "${EUSATE_API_KEY}"}}, {},
     "[helpdesk] api_key: environment variable EUSATE_API_KEY is not set"),
    ({"helpdesk": {"api_key": "k", "colour": "blue"}}, {}, "[helpdesk] colour: unknown key"),
    ({"helpdesk": {"api_key": "k", "connections": "many"}}, {}, "[helpdesk] connections: "),
    ({"helpdesk": {"api_key": "k", "url": "ftp://x"}}, {}, "[helpdesk] url: "),
    ({"helpdesk": {}}, {}, "[helpdesk] api_key: is required"),
    ({"storage": {}}, {}, "[helpdesk]: section is required"),
    ({"helpdesk": {"api_key": "k"}, "telegramm": {}}, {}, "[telegramm]: unknown section"),
    ({"helpdesk": {"api_key": "k"}, "texts": {"gretting": "hi"}}, {},
     "[texts] gretting: unknown text"),
    ({"helpdesk": {"api_key": "k"}, "texts": {"de": {"agent_joined": "Jetzt: {agnet}"}}}, {},
     "[texts] de.agent_joined: unknown placeholder {agnet} (this text has: {agent})"),
    ({"helpdesk": {"api_key": "k"}, "texts": {"greeting": "Hallo {"}}, {},
     "[texts] greeting: Single '{' encountered"),
    ({"helpdesk": {"api_key": "k"}, "logging": {"level": "LOUD"}}, {}, "[logging] level: "),
    ({"helpdesk": {"api_key": "k"}, "console": {"user": 5}}, {}, "[console] user: "),
    ({"helpdesk": {"api_key": "k"}, "telegram": {"token": "t", "mode": "carrier-pigeon"}}, {},
     "[telegram] mode: "),
    ({"helpdesk": {"api_key": "k"}, "telegram": {}}, {}, "[telegram] token: is required"),
    ({"helpdesk": {"api_key": "k"}, "storage": {"url": "sqlite+aiosqlite://"}}, {},
     "[storage] url: SQLite in memory cannot hold the queues"),
    ({"helpdesk": {"api_key": "k"}, "storage": {"url": "sqlite+aiosqlite:///:memory:"}}, {},
     "[storage] url: SQLite in memory cannot hold the queues"),
    ({"helpdesk": {"api_key": "k"}, "telegram": {"token": "t", "mode": "webhook"}}, {},
     '[telegram] mode = "webhook" needs [http] public_url'),
])
def test_problems_name_the_key(raw, env, message):
    with pytest.raises(ConfigError) as error:
        _load(raw, env)
    assert str(error.value).startswith(message)


def test_a_secret_is_never_echoed_in_a_config_error():
    with pytest.raises(ConfigError) as error:
        _load({"helpdesk": {"api_key": "k", "connections": "${KEY}"}}, {"KEY": "s3cr3t-value"})
    assert "s3cr3t-value" not in str(error.value)


def test_texts_per_language_fall_back_to_the_default():
    settings = _load({"helpdesk": {"api_key": "k"},
                      "texts": {"close_yes": "Yep", "de": {"close_yes": "Ja"}}})
    texts = Texts(settings.texts, settings.default_language)
    assert texts.get("close_yes", "de") == "Ja"
    assert texts.get("close_yes", "fr") == "Yep"
    assert texts.get("close_no", "de") == "No, I still need help"
    assert texts.get("agent_joined", None, agent="Alice") == "You're now chatting with Alice."


def test_the_cli_exits_2_with_one_line_and_no_traceback(tmp_path):
    config = tmp_path / "bridge.toml"
    config.write_text('[helpdesk]\napi_key = "${NOT_SET_ANYWHERE}"\n')
    for command in ("run", "check", "migrate"):
        result = subprocess.run([sys.executable, "-m", "bridge", command, "--config", str(config)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2
        assert result.stderr.strip() == ("config error: [helpdesk] api_key: environment variable "
                                         "NOT_SET_ANYWHERE is not set")
    missing = subprocess.run([sys.executable, "-m", "bridge", "run", "--config",
                              str(tmp_path / "nope.toml")], capture_output=True, text=True)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
