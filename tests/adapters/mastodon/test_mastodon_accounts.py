"""Two Mastodon accounts on two servers, as the config file names them (``[mastodon]`` and
``[mastodon_sales]`` with ``type = "mastodon"``): ``bridge check`` through the real command
line, then the real core with the Telegram adapter on the Bot API emulator, each account
following, relaying and replying on its own server only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.config import load_config
from tests.adapters.mastodon.conftest import World
from tests.emulators.mastodon import MastodonEmulator
from tests.emulators.telegram import TelegramEmulator
from tests.faults.bridge_process import run_cli


@pytest.fixture
async def sales() -> AsyncIterator[MastodonEmulator]:
    server = MastodonEmulator("sales.example", max_characters=1000)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def tg() -> AsyncIterator[TelegramEmulator]:
    async with TelegramEmulator(token="123456:TEST-token") as emulator:
        yield emulator


def config_file(path: Path, world: World, sales: MastodonEmulator, tg: TelegramEmulator | None, boss: int = 0) -> Path:
    chat = (
        f'[telegram]\ntoken = "{tg.token}"\napi_url = "{tg.url}"\npoll_timeout = 1\n\n'
        f'[bridge]\nadmins = []\nsenders = ["telegram:{boss}"]\nshutdown_timeout = 2\n\n'
        if tg
        else ""
    )
    path.write_text(
        f'[database]\nurl = "sqlite://{path.parent}/b.sqlite3"\n\n{chat}'
        f'[mastodon]\ninstance = "{world.server.url}"\naccess_token = "${{TEAM_TOKEN}}"\nstreaming = false\n\n'
        f'[mastodon_sales]\ntype = "mastodon"\ninstance = "{sales.url}"\naccess_token = "${{SALES_TOKEN}}"\n'
        "streaming = false\n"
    )
    path.chmod(0o600)
    return path


async def test_two_mastodon_accounts_each_follow_relay_and_reply_on_their_own_server(
    world: World, sales: MastodonEmulator, tg: TelegramEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seller = sales.add_account("sales", display_name="Acme Sales")
    env = {"TEAM_TOKEN": world.token, "SALES_TOKEN": sales.add_token(seller)}
    carol = sales.add_account("carol", "far.example", display_name="Carol")
    sales.add_account("alice", "other.example", display_name="Alice on the sales server")

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    checked = await asyncio.to_thread(run_cli, config_file(tmp_path / "check.toml", world, sales, None), "check")
    out = checked.stdout + checked.stderr
    assert "mastodon: ok: @team@team.example (max 500 chars)" in out, out
    assert "mastodon_sales: ok: @sales@sales.example (max 1000 chars)" in out, out

    boss = tg.add_user("Boss", "boss")
    config = load_config(str(config_file(tmp_path / "c.toml", world, sales, tg, boss["id"])))
    b = Bridge(config)
    await b.start()
    try:
        chat = tg.private_chat(boss)
        said = 0

        async def say(text: str) -> str:
            nonlocal said
            tg.send_text(chat.id, boss, text)
            said += 1
            return (await tg.wait_messages(chat.id, said + relayed))[-1].text

        relayed = 0
        # alice is known on both servers: which account follows her must be said
        answer = await say("/follow @alice@other.example")
        assert "could be on mastodon, mastodon_sales" in answer, answer
        assert "on mastodon here" in await say("/follow mastodon:@alice@other.example")
        assert "on mastodon_sales here" in await say("/follow mastodon_sales:@carol@far.example")
        for name in ("mastodon", "mastodon_sales"):
            await b.networks[name].poll_once()  # type: ignore[attr-defined]
        from_alice = world.server.post(world.alice, "hello from the team's server")
        from_carol = sales.post(carol, "hello from the sales server")
        for name in ("mastodon", "mastodon_sales"):
            await b.networks[name].poll_once()  # type: ignore[attr-defined]
        relayed = 2
        messages = await tg.wait_messages(chat.id, said + relayed)
        by_url = {link: m for m in messages for _text, link in m.links()}
        assert from_alice.url in by_url and from_carol.url in by_url

        tg.send_text(chat.id, boss, "thanks Carol", reply_to=by_url[from_carol.url].message_id)
        for _ in range(200):
            if sales.statuses_by(seller):
                break
            await asyncio.sleep(0.05)
        [ours] = sales.statuses_by(seller)
        assert ours.in_reply_to is from_carol and ours.text == "thanks Carol"
        assert world.server.statuses_by(world.team) == []  # the team account said nothing
        # each account read only its own server
        assert not [p for _m, p, _h in world.server.requests if f"/accounts/{carol.id}/" in p]
        assert not [p for _m, p, _h in sales.requests if "/accounts/" in p and world.alice.id in p and "lookup" not in p]
    finally:
        await b.stop()
