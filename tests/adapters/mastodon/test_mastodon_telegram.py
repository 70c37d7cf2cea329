"""Mastodon to Telegram and back, end to end: the real core with the Telegram adapter on the
Bot API emulator and the Mastodon adapter on the Mastodon emulator, what a person sees in
Telegram and what lands on the server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.mastodon import MastodonAdapter
from adapters.telegram import TelegramAdapter
from bridge.app import Bridge
from bridge.config import config_from_dict
from tests.adapters.mastodon.conftest import World, mastodon_settings
from tests.emulators.telegram import TelegramEmulator

CLASSES = {"mastodon": MastodonAdapter, "telegram": TelegramAdapter}


@pytest.fixture
async def tg() -> AsyncIterator[TelegramEmulator]:
    async with TelegramEmulator(token="123456:TEST-token") as emulator:
        yield emulator


async def test_a_content_warning_post_reaches_telegram_as_a_spoiler_and_a_reply_threads_back(
    world: World, tg: TelegramEmulator, tmp_path: Path
) -> None:
    server = world.server
    boss = tg.add_user("Boss", "boss")
    config = config_from_dict(
        {
            "database": {"url": f"sqlite://{tmp_path}/b.sqlite3"},
            "bridge": {"admins": [], "senders": [f"telegram:{boss['id']}"], "shutdown_timeout": 2},
            "telegram": {"token": tg.token, "api_url": tg.url, "poll_timeout": 1},
            "mastodon": mastodon_settings(world, poll_interval=5),
        },
        adapter_classes=CLASSES,
    )
    b = Bridge(config, adapter_classes=CLASSES)
    await b.start()
    try:
        chat = tg.private_chat(boss)
        tg.send_text(chat.id, boss, "/follow @alice@other.example")
        answered = await tg.wait_messages(chat.id, 1)
        assert "Following @alice@other.example" in answered[-1].text, answered[-1].text
        await b.networks["mastodon"].poll_once()  # type: ignore[attr-defined]
        status = server.post(
            world.alice,
            html_content='<p>the <b>twist</b>: <a href="https://example.com/x">example.com/x</a> <script>x</script></p>',
            spoiler_text="film spoilers",
        )
        await b.networks["mastodon"].poll_once()  # type: ignore[attr-defined]
        messages = await tg.wait_messages(chat.id, 2)
        relayed = messages[-1]
        assert "⚠️ CW: film spoilers" in relayed.text and "the twist: example.com/x" in relayed.text
        assert "<" not in relayed.text
        spoilers = [e for e in relayed.entities if e["type"] == "spoiler"]
        assert spoilers, relayed.entities
        assert ("example.com/x", "https://example.com/x") in relayed.links()
        assert ("Open original", status.url) in relayed.links()

        before = len(tg.messages(chat.id))
        tg.send_text(chat.id, boss, "thanks for the warning", reply_to=relayed.message_id)
        await tg.wait_messages(chat.id, before + 1)
        for _ in range(100):
            if server.statuses_by(world.team):
                break
            await asyncio.sleep(0.05)
        [ours] = server.statuses_by(world.team)
        assert ours.in_reply_to is status and ours.text == "thanks for the warning" and ours.visibility == "public"
    finally:
        await b.stop()
