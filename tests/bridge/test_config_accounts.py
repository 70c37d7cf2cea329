"""Accounts named apart from their network type: ``[bluesky]`` is the account ``bluesky`` of type
bluesky; ``[bluesky_sales]`` with ``type = "bluesky"`` is a second Bluesky account."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.bluesky import BlueskyAdapter
from adapters.telegram import TelegramAdapter
from bridge.config import ConfigError, config_from_dict
from tests.faults.bridge_process import run_cli
from tests.faults.toml_file import write_config

ACCOUNT = {"identifier": "team.bsky.social", "password": "app-pass-1234"}


def test_a_section_named_after_its_type_and_a_second_account_of_that_type() -> None:
    cfg = config_from_dict({"bluesky": ACCOUNT, "bluesky_sales": {"type": "bluesky", **ACCOUNT}, "telegram": {"token": "1:abc"}})
    assert cfg.adapter_classes == {"bluesky": BlueskyAdapter, "bluesky_sales": BlueskyAdapter, "telegram": TelegramAdapter}
    assert cfg.adapter_kinds == {"bluesky": "network", "bluesky_sales": "network", "telegram": "chat"}
    assert "type" not in cfg.adapters["bluesky_sales"]


def test_a_static_subscription_names_the_account() -> None:
    cfg = config_from_dict(
        {
            "bluesky_sales": {"type": "bluesky", **ACCOUNT},
            "telegram": {"token": "1:abc"},
            "subscription": [{"network": "bluesky_sales", "follow": "alice.bsky.social", "to": ["telegram:1"]}],
        }
    )
    assert cfg.subscriptions[0].network == "bluesky_sales"


@pytest.mark.parametrize(
    ("data", "key", "message"),
    [
        ({"bluesky_sales": ACCOUNT}, "[bluesky_sales]", 'type = "bluesky"'),
        ({"sales": {"type": "bluesy", **ACCOUNT}}, "[sales] type", "no adapter of type 'bluesy' is installed"),
        ({"Sales-Team": {"type": "bluesky", **ACCOUNT}}, "[Sales-Team]", "lower-case letters, digits and _"),
        ({"sales": {"type": 3, **ACCOUNT}}, "[sales] type", 'type = "bluesky"'),
        ({"tg2": {"type": "telegram", "token": "1:abc"}}, "[tg2] type", "telegram is a chat platform"),
    ],
)
def test_a_bad_account_section_names_the_key_and_the_fix(data: dict, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(data, "bridge.toml")
    assert err.value.key == key and message in str(err.value)


def test_the_command_line_says_what_is_wrong_with_a_type(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "config.toml",
        {"database": {"url": f"sqlite://{tmp_path}/b.sqlite3"}, "sales": {"type": "mastodonn", **ACCOUNT}},
    )
    proc = run_cli(config, "subs")
    assert proc.returncode == 2
    assert f"{config}: [sales] type: no adapter of type 'mastodonn' is installed; installed: bluesky" in proc.stderr
