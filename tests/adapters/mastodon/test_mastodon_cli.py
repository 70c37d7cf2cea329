"""``bridge check`` through the real command line against the Mastodon emulator."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.adapters.mastodon.conftest import World
from tests.faults.bridge_process import run_cli


def write(path: Path, world: World, token: str) -> Path:
    path.write_text(
        f'[database]\nurl = "sqlite://{path.parent}/b.sqlite3"\n\n'
        f'[mastodon]\ninstance = "{world.server.url}"\naccess_token = "{token}"\nstreaming = false\n'
    )
    path.chmod(0o600)
    return path


async def test_check_names_the_account_and_the_instance_limit(world: World, tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", world, world.token)
    done = await asyncio.to_thread(run_cli, config, "check")
    assert "mastodon: ok: @team@team.example (max 500 chars)" in done.stdout, done.stdout + done.stderr
    assert world.token not in done.stdout + done.stderr


async def test_check_names_every_missing_scope_and_the_fix(world: World, tmp_path: Path) -> None:
    weak = world.server.add_token(world.team, ("read:accounts", "read:statuses", "write:statuses"))
    config = write(tmp_path / "c.toml", world, weak)
    done = await asyncio.to_thread(run_cli, config, "check")
    out = done.stdout + done.stderr
    assert done.returncode != 0
    [line] = [x for x in out.splitlines() if "lacks the scopes" in x]
    for scope in ("read:notifications", "read:search", "write:favourites", "write:follows"):
        assert scope in line
    assert "Regenerate access token" in line and "access_token" in line
    assert weak not in out


async def test_a_refused_token_says_which_key_to_fix(world: World, tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", world, "not-a-token")
    done = await asyncio.to_thread(run_cli, config, "check")
    out = done.stdout + done.stderr
    assert done.returncode != 0 and "refused the Mastodon access token" in out and "[mastodon] access_token" in out
