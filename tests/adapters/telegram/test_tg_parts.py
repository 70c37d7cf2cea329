"""A post sent as several Telegram messages reaches the chat once, whatever happens between
its parts: the group's pacing, a request that never answers, the send deadline."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from adapters.telegram import pacing
from bridge.model import Media
from tests.adapters.telegram.tg_world import start_world
from tests.emulators.telegram import TelegramEmulator

# Telegram's 20 messages a minute in a group, scaled down so the test takes seconds: 3 per 6 s
# for the bridge, checked by the emulator at 3 per 5.7 s.
LIMIT, WINDOW = 3, 6.0


@pytest.fixture
def scaled_group_limit(monkeypatch: pytest.MonkeyPatch, tg: TelegramEmulator) -> None:
    monkeypatch.setattr(pacing, "GROUP_PER_MINUTE", LIMIT)
    monkeypatch.setattr(pacing, "GROUP_WINDOW", WINDOW)
    tg.enforce_rate_limits = True
    tg.group_limit, tg.group_window = LIMIT, WINDOW - 0.3


async def test_album_with_overflowing_caption_into_a_full_group_arrives_once_in_order(
    tg: TelegramEmulator, tmp_path: Path, scaled_group_limit: None
) -> None:
    world = await start_world(
        tg,
        f"sqlite://{tmp_path}/bridge.sqlite3",
        bridge={"send_timeout": 2},  # the deadline is shorter than the group's pacing wait
        telegram={"max_pacing_wait": 1.0},
    )
    try:
        answer = await world.command(world.group, world.boss, "/follow alice.fake")  # the group's 1st message
        assert "Following @alice.fake" in answer
        # Sends that reach the group from now: the plain post, the album, then part 2, which
        # hangs without an answer (dropped unsent) until the client gives up.
        world.tg.stall(world.group.id, 3, 5.0)
        await world.net.publish("alice.fake", "first, a plain post")
        long_text = "A caption too long for an album. " * 50  # 1700 characters: over 1024
        post = await world.net.publish(
            "alice.fake",
            long_text,
            media=(Media("image", "https://cdn.test/1.jpg"), Media("image", "https://cdn.test/2.jpg")),
        )
        # The album takes the group's 3rd slot; part 2 must wait out the window (6 s, more than
        # the 2 s deadline), then time out once, then go.
        messages = await world.tg.wait_messages(world.group.id, 5, timeout=30)
        await asyncio.sleep(2.0)  # a duplicate would show up now
        messages = world.tg.messages(world.group.id)
        shown = [(m.method, m.photo or m.text[:30]) for m in messages[1:]]
        assert shown == [
            ("sendMessage", "Alice @alice.fake\n\nfirst, a pl"),
            ("sendMediaGroup", "https://cdn.test/1.jpg"),
            ("sendMediaGroup", "https://cdn.test/2.jpg"),
            ("sendMessage", "Alice @alice.fake\n\nA caption t"),
        ]
        album, text = messages[2], messages[4]
        assert "text below" in album.text
        assert long_text.strip() in text.text and ("Open original", post.url) in text.links()
        assert [b["text"] for b in text.buttons] == ["Open", "Reply", "Like", "Repost", "Follow"]
        # The bridge kept to the group's limit by itself: Telegram never had to refuse a send.
        assert [e for _c, _m, e in world.tg.rejected if e.code == 429] == []
    finally:
        await world.bridge.stop()
