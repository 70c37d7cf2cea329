"""The command line as a user meets it: the real ``bridge`` in a subprocess, what it prints and
its exit code. A room admin's verbs from the terminal, worded for the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import build_parser

BASE = """\
[database]
url = "sqlite://{db}"

[telegram]
token = "123456:not-a-real-token"

[discord]
token = "not.a.real.token"

[bluesky]
identifier = "team.test"
password = "pw-123456"
"""
ROOM = "telegram:-1001234567890"


def bridge(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("BRIDGE_CONFIG", "DATABASE_URL")} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(BASE.format(db=tmp_path / "bridge.sqlite3"))
    return path


# --- -c before or after the command ------------------------------------------------------------

EVERY_COMMAND = [
    ["run"],
    ["check"],
    ["follow", "alice.bsky.social", "--to", ROOM],
    ["unfollow", "alice.bsky.social", "--to", ROOM],
    ["watch", "pricing", "--to", ROOM],
    ["unwatch", "pricing", "--to", ROOM],
    ["subs"],
    ["filter", "1", "replies:off"],
    ["digest", "1", "daily"],
    ["quiet", "off", "--to", ROOM],
    ["inbox", "on", "--to", ROOM],
    ["format", "--to", ROOM],
    ["pause", "--to", ROOM],
    ["resume", "--to", ROOM],
    ["status"],
    ["find", "CEO", "biotech"],
    ["who", "alice.bsky.social"],
    ["recent", "alice.bsky.social", "5"],
    ["search", "gene", "therapy"],
]


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=lambda c: c[0])
def test_config_flag_is_read_before_or_after_the_command(tmp_path: Path, command: list[str]) -> None:
    # A config with a mistake: the error names the file, which shows the flag was read.
    (tmp_path / "prod.toml").write_text('[bridge]\nbackfill = "ten"\n')
    for args in (["-c", "prod.toml", *command], [command[0], "--config", "prod.toml", *command[1:]]):
        result = bridge(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error: prod.toml: [bridge] backfill: must be a whole number"), (args, result.stderr)


def test_init_takes_the_config_flag_after_the_command_too(tmp_path: Path) -> None:
    result = bridge("init", "--chat", "telegram", "--network", "bluesky", "-c", "prod.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "prod.toml").exists() and not (tmp_path / "config.toml").exists()
    assert "bridge -c prod.toml check" in result.stdout


def test_every_command_has_an_example_in_its_help() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, parser in sub.choices.items():  # type: ignore[union-attr]
        text = parser.format_help()
        assert "example" in text and f"bridge {name}" in text.split("example", 1)[1], name


# --- destinations checked by their platform --------------------------------------------------

BAD_DESTINATIONS = [
    ("telegram:abc", "is not a Telegram chat: write the numeric chat id"),
    ("telegram:-100/abc", "the topic after '/' must be a positive number"),
    ("telegram:@ab", "is not a Telegram chat"),  # too short to be a username
    ("discord:#general", "is not a Discord channel: write the channel id"),
    ("slack:123", "which has no [slack] section"),
    ("nocolon", "write it as platform:chat_id"),
]


@pytest.mark.parametrize(("dest", "message"), BAD_DESTINATIONS)
def test_a_destination_the_platform_cannot_send_to_is_refused_at_once(
    tmp_path: Path, config: Path, dest: str, message: str
) -> None:
    result = bridge("watch", "pricing", "--to", dest, "-c", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: --to: ")
    assert message in result.stderr
    assert "no subscriptions" in bridge("subs", "-c", str(config), cwd=tmp_path).stdout

    subscription = f'\n[[subscription]]\nnetwork = "bluesky"\nquery = "pricing"\nto = ["{dest}"]\n'
    config.write_text(config.read_text() + subscription)
    result = bridge("check", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "[subscription #1] to: " in result.stderr and message in result.stderr


def test_a_public_channel_username_is_a_destination(tmp_path: Path, config: Path) -> None:
    result = bridge("watch", "pricing", "--to", "telegram:@Acme_News", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "in telegram:@acme_news" in result.stdout


# --- the config: every mistake in one run -------------------------------------------------------


def test_every_config_mistake_is_listed_in_one_run(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        "[bridge]\n"
        'backfill = "ten"\n'
        'admins = ["telegram:@alice"]\n'
        "[telegram]\n"
        'tokne = "123:abc"\n'
        "[telegarm]\n"
        "[[subscription]]\n"
        'network = "mastodon"\n'
        'follow = "alice.bsky.social"\n'
        'to = ["discord:#general"]\n'
    )
    result = bridge("run", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("error: config.toml: ") for line in lines), lines
    said = "\n".join(lines)
    for part in (
        "[telegarm]: unknown section; did you mean [telegram]?",
        "[bridge] backfill: must be a whole number",
        "[bridge] admins: telegram:@alice is not a Telegram user id",
        "send /start to the bot in a private chat and it tells you yours",
        "[telegram] tokne: unknown key; did you mean 'token'?",
        "[subscription #1] network: 'mastodon' is not a configured network",
        "[subscription #1] to: 'discord:#general' is on discord, which has no [discord] section",
    ):
        assert part in said, said
    assert len(lines) == 6, said
    assert "Traceback" not in result.stderr


def test_an_unknown_section_lists_each_valid_section_once(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[telegram]\ntoken = "123:abc"\n[slack]\n')
    result = bridge("check", cwd=tmp_path)
    sections = result.stderr.split("the sections are: ")[1].strip().split(", ")
    assert sorted(sections) == sorted(set(sections)) and "telegram" in sections and "bluesky" in sections


@pytest.mark.parametrize(
    ("admin", "message"),
    [
        ("telegram:@alice", "send /start to the bot in a private chat and it tells you yours"),
        ("discord:@alice", "/help in a channel tells you yours"),
        ("telegram:alice", "is not a Telegram user id"),
    ],
)
def test_an_admin_named_by_username_is_refused_with_how_to_find_the_id(tmp_path: Path, admin: str, message: str) -> None:
    (tmp_path / "config.toml").write_text(
        f'[bridge]\nadmins = ["{admin}"]\n[telegram]\ntoken = "123:abc"\n[discord]\ntoken = "a.b.c"\n'
    )
    result = bridge("check", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "[bridge] admins" in result.stderr and message in result.stderr


# --- the first run --------------------------------------------------------------------------------


def test_init_leads_a_newcomer_to_a_working_config(tmp_path: Path) -> None:
    first = bridge("init", "--chat", "telegram", "--network", "bluesky", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "export TELEGRAM_BOT_TOKEN=... BLUESKY_HANDLE=... BLUESKY_APP_PASSWORD=..." in first.stdout
    written = (tmp_path / "config.toml").read_text()
    assert "[discord]" not in written and (tmp_path / "config.toml").stat().st_mode & 0o077 == 0

    again = bridge("init", "--chat", "discord", "--network", "bluesky", cwd=tmp_path)
    assert again.returncode == 2 and "exists already and is kept" in again.stderr
    assert (tmp_path / "config.toml").read_text() == written

    # Before the variables are exported, one run names all of them.
    unset = bridge("run", cwd=tmp_path)
    assert unset.returncode == 2
    assert [line.split(": ", 3)[3] for line in unset.stderr.strip().splitlines()] == [
        "environment variable TELEGRAM_BOT_TOKEN is not set; export TELEGRAM_BOT_TOKEN=... or write the value in the file, or delete the whole [telegram] section if you do not use it",
        "environment variable BLUESKY_HANDLE is not set; export BLUESKY_HANDLE=... or write the value in the file, or delete the whole [bluesky] section if you do not use it",
        "environment variable BLUESKY_APP_PASSWORD is not set; export BLUESKY_APP_PASSWORD=... or write the value in the file, or delete the whole [bluesky] section if you do not use it",
    ]
    env = {"TELEGRAM_BOT_TOKEN": "123456:abc-def", "BLUESKY_HANDLE": "team.test", "BLUESKY_APP_PASSWORD": "abcd-efgh-ijkl-mnop"}
    ready = bridge("watch", "pricing", "--to", ROOM, cwd=tmp_path, env=env)
    assert ready.returncode == 0, ready.stderr
    assert (tmp_path / "bridge.sqlite3").exists()


def test_init_refuses_unknown_platforms(tmp_path: Path) -> None:
    result = bridge("init", "--chat", "slack", "--network", "telegram", cwd=tmp_path)
    assert result.returncode == 2 and not (tmp_path / "config.toml").exists()
    assert "--chat slack: unknown; the chat platforms are: discord, telegram" in result.stderr
    assert "--network telegram: that is a chat platform; use --chat" in result.stderr


def test_the_unset_discord_token_of_the_full_example_says_to_delete_the_section(tmp_path: Path) -> None:
    example = Path(__file__).parents[3] / "config.example.toml"
    (tmp_path / "config.toml").write_text(example.read_text())
    env = {"TELEGRAM_BOT_TOKEN": "123456:abc-def", "BLUESKY_APP_PASSWORD": "abcd-efgh-ijkl-mnop"}
    result = bridge("check", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "[discord] token: environment variable DISCORD_BOT_TOKEN is not set" in result.stderr
    assert "or delete the whole [discord] section if you do not use it" in result.stderr


def test_database_url_from_the_environment_when_the_config_names_none(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[telegram]\ntoken = "123:abc"\n[bluesky]\nidentifier = "t.test"\npassword = "pw-123456"\n'
    )
    hosted = tmp_path / "hosted.sqlite3"
    result = bridge("watch", "pricing", "--to", ROOM, cwd=tmp_path, env={"DATABASE_URL": f"sqlite://{hosted}"})
    assert result.returncode == 0, result.stderr
    assert hosted.exists() and not (tmp_path / "bridge.sqlite3").exists()
    # A URL in the file wins over the environment.
    (tmp_path / "config.toml").write_text(
        (tmp_path / "config.toml").read_text() + f'[database]\nurl = "sqlite://{tmp_path / "file.sqlite3"}"\n'
    )
    assert bridge("subs", cwd=tmp_path, env={"DATABASE_URL": f"sqlite://{hosted}"}).returncode == 0
    assert (tmp_path / "file.sqlite3").exists()
    bad = bridge("subs", cwd=tmp_path.parent, env={"DATABASE_URL": "mysql://x", "BRIDGE_CONFIG": str(tmp_path / "none.toml")})
    assert bad.returncode == 2


def test_a_heroku_style_database_url_is_accepted() -> None:
    from bridge.config import config_from_dict

    for url in ("postgres://u:p@db.example:5432/d", "postgresql://u:p@db.example/d"):
        assert config_from_dict({}, environ={"DATABASE_URL": url}).database_url == url
    with pytest.raises(Exception, match="DATABASE_URL"):
        config_from_dict({}, environ={"DATABASE_URL": "mysql://x"})


# --- what a room admin does in chat, from the terminal ---------------------------------------------


def test_a_room_admin_does_everything_from_the_terminal(tmp_path: Path, config: Path) -> None:
    def ok(*args: str) -> str:
        result = bridge(*args, "-c", str(config), cwd=tmp_path)
        assert result.returncode == 0, (args, result.stderr)
        return result.stdout.strip()

    def fails(code: int, *args: str) -> str:
        result = bridge(*args, "-c", str(config), cwd=tmp_path)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, result.stderr
        return errors[0]

    said = [
        ok("watch", "pricing", "--to", ROOM),
        ok("subs", "--to", ROOM),
        ok("filter", "1", "include:outage", "replies:off"),
        ok("digest", "1", "daily"),
        ok("quiet", "22:00-07:00", "Europe/Berlin", "--to", ROOM),
        ok("quiet", "--to", ROOM),
        ok("inbox", "on", "--to", ROOM),
        ok("pause", "--to", ROOM),
        ok("status"),
        ok("status", "--to", ROOM),
        ok("resume", "--to", ROOM),
        ok("unwatch", "pricing", "--to", ROOM),
        ok("resume", "--to", ROOM),
    ]
    assert said[0] == f"Watching 'pricing' on bluesky in {ROOM} (#1): matching posts from now on."
    assert said[1] == f"Subscriptions in {ROOM}:\n#1 watch 'pricing' (bluesky)"
    assert said[2].startswith("#1 now: ") and "outage" in said[2]
    assert (
        said[3]
        == f"#1: posts are collected and sent as one message every day at 09:00 (the time zone of the quiet hours of {ROOM}, else UTC)."
    )
    assert said[4].startswith(f"Quiet hours 22:00-07:00 Europe/Berlin in {ROOM}: posts are held")
    assert said[5].startswith(f"Quiet hours of {ROOM}: 22:00-07:00 Europe/Berlin.")
    assert said[6] == f"The team account's mentions, replies and DMs on bluesky now arrive in {ROOM}."
    assert said[7] == f"Paused: nothing is relayed in {ROOM} until bridge resume --to {ROOM}."
    assert f"paused {ROOM}: paused by the command line; it resumes with `bridge resume --to {ROOM}`" in said[8]
    assert said[9].startswith(f"{ROOM} is paused (paused by the command line); it resumes with `bridge resume --to {ROOM}`")
    assert said[10] == f"Resumed: new posts are relayed in {ROOM} again."
    assert said[11] == f"Stopped watching 'pricing' in {ROOM} (#1)."
    assert said[12] == f"{ROOM} is not paused."
    for text in said:
        assert "this room" not in text.lower() and "/subs" not in text and "/resume" not in text, text

    refused = [
        fails(1, "unwatch", "nothing", "--to", ROOM),
        fails(1, "filter", "99", "replies:off"),
        fails(1, "watch", '""', "--to", ROOM),
        fails(1, "digest", "1", "weekly", "--to", ROOM),
        fails(1, "quiet", "25:00-07:00", "--to", ROOM),
        fails(2, "watch", "pricing", "--network", "mastodon", "--to", ROOM),
        fails(2, "follow", "alice.bsky.social", "--network", "telegram", "--to", ROOM),
        fails(2, "filter", "pricing", "replies:off"),
    ]
    assert refused[0] == f"error: No watch matching 'nothing' in {ROOM}; `bridge subs --to {ROOM}` lists them."
    assert refused[1] == "error: no subscription #99; `bridge subs` lists them"
    assert refused[2].startswith(f"error: '\"\"' has no word to search for. Usage: bridge watch <query> --to {ROOM}")
    assert (
        refused[3]
        == f"error: Usage: bridge digest <id> off|hourly|daily --to {ROOM}; `bridge subs --to {ROOM}` lists them with their ids."
    )
    assert "bridge quiet 22:00-07:00 Europe/Berlin" in refused[4] and "/quiet" not in refused[4]
    assert "the mastodon network is not configured (no [mastodon] section in" in refused[5]
    assert "is not a bluesky handle" not in refused[5]
    assert "telegram is a chat platform" in refused[6]
    assert "the first word must be the subscription id" in refused[7]


def test_topics_and_format_from_the_terminal(tmp_path: Path, config: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return bridge(*args, "-c", str(config), cwd=tmp_path)

    watched = run("watch", "pricing", "--topic", "--to", ROOM)
    assert watched.returncode == 0, watched.stderr
    assert watched.stdout.strip() == f"Watching 'pricing' on bluesky in {ROOM} in its own topic 'pricing' (#1): matching posts from now on."
    assert run("subs", "--to", ROOM).stdout.strip() == f"Subscriptions in {ROOM}:\n#1 watch 'pricing' (bluesky) – topic:on"
    assert run("format", "--to", ROOM).stdout.strip().startswith(f"Format of {ROOM}: full.")
    assert run("format", "compact", "--to", ROOM).stdout.strip() == f"Format compact: posts in {ROOM} are one line each (author, first words, link)."
    assert run("format", "--to", ROOM).stdout.strip().startswith(f"Format of {ROOM}: compact.")
    assert f"Subscriptions in {ROOM} (format compact):" in run("subs", "--to", ROOM).stdout
    wrong = run("format", "tiny", "--to", ROOM)
    assert wrong.returncode == 1 and wrong.stderr.strip() == (
        f"error: Usage: bridge format compact --to {ROOM} (one line: author, first words, link) or bridge format full --to {ROOM}."
    )
