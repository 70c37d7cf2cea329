"""A gap a network adapter could not fetch reaches each room of its source once, as a notice;
and a paused room keeps its sources watched (a pause must not change the network's follows)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bridge.model import Batch, Gap, Source, SourceKind
from bridge.storage.store import utcnow
from tests.conftest import BridgeFactory, until
from tests.fakes import FakeChat, FakeNetwork


def alice() -> Source:
    return Source("fakenet", SourceKind.FOLLOW, "id:alice.fake")


async def test_a_gap_is_told_once_to_each_room_of_the_source(make_bridge: BridgeFactory, db_url: str) -> None:
    b = await make_bridge(db_url)
    net: FakeNetwork = b.networks["fakenet"]  # type: ignore[assignment]
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    for room in ("sales", "support", "gone"):
        assert (await chat.command(room, "boss", "/follow alice.fake")).ok
    await chat.command("other", "boss", "/follow bob.fake")
    await b.pause(chat.target("gone"), "bot removed")
    since = utcnow()  # after the rooms subscribed: the whole gap concerns them
    gap = Gap(alice(), since, utcnow() + timedelta(minutes=5), 120, "https://fake.example/@alice.fake")
    await net.host.ingest(Batch((), {"stream": "after-the-gap"}, (gap,)))
    await until(lambda: len(chat.notices) >= 2, timeout=10)
    await net.host.ingest(Batch((), {"stream": "after-the-gap"}, (gap,)))  # the same batch again
    await asyncio.sleep(0.5)
    told = sorted((t.chat_id, text) for t, text in chat.notices)
    when = since.strftime("%H:%M") if since.date() == gap.until.date() else since.strftime("%d %b %H:%M")
    expected = (
        f"About 120 posts by @alice.fake since {when} UTC could not be fetched; "
        "open https://fake.example/@alice.fake to see them."
    )
    assert told == [("sales", expected), ("support", expected)], "once per room; not the paused room nor others"


async def test_a_gap_from_before_a_subscription_is_not_told_to_it(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    net: FakeNetwork = b.networks["fakenet"]  # type: ignore[assignment]
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    old = Gap(alice(), utcnow() - timedelta(hours=3), utcnow() - timedelta(hours=2))
    assert (await chat.command("sales", "boss", "/follow alice.fake")).ok
    await net.host.ingest(Batch((), {"stream": "x"}, (old,)))
    await asyncio.sleep(0.5)
    assert chat.notices == []


async def test_a_gap_without_an_estimate_says_posts_may_be_missing(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    net: FakeNetwork = b.networks["fakenet"]  # type: ignore[assignment]
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    assert (await chat.command("sales", "boss", "/watch pricing")).ok
    source = Source("fakenet", SourceKind.QUERY, "pricing")
    gap = Gap(source, utcnow() - timedelta(minutes=1), utcnow() + timedelta(minutes=1), None, "https://fake.example/?q=pricing")
    await net.host.ingest(Batch((), {"stream": "x"}, (gap,)))
    await until(lambda: len(chat.notices) >= 1, timeout=10)
    [(_, text)] = chat.notices
    assert text.startswith("Some posts matching “pricing” since ") and "may be missing" in text
    assert "open https://fake.example/?q=pricing to see them" in text


async def test_a_paused_room_keeps_its_sources_watched(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    net: FakeNetwork = b.networks["fakenet"]  # type: ignore[assignment]
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    assert (await chat.command("sales", "boss", "/follow alice.fake")).ok
    await chat.host.destination_unavailable(chat.target("sales"), "bot removed")
    assert alice() in net.host.sources(), "a pause is not an unfollow"
    missed = await net.publish("alice.fake", "while paused")
    await chat.command("sales", "boss", "/subs")  # someone acts in the room: it is resumed
    await until(lambda: "fakechat:sales" not in b._paused, timeout=5)
    seen = await net.publish("alice.fake", "after the pause")
    await chat.wait_sent(1)
    await asyncio.sleep(0.2)
    assert chat.sent_to("sales") == [seen.ref.id] and missed.ref.id not in chat.sent_to("sales")
    assert (await chat.command("sales", "boss", "/unfollow alice.fake")).ok
    assert alice() not in net.host.sources(), "removed by people: now it goes"


async def test_gaps_of_several_accounts_reach_a_room_as_one_notice(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    net: FakeNetwork = b.networks["fakenet"]  # type: ignore[assignment]
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    for who in ("alice", "bob"):
        assert (await chat.command("sales", "boss", f"/follow {who}.fake")).ok
    since, until_ = utcnow(), utcnow() + timedelta(minutes=1)
    gaps = tuple(Gap(Source("fakenet", SourceKind.FOLLOW, f"id:{w}.fake"), since, until_, 3) for w in ("alice", "bob"))
    await net.host.ingest(Batch((), {"stream": "x"}, gaps))
    await until(lambda: len(chat.notices) >= 1, timeout=10)
    await asyncio.sleep(0.3)
    [(_, text)] = chat.notices
    assert [line.split(" since ")[0] for line in text.splitlines()] == [
        "About 3 posts by @alice.fake",
        "About 3 posts by @bob.fake",
    ]
