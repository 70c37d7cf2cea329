"""The X adapter end to end with Discord: the real core, the Discord adapter over real
discord.py against the Discord emulator, and the X emulator. Follow, relay, a refused Like (no
button, a forged press refused with the reason), an allowed Reply through the modal."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from adapters.discord import DiscordAdapter
from adapters.x import XAdapter
from bridge.app import Bridge
from bridge.config import config_from_dict
from tests.emulators.discord import DiscordEmulator, SentMessage
from tests.emulators.x import XEmulator

CLASSES = {"x": XAdapter, "discord": DiscordAdapter}


class Room:
    def __init__(self, dc: DiscordEmulator, xe: XEmulator) -> None:
        self.dc, self.xe = dc, xe
        self.guild = dc.add_guild("Acme")
        self.feed = dc.add_channel(self.guild, "x-leads")
        self.admin = dc.add_member(self.guild, "ann", manage_channels=True)
        self.sender = dc.add_member(self.guild, "bob")


@pytest.fixture
async def room(tmp_path: Path) -> AsyncIterator[Room]:
    dc, xe = DiscordEmulator(), XEmulator()
    await dc.start()
    await xe.start()
    r = Room(dc, xe)
    data = {
        "database": {"url": f"sqlite://{tmp_path}/bridge.sqlite3"},
        "bridge": {"admins": [], "senders": [f"discord:{r.sender}"]},
        "discord": {"token": dc.token, "api_url": dc.api_url, "guild_ready_timeout": 0.1},
        "x": {
            "api_url": xe.url,
            "bearer_token": xe.bearer_token,
            "consumer_key": xe.consumer_key,
            "consumer_secret": xe.consumer_secret,
            "access_token": xe.access_token,
            "access_token_secret": xe.access_token_secret,
            "poll_interval": 1,
            "quiet_poll_interval": 1,
        },
    }
    bridge = Bridge(config_from_dict(data, adapter_classes=CLASSES), adapter_classes=CLASSES)
    context = contextvars.copy_context()
    try:
        await bridge.start()
        await asyncio.wait_for(bridge.adapters["discord"].ready.wait(), 10)
        yield r
    finally:
        # tortoise keeps its connection in the test's context: stop the bridge in a copy of it.
        await asyncio.create_task(bridge.stop(), context=context)
        await xe.stop()
        await dc.stop()


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait for a condition on the emulators' state, checked every 50 ms."""
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def labels(message: SentMessage) -> dict[str, str]:
    return {b["label"]: b.get("custom_id") or b.get("url", "") for b in message.buttons()}


async def test_follow_relay_refused_like_and_allowed_reply_in_discord(room: Room) -> None:
    dc, xe = room.dc, room.xe
    alice = xe.add_user("alice", "Alice Prospect")
    done = await dc.slash(room.feed, room.admin, "follow", handle="x:alice")
    assert (await dc.wait_shown(done))["content"].startswith("Following @alice"), done.responses
    await until(lambda: bool(xe.timeline_reads.get(alice["id"])))  # the follow starts from its first read

    plain = xe.post(alice, "we are hiring https://example.com/jobs")
    await until(lambda: any("hiring" in str(m.embeds) for m in dc.bot_messages(room.feed)))
    relayed = next(m for m in dc.bot_messages(room.feed) if "hiring" in str(m.embeds))
    embed = relayed.embeds[0]
    assert "https://example.com/jobs" in embed["description"] and "t.co" not in embed["description"]
    assert embed["author"]["name"] == "Alice Prospect (@alice)"
    assert relayed.payload["allowed_mentions"] == {"parse": []}
    buttons = labels(relayed)
    assert buttons["Open"] == f"https://x.com/alice/status/{plain['id']}"
    # Self-serve X: no Like or Follow, and no Reply on a post that did not summon the team.
    assert not {"Like", "Follow", "Reply"} & set(buttons), buttons

    # A forged Like press is refused with X's rule, and X is not asked.
    delivery = buttons["Repost"].partition(":")[2]
    forged = await dc.press(room.feed, room.sender, relayed, f"like:{delivery}")
    refused = await dc.wait_shown(forged)
    assert "Enterprise" in refused["content"] and forged.is_ephemeral(refused), refused
    assert not [r for r in xe.requests if r[1] == "/2/users/:id/likes"]

    # A post that mentions the team account: Reply is offered, and the modal's text goes out.
    xe.post(alice, "@teamaccount what does it cost?")
    await until(lambda: any("what does it cost" in str(m.embeds) for m in dc.bot_messages(room.feed)))
    question = next(m for m in dc.bot_messages(room.feed) if "what does it cost" in str(m.embeds))
    pressed = await dc.press(room.feed, room.sender, question, labels(question)["Reply"])
    [modal] = await dc.wait_interaction(pressed)
    assert modal["type"] == 9, modal
    submit = await dc.submit_modal(room.feed, room.sender, modal["data"]["custom_id"], {"text": "$25 a month, DM us"})
    assert "Replied" in (await dc.wait_shown(submit, timeout=15))["content"]
    [reply] = [t for t in xe.created if t["text"] == "$25 a month, DM us"]
    assert reply["referenced_tweets"] == [{"type": "replied_to", "id": question_id(xe, "what does it cost")}]


def question_id(xe: XEmulator, words: str) -> str:
    return next(t["id"] for t in xe.tweets.values() if words in t["text"] and t["author_id"] != xe.me["id"])
