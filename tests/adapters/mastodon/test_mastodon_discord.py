"""Mastodon to Discord and back, end to end: the real core with the Discord adapter (real
discord.py) on the Discord emulator and the Mastodon adapter on the Mastodon emulator; what a
member sees in the channel and what lands on the server."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.discord import DiscordAdapter
from adapters.mastodon import MastodonAdapter
from bridge.app import Bridge
from bridge.config import config_from_dict
from tests.adapters.mastodon.conftest import World, mastodon_settings
from tests.emulators.discord import DiscordEmulator

CLASSES = {"mastodon": MastodonAdapter, "discord": DiscordAdapter}


@pytest.fixture
async def discord() -> AsyncIterator[DiscordEmulator]:
    emu = DiscordEmulator()
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


async def test_follow_relay_with_a_content_warning_as_a_spoiler_and_a_reply_threads_on_mastodon(
    world: World, discord: DiscordEmulator, tmp_path: Path
) -> None:
    server, alice, team = world.server, world.alice, world.team
    guild = discord.add_guild("Acme")
    feed = discord.add_channel(guild, "feed")
    ann = discord.add_member(guild, "ann", manage_channels=True)  # a room admin
    bob = discord.add_member(guild, "bob")  # a sender
    config = config_from_dict(
        {
            "database": {"url": f"sqlite://{tmp_path}/b.sqlite3"},
            "bridge": {"admins": [], "senders": [f"discord:{bob}"], "shutdown_timeout": 2},
            "discord": {"token": discord.token, "api_url": discord.api_url, "guild_ready_timeout": 0.1},
            "mastodon": mastodon_settings(world, poll_interval=5),
        },
        adapter_classes=CLASSES,
    )
    b = Bridge(config, adapter_classes=CLASSES)
    await b.start()
    # tortoise keeps its connection in a ContextVar of this context: stop the bridge in it.
    context = contextvars.copy_context()
    try:
        await asyncio.wait_for(b.adapters["discord"].ready.wait(), 10)
        done = await discord.slash(feed, ann, "follow", handle="@alice@other.example")
        shown = await discord.wait_shown(done, timeout=10)
        assert shown["content"].startswith("Following @alice@other.example"), shown
        mastodon = b.networks["mastodon"]
        await mastodon.poll_once()  # type: ignore[attr-defined]
        status = server.post(
            alice,
            html_content='<p>the <b>twist</b>: <a href="https://example.com/x">example.com/x</a><br>'
            "<script>alert(1)</script>it was the butler</p>",
            spoiler_text="film spoilers",
        )
        await mastodon.poll_once()  # type: ignore[attr-defined]
        [relay] = await discord.wait_sent(feed, 1, timeout=10)
        text = relay.embeds[0]["description"]
        assert text.startswith("⚠️ **CW:** film spoilers\n||") and text.endswith("||"), text
        hidden = text[text.index("||") + 2 : text.rindex("||")]
        assert "the twist: " in hidden and "it was the butler" in hidden and "example.com/x" in hidden, text
        assert "<" not in text.replace("<https://", "").replace("<http://", ""), text
        assert relay.embeds[0]["author"]["name"] == "Alice (@alice@other.example)"
        assert status.url in [b.get("url") for b in relay.buttons()] or status.url == relay.embeds[0].get("url")

        await discord.user_message(feed, bob, f"<@{discord.application_id}> thanks for the warning", reply_to=relay.id)
        answer = (await discord.wait_sent(feed, 2, timeout=10))[1]
        assert answer.message["content"].startswith("Replied to @alice@other.example"), answer.message
        [ours] = server.statuses_by(team)
        assert ours.in_reply_to is status and ours.text == "thanks for the warning" and ours.visibility == "public"
    finally:
        await asyncio.create_task(b.stop(), context=context)
