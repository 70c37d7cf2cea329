"""The Mastodon adapter when things go wrong, with the real core: a restart mid-stream, a
dropped stream in the middle of a burst, a 429 storm, a revoked token; the list follow mode."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.adapters.mastodon.conftest import BridgeFactory, World
from tests.fakes import FakeChat

ROOM = "room1"


async def cycle(b: Any) -> int:
    return await b.networks["mastodon"].poll_once()


async def test_restart_loses_nothing_and_sends_nothing_twice(world: World, mastodon_bridge: BridgeFactory) -> None:
    server, alice = world.server, world.alice
    b = await mastodon_bridge()
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    assert (await chat.command(ROOM, "boss", "/follow @alice@other.example", admin=True)).ok
    await cycle(b)
    before = [server.post(alice, f"before {i}") for i in range(3)]
    await cycle(b)
    await chat.wait_sent(3, timeout=10)
    # down: 90 posts arrive (more than two pages of 40), then the bridge comes back
    await b.stop()
    during = [server.post(alice, f"while down {i}") for i in range(90)]
    b = await mastodon_bridge()
    chat = b.chats["fakechat"]  # type: ignore[assignment]
    for _ in range(5):
        await cycle(b)
    sent = await chat.wait_sent(90, timeout=20)
    assert [d.post.ref.id for d in sent] == [s.id for s in during], "all of them, in order, once"
    assert not set(chat.sent_to(ROOM)) & {s.id for s in before}


async def test_a_stream_drop_in_the_middle_of_a_burst_loses_nothing(world: World, mastodon_bridge: BridgeFactory) -> None:
    server, alice, team = world.server, world.alice, world.team
    server.follow(team, alice)  # the home stream carries alice's posts
    b = await mastodon_bridge(streaming=True, poll_interval=3600)
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    adapter = b.networks["mastodon"]
    assert (await chat.command(ROOM, "boss", "/follow @alice@other.example", admin=True)).ok
    await cycle(b)
    for _ in range(100):
        if adapter.stream_connects and server.streams:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.05)
    burst = []
    for i in range(30):
        burst.append(server.post(alice, f"burst {i}"))
        if i == 14:
            await server.drop_streams()
        await asyncio.sleep(0.01)
    # no poll by hand: the stream (its frames, then the catch-up after the reconnect) brings them
    sent = await chat.wait_sent(30, timeout=30)
    assert sorted(d.post.ref.id for d in sent) == sorted(s.id for s in burst)
    assert len(set(chat.sent_to(ROOM))) == len(chat.sent_to(ROOM)) == 30
    assert adapter.stream_connects >= 2  # type: ignore[attr-defined]


async def test_a_429_storm_delays_but_loses_nothing(world: World, mastodon_bridge: BridgeFactory) -> None:
    server, alice = world.server, world.alice
    b = await mastodon_bridge()
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    assert (await chat.command(ROOM, "boss", "/follow @alice@other.example", admin=True)).ok
    await cycle(b)
    posts = [server.post(alice, f"storm {i}") for i in range(5)]
    server.storm_429(2, reset_in=0.5)
    await cycle(b)
    sent = await chat.wait_sent(5, timeout=15)
    assert [d.post.ref.id for d in sent] == [p.id for p in posts]
    # a storm longer than a request may wait: the poll gives up for now and comes back
    more = [server.post(alice, f"later {i}") for i in range(3)]
    server.storm_429(6, reset_in=0.3)
    for _ in range(6):
        try:
            await cycle(b)
        except Exception as exc:  # RateLimited: the loop would wait and retry
            assert "rate limit" in str(exc).lower()
            await asyncio.sleep(0.4)
    await chat.wait_sent(8, timeout=15)
    assert chat.sent_to(ROOM)[5:] == [p.id for p in more]


async def test_a_revoked_token_is_reported_once(world: World, mastodon_bridge: BridgeFactory) -> None:
    server = world.server
    b = await mastodon_bridge(poll_interval=5)
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    assert (await chat.command(ROOM, "boss", "/follow @alice@other.example", admin=True)).ok
    del server.tokens[world.token]
    adapter = b.networks["mastodon"]
    adapter._wake.set()  # type: ignore[attr-defined]
    for _ in range(100):
        if chat.notices:
            break
        await asyncio.sleep(0.05)
    texts = [t for _, t in chat.notices]
    assert any("access_token" in t for t in texts), texts


async def test_list_mode_reads_every_followed_account_with_one_request(world: World, mastodon_bridge: BridgeFactory) -> None:
    server, team = world.server, world.team
    people = [server.add_account(f"p{i}", "far.example") for i in range(12)]
    b = await mastodon_bridge(follow_mode="list")
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    for p in people:
        assert (await chat.command(ROOM, "boss", f"/follow @p{people.index(p)}@far.example", admin=True)).ok
    await cycle(b)
    assert {p.id for p in people} <= team.following  # the list mode follows them, as documented
    posts = [server.post(p, f"hello from {p.username}") for p in people]
    n = len(server.requests)
    await cycle(b)
    sent = await chat.wait_sent(12, timeout=10)
    assert sorted(d.post.ref.id for d in sent) == sorted(s.id for s in posts)
    reads = [path for m, path, _ in server.requests[n:] if m == "GET" and "/timelines/list/" in path]
    assert len(reads) == 1
    assert not [path for m, path, _ in server.requests[n:] if "/accounts/" in path and "/statuses" in path]
    # the last subscription of one goes: the adapter undoes its own follow
    assert (await chat.command(ROOM, "boss", "/unfollow p0@far.example", admin=True)).ok
    await cycle(b)
    assert people[0].id not in team.following and people[1].id in team.following
