"""The stream as the doorbell of a busy feed: a status the stream rings for while the adapter
is still walking back through an earlier burst (a walk of several turns) is read when the walk
ends, not left for the next scheduled poll."""

from __future__ import annotations

import asyncio
import time

from tests.adapters.mastodon.conftest import BridgeFactory, World
from tests.adapters.mastodon.test_mastodon_e2e import ROOM
from tests.emulators.mastodon import Fault
from tests.fakes import FakeChat

TAG_PATH = "/api/v1/timelines/tag/launch"


def tag_reads(world: World) -> int:
    return sum(1 for _m, path, _h in world.server.requests if path.startswith(TAG_PATH))


async def test_a_status_rung_for_during_a_long_walk_is_read_when_the_walk_ends(
    world: World, mastodon_bridge: BridgeFactory
) -> None:
    server = world.server
    server.rate_limit = 10**6
    b = await mastodon_bridge(streaming=True, poll_interval=3600, catch_up=20)  # only the stream makes the feed due
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    assert (await chat.command(ROOM, "boss", "/watch #launch", admin=True)).ok
    adapter = b.networks["mastodon"]
    source = next(iter(adapter.host.sources()))
    deadline = time.monotonic() + 20
    while not (
        await adapter.host.load_cursor(source.key) and any(("hashtag", "launch") in st.subscriptions for st in server.streams)
    ):
        assert time.monotonic() < deadline, "the hashtag feed did not start"
        await asyncio.sleep(0.05)
    # 300 statuses: 8 pages, more than one turn (5 pages); each page answered slowly.
    server.inject(*(Fault(delay=0.15, path=TAG_PATH) for _ in range(10)))
    burst = [server.post(world.bob, f"burst {i} #launch") for i in range(300)]
    start = tag_reads(world)
    while tag_reads(world) < start + 2:  # the walk has read its first page
        assert time.monotonic() < deadline + 20, "the stream did not wake the feed"
        await asyncio.sleep(0.01)
    late = [server.post(world.bob, f"during the walk {i} #launch") for i in range(5)]
    await chat.wait_sent(305, timeout=30)
    relayed = chat.sent_to(ROOM)
    assert sorted(relayed) == sorted(s.id for s in burst + late) and len(relayed) == len(set(relayed))
