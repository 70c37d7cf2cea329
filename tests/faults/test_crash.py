"""Crash test, short version: the real ``bridge run`` relays Bluesky posts (reference AT
Protocol stack, firehose mode) into 2 Telegram chats and 2 Discord channels while it is
SIGKILLed and restarted; every post reaches every room, a duplicate appears only across a kill
(send→commit window) and never on Discord. The logs of every run and ``bridge status`` never
show a token, password or session. The same with Mastodon statuses (the Mastodon emulator,
streaming on): nothing lost, nothing doubled outside the window. The long version is
tests/faults/long_crash.py."""

from __future__ import annotations

from pathlib import Path

from tests.atproto.harness import AtprotoStack
from tests.faults.chat_world import DISCORD_TOKEN, TELEGRAM_TOKEN
from tests.faults.crash import MASTODON_TOKEN, MastodonSource, run_crash, session_secrets, status_output


async def test_sigkill_at_random_moments_loses_nothing_and_doubles_only_in_the_window(
    atproto: AtprotoStack, tmp_path: Path
) -> None:
    report = await run_crash(atproto, tmp_path, posts=16, kills=4, post_every=0.4, seed=6, drain_timeout=60)

    assert report.posts == 16 and report.kills == 4 and report.destinations == 4
    assert report.missing == {}, report.lines()
    assert report.lost == 0
    assert report.duplicated_by_platform["discord"] == 0
    assert report.duplicated_outside_window == 0
    assert report.sigterm_exit == 0

    # Secrets: nothing the bridge wrote in any of its runs, nor `bridge status`, shows one.
    logs = "".join(p.read_text(errors="replace") for p in report.logs)
    status = status_output(tmp_path / "config.toml")
    assert "sent" in status  # the status command did answer
    config = (tmp_path / "config.toml").read_text()
    app_password = config.split('password = "', 1)[1].split('"', 1)[0]
    secrets = [TELEGRAM_TOKEN, DISCORD_TOKEN, app_password, *session_secrets(tmp_path / "bridge.sqlite3")]
    assert len(secrets) >= 4  # the session was saved, so its tokens are checked too
    for secret in secrets:
        assert secret not in logs
        assert secret not in status


async def test_mastodon_statuses_survive_sigkill_at_random_moments(tmp_path: Path) -> None:
    report = await run_crash(MastodonSource(), tmp_path, posts=16, kills=4, post_every=0.4, seed=7, drain_timeout=60)

    assert report.posts == 16 and report.kills == 4 and report.destinations == 4
    assert report.missing == {}, report.lines()
    assert report.lost == 0
    assert report.duplicated_by_platform["discord"] == 0
    assert report.duplicated_outside_window == 0
    assert report.sigterm_exit == 0
    logs = "".join(p.read_text(errors="replace") for p in report.logs)
    assert "mastodon started" in logs  # the runs did read Mastodon
    for secret in (MASTODON_TOKEN, TELEGRAM_TOKEN, DISCORD_TOKEN):
        assert secret not in logs
