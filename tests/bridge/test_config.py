"""Config mistakes, checked on what the real command line prints: one line naming the file,
the key and the fix, and exit code 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import ConfigError, config_from_dict
from tests.fakes import FakeChat, FakeNetwork


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "BRIDGE_CONFIG"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=60
    )


TELEGRAM = '[telegram]\ntoken = "123:abc"\n'
CASES = [
    # (name, config text, env, what the one line must say)
    ("unknown key", TELEGRAM + 'tokne = "x"\n', {}, ["[telegram] tokne", "unknown key", "did you mean 'token'"]),
    ("unknown section", '[telegarm]\ntoken = "x"\n', {}, ["[telegarm]", "unknown section", "telegram"]),
    ("wrong type", '[bridge]\nbackfill = "ten"\n', {}, ["[bridge] backfill", "must be a whole number", "'ten'"]),
    ("negative number", "[bridge]\nbackfill = -1\n", {}, ["[bridge] backfill", "at least 0"]),
    ("lease too short", "[bridge]\nlease_seconds = 1\n", {}, ["[bridge] lease_seconds", "at least 3"]),
    ("missing env var", '[telegram]\ntoken = "${NO_SUCH_TOKEN_VAR}"\n', {}, ["[telegram] token", "NO_SUCH_TOKEN_VAR is not set"]),
    ("placeholder", '[telegram]\ntoken = "CHANGE_ME"\n', {}, ["[telegram] token", "placeholder", "CHANGE_ME"]),
    ("placeholder from env", '[telegram]\ntoken = "${TOK}"\n', {"TOK": "your-token-here"}, ["[telegram] token", "placeholder"]),
    ("missing required", "[telegram]\n", {}, ["[telegram] token", "is missing"]),
    ("bad choice", '[bridge]\nlog_level = "loud"\n', {}, ["[bridge] log_level", "one of"]),
    ("bad toml", "[bridge\n", {}, ["not valid TOML"]),
    ("bad admin", '[bridge]\nadmins = ["123"]\n', {}, ["[bridge] admins", "platform:user_id"]),
    ("bad database", '[database]\nurl = "mysql://x"\n', {}, ["[database] url", "sqlite://"]),
    (
        "subscription to unknown platform",
        '[bluesky]\nidentifier = "a.test"\npassword = "pw-123456"\n[[subscription]]\nnetwork = "bluesky"\nfollow = "alice.test"\nto = ["discord:1"]\n',
        {},
        ["subscription #1", "no [discord] section"],
    ),
]


@pytest.mark.parametrize(("name", "text", "env", "expected"), CASES, ids=[c[0] for c in CASES])
def test_config_error_is_one_line_and_exit_2(
    tmp_path: Path, name: str, text: str, env: dict[str, str], expected: list[str]
) -> None:
    (tmp_path / "config.toml").write_text(text)
    result = run_cli("check", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: config.toml: ")
    for part in expected:
        assert part in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    result = run_cli("run", cwd=tmp_path)
    assert result.returncode == 2
    assert "create one with `bridge init --chat telegram --network bluesky`" in result.stderr


def test_config_path_from_flag_and_env(tmp_path: Path) -> None:
    (tmp_path / "other.toml").write_text('[bridge]\nbackfill = "x"\n')
    by_flag = run_cli("-c", "other.toml", "check", cwd=tmp_path)
    by_env = run_cli("check", cwd=tmp_path, env={"BRIDGE_CONFIG": "other.toml"})
    assert "other.toml: [bridge] backfill" in by_flag.stderr
    assert "other.toml: [bridge] backfill" in by_env.stderr


def test_example_config_is_valid_once_filled_in(tmp_path: Path) -> None:
    """config.example.toml must parse and carry every core key; with its variables set it is a valid config."""
    example = Path(__file__).parents[2] / "config.example.toml"
    env = {
        "TELEGRAM_BOT_TOKEN": "123456:real-looking",
        "DISCORD_BOT_TOKEN": "real.looking.token",
        "BLUESKY_APP_PASSWORD": "abcd-efgh-ijkl-mnop",
    }
    import tomllib

    data = tomllib.loads(example.read_text())
    config = config_from_dict(data, "config.example.toml", environ=env)
    assert config.database_url == "sqlite://bridge.sqlite3"
    assert set(config.adapters) >= {"telegram", "bluesky"}


def test_adapter_schema_applies_defaults_and_hides_secrets() -> None:
    cfg = config_from_dict(
        {"fakenet": {"token": "s3cr3t-value"}, "fakechat": {}}, adapter_classes={"fakenet": FakeNetwork, "fakechat": FakeChat}
    )
    assert cfg.adapters["fakenet"]["max_length"] == 300
    assert "s3cr3t-value" in cfg.secrets()
    with pytest.raises(ConfigError) as err:
        config_from_dict({"fakenet": {"max_length": True}}, adapter_classes={"fakenet": FakeNetwork})
    assert "must be a whole number" in str(err.value)
