"""The inbox's two feeds (mentions and direct conversations), statuses that federate late, and
where a gap notice sends people: end to end with the real core, the Mastodon adapter on the
emulator and tests.fakes.FakeChat as the room."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.model import SourceKind
from tests.adapters.mastodon.conftest import BridgeFactory, World
from tests.adapters.mastodon.test_mastodon_e2e import ROOM, cycle
from tests.emulators.mastodon import Fault
from tests.fakes import FakeChat


async def until(ok: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def id_time(status_id: str) -> datetime:
    return datetime.fromtimestamp((int(status_id) >> 16) / 1000, UTC)


async def test_a_filtered_direct_message_comes_in_through_conversations_and_none_twice(
    world: World, mastodon_bridge: BridgeFactory
) -> None:
    server, bob, alice, team = world.server, world.bob, world.alice, world.team
    team.filter_private_mentions = True  # Mastodon 4.3's default notification policy
    server.follow(team, bob)  # bob's DMs are ordinary notifications; alice is a stranger
    b = await mastodon_bridge()
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    assert (await chat.command(ROOM, "boss", "/inbox on", admin=True)).ok
    await cycle(b)
    from_friend = server.dm(bob, [team], "order 1234 never came")  # a mention and a conversation
    from_stranger = server.dm(alice, [team], "hi, we have not met")  # a conversation only
    mention = server.post(bob, "@team what a launch")
    await cycle(b)
    await chat.wait_sent(3, timeout=10)
    await cycle(b)
    await cycle(b)
    assert sorted(chat.sent_to(ROOM)) == sorted([from_friend.id, from_stranger.id, mention.id])
    by_id = {d.post.ref.id: d.post for d in chat.sent}
    assert by_id[from_stranger.id].reason == "dm" and by_id[from_friend.id].reason == "dm"

    # a reply from chat to the filtered DM stays direct and mentions her
    answer = await chat.reply(ROOM, "sender", chat.message_id_of(from_stranger.id, ROOM), "hello Alice")
    assert answer.ok, answer.text
    [ours] = server.statuses_by(team)
    assert ours.visibility == "direct" and ours.in_reply_to is from_stranger and alice in ours.mentions
    await cycle(b)  # the team's own reply is now the conversation's newest status: not relayed
    assert len(chat.sent_to(ROOM)) == 3


async def test_with_streaming_the_direct_stream_rings_for_a_filtered_direct_message(
    world: World, mastodon_bridge: BridgeFactory
) -> None:
    server, alice, team = world.server, world.alice, world.team
    team.filter_private_mentions = True
    b = await mastodon_bridge(streaming=True, poll_interval=3600)
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    assert (await chat.command(ROOM, "boss", "/inbox on", admin=True)).ok
    adapter = b.networks["mastodon"]
    inbox = next(s for s in adapter.host.sources() if s.kind is SourceKind.INBOX)
    await until(lambda: any(("direct",) in st.subscriptions for st in server.streams))
    deadline = time.monotonic() + 20
    while not (await adapter.host.load_cursor(inbox.key) and await adapter.host.load_cursor(f"{inbox.key}/direct")):
        assert time.monotonic() < deadline, "the inbox's feeds did not start"
        await asyncio.sleep(0.05)
    dm = server.dm(alice, [team], "only the direct stream tells of me")
    await chat.wait_sent(1, timeout=20)
    assert chat.sent_to(ROOM) == [dm.id]
    assert not [n for n in server.notifications if n.status is dm and not n.filtered]


@pytest.mark.parametrize(("late_window", "arrives"), [(600, True), (0, False)])
async def test_a_status_federated_late_is_relayed_within_the_late_window(
    world: World, mastodon_bridge: BridgeFactory, late_window: int, arrives: bool
) -> None:
    server, alice = world.server, world.alice
    b = await mastodon_bridge(late_window=late_window)
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    assert (await chat.command(ROOM, "boss", "/follow @alice@other.example", admin=True)).ok
    assert (await chat.command(ROOM, "boss", "/watch #quokka", admin=True)).ok
    await cycle(b)
    first = server.post(alice, "the first #quokka")
    await cycle(b)
    await chat.wait_sent(1, timeout=10)
    # Her server delivers a status written before the first only now: its id sorts below.
    late = server.post(alice, "written earlier, delivered late #quokka", created_at=id_time(first.id) - timedelta(seconds=2))
    assert int(late.id) < int(first.id)
    after = server.post(alice, "and a new one")
    await cycle(b)
    await chat.wait_sent(2, timeout=10)
    await cycle(b)
    want = [first.id, late.id, after.id] if arrives else [first.id, after.id]
    assert sorted(chat.sent_to(ROOM)) == sorted(want)
    assert len(chat.sent_to(ROOM)) == len(want)  # the follow and the watch both saw it: relayed once


async def test_a_gap_notice_links_the_followed_accounts_profile(world: World, mastodon_bridge: BridgeFactory) -> None:
    server, alice = world.server, world.alice
    b = await mastodon_bridge(catch_up=1)
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    assert (await chat.command(ROOM, "boss", "/follow @alice@other.example", admin=True)).ok
    assert (await chat.command(ROOM, "boss", "/watch #quokka", admin=True)).ok
    await cycle(b)
    for i in range(45):  # more than the one page (40) catch_up = 1 reads back
        server.post(alice, f"post {i} #quokka")
    await cycle(b)
    await until(lambda: len(chat.notices) >= 2)
    texts = [text for _target, text in chat.notices]
    assert any(alice.url in text for text in texts), texts
    assert any(f"{server.url}/tags/quokka" in text for text in texts), texts
    assert not any(text.rstrip(".").endswith(server.url) for text in texts), texts


async def test_a_server_without_the_conversations_api_still_delivers_mentions(
    world: World, mastodon_bridge: BridgeFactory
) -> None:
    server, bob, team = world.server, world.bob, world.team
    server.inject(*(Fault(status=404, path="/api/v1/conversations", body={"error": "Record not found"}) for _ in range(50)))
    b = await mastodon_bridge()
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    assert (await chat.command(ROOM, "boss", "/inbox on", admin=True)).ok
    await cycle(b)
    dm = server.dm(bob, [team], "are you there?")
    await cycle(b)
    await chat.wait_sent(1, timeout=10)
    await cycle(b)
    assert chat.sent_to(ROOM) == [dm.id]
    asked = [p for _m, p, _h in server.requests if p.startswith("/api/v1/conversations")]
    assert len(asked) == 1  # asked once, not every cycle
