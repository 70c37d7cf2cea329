"""Firehose mode against the reference PDS's own com.atproto.sync.subscribeRepos: latency,
filtering before decoding, and resuming from the saved seq after a dropped connection or a
restart of the bridge."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

import pytest

from adapters.bluesky.firehose import CURSOR_KEY
from bridge.model import Source, SourceKind
from tests.adapters.bluesky.conftest import AdapterFactory, BridgeFactory, FakeHost, Team
from tests.atproto.harness import Account, AtprotoStack
from tests.fakes import FakeChat
from tests.tcp_proxy import TcpProxy

ROOM = "room1"


@pytest.fixture
async def pds_proxy(atproto: AtprotoStack) -> AsyncIterator[TcpProxy]:
    url = urlparse(atproto.pds)
    proxy = TcpProxy(url.hostname or "localhost", url.port or 80)
    await proxy.open()
    yield proxy
    await proxy.close()


async def wait_for(pred, timeout: float = 10.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def follow_on_firehose(atproto: AtprotoStack, bluesky_bridge: BridgeFactory, account: Account) -> tuple[Any, FakeChat]:
    """A bridge in firehose mode whose room follows ``account``, once the firehose is read."""
    b = await bluesky_bridge(realtime="firehose", firehose_url=atproto.firehose_url, poll_interval=60)
    adapter = b.networks["bluesky"]
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    assert (await chat.command(ROOM, "boss", f"/follow {account.handle}", admin=True)).ok
    await wait_for(lambda: account.did in adapter._follow_sources and adapter.firehose.connections, what="the firehose")  # type: ignore[attr-defined]
    return adapter, chat


async def test_followed_post_is_relayed_within_two_seconds(atproto: AtprotoStack, bluesky_bridge: BridgeFactory) -> None:
    alice = await atproto.create_account("alice", "Alice")
    bob = await atproto.create_account("bob", "Bob")
    adapter, chat = await follow_on_firehose(atproto, bluesky_bridge, alice)

    await atproto.post(bob, "not followed")
    started = time.monotonic()
    rec = await atproto.post(alice, "breaking: firehose works", images=[{"alt": "chart"}])
    [delivery] = await chat.wait_sent(1, timeout=5)
    elapsed = time.monotonic() - started
    assert delivery.post.ref.id == rec.uri
    assert elapsed < 2.0, f"relayed in {elapsed:.2f}s"
    assert [(m.kind, m.alt) for m in delivery.post.media] == [("image", "chart")]
    assert delivery.post.author.display_name == "Alice", "hydrated from the AppView"
    # Only commits of followed accounts had their blocks decoded.
    fh = adapter.firehose  # type: ignore[attr-defined]
    assert fh.cars_decoded < fh.frames


async def test_a_plain_post_comes_from_its_record_without_waiting_for_the_appview(
    atproto: AtprotoStack, bluesky_bridge: BridgeFactory
) -> None:
    alice = await atproto.create_account("alice", "Alice")
    adapter, chat = await follow_on_firehose(atproto, bluesky_bridge, alice)
    api = adapter.firehose.api  # type: ignore[attr-defined]
    asked: list[str] = []
    query = api.query

    async def counting(nsid: str, **params: object) -> dict[str, object]:
        asked.append(nsid)
        return await query(nsid, **params)

    api.query = counting
    text = "café pricing https://example.com/q3 ok"
    start = len("café pricing ".encode())
    facets = [
        {
            "index": {"byteStart": start, "byteEnd": start + len(b"https://example.com/q3")},
            "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com/q3"}],
        }
    ]
    first = await atproto.post(alice, text, facets=facets)
    second = await atproto.post(alice, "and a second one")
    sent = await chat.wait_sent(2, timeout=5)
    assert [d.post.ref.id for d in sent] == [first.uri, second.uri]
    post = sent[0].post
    assert post.text == text and [link.url for link in post.links] == ["https://example.com/q3"]
    assert (post.author.handle, post.author.display_name) == (alice.handle, "Alice")
    assert post.url == f"https://bsky.app/profile/{alice.handle}/post/{first.uri.rsplit('/', 1)[-1]}"
    # The author's profile was fetched once; the posts themselves were never asked for.
    assert asked == ["app.bsky.actor.getProfiles"]


async def test_killed_connection_resumes_from_seq_with_nothing_lost_or_doubled(
    atproto: AtprotoStack, make_adapter: AdapterFactory, pds_proxy: TcpProxy
) -> None:
    carol = await atproto.create_account("carol")
    source = Source("bluesky", SourceKind.FOLLOW, carol.did)
    adapter, host = await make_adapter(
        FakeHost({source}), realtime="firehose", firehose_url=f"ws://127.0.0.1:{pds_proxy.port}", poll_interval=60
    )
    await wait_for(lambda: adapter.firehose.connections == 1, what="the firehose")

    posted = []
    for i in range(4):
        posted.append((await atproto.post(carol, f"burst {i}")).uri)
    await host.wait_items(lambda items: len(items) >= 1)
    pds_proxy.cut()  # mid-stream: the rest of the burst has not all been read yet
    for i in range(4, 8):  # written while the bridge is cut off
        posted.append((await atproto.post(carol, f"burst {i}")).uri)
    await host.wait_items(lambda items: len(items) >= 8, timeout=20)
    await asyncio.sleep(0.5)

    got = [it.post.ref.id for it in host.items]
    assert got == posted, "every post once, in order"
    assert adapter.firehose.connections >= 2
    resumed = [line for line in pds_proxy.request_lines if "subscribeRepos?cursor=" in line]
    assert resumed, pds_proxy.request_lines
    assert int(host.cursors[CURSOR_KEY]) >= 8


async def test_restart_neither_logs_in_again_nor_replays_nor_skips(
    atproto: AtprotoStack, bluesky_bridge: BridgeFactory, team: Team
) -> None:
    dave = await atproto.create_account("dave")
    settings = {"realtime": "firehose", "firehose_url": atproto.firehose_url, "poll_interval": 60}
    b = await bluesky_bridge(**settings)
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    assert (await chat.command(ROOM, "boss", f"/follow {dave.handle}", admin=True)).ok
    await wait_for(lambda: dave.did in b.networks["bluesky"]._follow_sources, what="the source")  # type: ignore[attr-defined]
    before = await atproto.post(dave, "before the restart")
    await chat.wait_sent(1, timeout=5)
    await b.stop()

    during = [await atproto.post(dave, f"while the bridge was down {i}") for i in range(3)]
    b = await bluesky_bridge(**settings)
    chat = b.chats["fakechat"]  # type: ignore[assignment]
    after = await atproto.post(dave, "after the restart")
    await chat.wait_sent(4, timeout=10)
    await asyncio.sleep(1.0)
    assert [d.post.ref.id for d in chat.sent] == [r.uri for r in (*during, after)]
    assert before.uri not in chat.sent_to(ROOM), "not replayed"
    assert await atproto.login_count(team.handle) == 1, "the saved session was reused"


async def test_poll_mode_restart_delivers_what_was_posted_while_down(
    atproto: AtprotoStack, bluesky_bridge: BridgeFactory, team: Team
) -> None:
    erin = await atproto.create_account("erin")
    b = await bluesky_bridge()
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    assert (await chat.command(ROOM, "boss", f"/follow {erin.handle}", admin=True)).ok
    await atproto.process_all()
    await b.networks["bluesky"].poll_once()  # type: ignore[attr-defined]
    first = await atproto.post(erin, "first")
    await atproto.process_all()
    await b.networks["bluesky"].poll_once()  # type: ignore[attr-defined]
    await chat.wait_sent(1, timeout=10)
    await b.stop()

    missed = await atproto.post(erin, "posted while the bridge was down")
    await atproto.process_all()
    b = await bluesky_bridge()
    chat = b.chats["fakechat"]  # type: ignore[assignment]
    await b.networks["bluesky"].poll_once()  # type: ignore[attr-defined]
    await chat.wait_sent(1, timeout=10)
    await b.networks["bluesky"].poll_once()  # type: ignore[attr-defined]
    assert chat.sent_to(ROOM) == [missed.uri]
    assert first.uri not in chat.sent_to(ROOM)
    assert await atproto.login_count(team.handle) == 1
