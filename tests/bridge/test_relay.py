"""The relay core end to end on fake adapters: subscribe, relay, the ledger's guarantees,
restart and shutdown."""

from __future__ import annotations

import asyncio
import time

from bridge.errors import DestinationUnavailable, Permanent, RateLimited, Transient
from bridge.storage.store import Store
from tests.conftest import BridgeFactory, until


async def test_follow_then_post_is_relayed_once(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    net, chat = b.networks["fakenet"], b.chats["fakechat"]
    answer = await chat.command("room1", "u1", "/follow alice.fake", admin=True)
    assert answer.ok and answer.public and "Following @alice.fake" in answer.text
    post = await net.publish("alice.fake", "hello world")
    await net.deliver(post)  # the same post arriving twice
    await chat.wait_sent(1)
    await net.publish("bob.fake", "not followed")
    second = await net.publish("alice.fake", "second")
    await chat.wait_sent(2)
    await asyncio.sleep(0.2)
    assert chat.sent_to("room1") == [post.ref.id, second.ref.id]
    delivery = chat.sent[0]
    assert [b.action.value for b in delivery.buttons] == ["open", "reply", "like", "repost", "follow"]
    assert all(len(b.token.encode()) <= 64 for b in delivery.buttons)


async def test_two_subscriptions_to_one_room_deliver_once(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    net, chat = b.networks["fakenet"], b.chats["fakechat"]
    await chat.command("room1", "boss", "/follow alice.fake")
    await chat.command("room1", "boss", "/watch pricing")
    post = await net.publish("alice.fake", "new pricing")
    await chat.wait_sent(1)
    await asyncio.sleep(0.3)
    assert chat.sent_to("room1") == [post.ref.id]


async def test_permanent_failure_in_one_room_does_not_stop_others(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    net, chat = b.networks["fakenet"], b.chats["fakechat"]
    for room in ("bad", "good"):
        await chat.command(room, "boss", "/follow alice.fake")
    chat.fail["bad"] = [Permanent("message rejected")]
    first = await net.publish("alice.fake", "one")
    second = await net.publish("alice.fake", "two")
    await chat.wait_sent(3)
    await asyncio.sleep(0.2)
    assert chat.sent_to("good") == [first.ref.id, second.ref.id]
    assert chat.sent_to("bad") == [second.ref.id]  # the poison row is skipped, not blocking
    assert any("message rejected" in text for _, text in chat.notices)
    status = await chat.command("bad", "u", "/status")
    assert "1 failed" in status.text and "message rejected" in status.text


async def test_gone_destination_is_paused_and_others_continue(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    net, chat = b.networks["fakenet"], b.chats["fakechat"]
    for room in ("gone", "good"):
        await chat.command(room, "boss", "/follow alice.fake")
    chat.fail["gone"] = [DestinationUnavailable("bot was blocked by the user")]
    await net.publish("alice.fake", "one")
    await net.publish("alice.fake", "two")
    await chat.wait_sent(2)
    await asyncio.sleep(0.3)
    assert len(chat.sent_to("good")) == 2 and chat.sent_to("gone") == []
    assert "gone" not in {s.destination.chat_id for s in b.matcher.routes(next(iter(b.matcher.sources("fakenet"))))}
    paused = await Store().paused_destinations()
    assert paused == {"fakechat:gone": "bot was blocked by the user"}


async def test_rate_limit_holds_only_that_room(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    net, chat = b.networks["fakenet"], b.chats["fakechat"]
    for room in ("busy", "calm"):
        await chat.command(room, "boss", "/follow alice.fake")
    chat.fail["busy"] = [RateLimited(1.0, "busy")]
    started = time.monotonic()
    await net.publish("alice.fake", "one")
    await chat.wait_sent(1)
    assert chat.sent_to("calm") and time.monotonic() - started < 0.8
    await chat.wait_sent(2, timeout=5)
    assert time.monotonic() - started >= 0.95  # retry_after honoured for "busy"
    assert len(chat.sent_to("busy")) == 1


async def test_transient_failure_is_retried(make_bridge: BridgeFactory, monkeypatch) -> None:
    monkeypatch.setattr("bridge.delivery.dispatcher.backoff", lambda attempts: 0.1)
    b = await make_bridge()
    net, chat = b.networks["fakenet"], b.chats["fakechat"]
    await chat.command("r", "boss", "/follow alice.fake")
    chat.fail["r"] = [Transient("timeout"), Transient("502")]
    post = await net.publish("alice.fake", "one")
    await chat.wait_sent(1, timeout=5)
    assert chat.sent_to("r") == [post.ref.id]


async def test_restart_delivers_every_post_exactly_once(db_url: str, make_bridge: BridgeFactory) -> None:
    """Stop the bridge mid-stream with sends in flight, start it again on the same database:
    every post arrives once, none skipped, none replayed from before the cursor."""
    b = await make_bridge(db_url)
    net, chat = b.networks["fakenet"], b.chats["fakechat"]
    await chat.command("r1", "boss", "/follow alice.fake")
    await chat.command("r2", "boss", "/follow alice.fake")
    chat.send_delay = 0.02
    posts = [net.make_post("alice.fake", f"post {i}") for i in range(40)]
    for i in range(0, 20, 5):
        await net.deliver(*posts[i : i + 5])
    await chat.wait_sent(6)
    delivered_before = list(chat.sent)
    await b.stop(timeout=0.01)  # in-flight sends are released, not lost

    b2 = await make_bridge(db_url)
    net2, chat2 = b2.networks["fakenet"], b2.chats["fakechat"]
    assert await b2.hosts["fakenet"].load_cursor("stream") == posts[19].ref.id
    for i in range(20, 40, 5):
        await net2.deliver(*posts[i : i + 5])
    expected = 80 - len(delivered_before)
    # On Postgres a room whose lease the first bridge could not hand over waits for its expiry
    # (lease_seconds and one renewal): allow for that, not only for the sends.
    await chat2.wait_sent(expected, timeout=40)
    await asyncio.sleep(0.3)
    for room in ("r1", "r2"):
        got = [d.post.ref.id for d in delivered_before if d.target.chat_id == room] + chat2.sent_to(room)
        assert got == [p.ref.id for p in posts], room


async def test_shutdown_finishes_in_flight_sends_within_deadline(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    net, chat = b.networks["fakenet"], b.chats["fakechat"]
    for room in range(5):
        await chat.command(str(room), "boss", "/follow alice.fake")
    chat.send_delay = 0.5
    await net.publish("alice.fake", "slow")
    await until(lambda: chat.in_flight == 5)
    started = time.monotonic()
    await b.stop(timeout=3)
    assert time.monotonic() - started < 3
    assert len(chat.sent) == 5  # finished, not cut off


async def test_shutdown_deadline_releases_stuck_sends(make_bridge: BridgeFactory, tmp_path) -> None:
    b = await make_bridge()
    net, chat = b.networks["fakenet"], b.chats["fakechat"]
    await chat.command("r", "boss", "/follow alice.fake")
    chat.send_delay = 60
    post = await net.publish("alice.fake", "stuck")
    await until(lambda: chat.in_flight == 1)
    started = time.monotonic()
    await b.stop(timeout=0.5)
    assert time.monotonic() - started < 2.5
    b2 = await make_bridge()  # the released send happens after the next start
    await b2.chats["fakechat"].wait_sent(1)
    assert b2.chats["fakechat"].sent_to("r") == [post.ref.id]


async def test_backfill_delivers_the_last_n(make_bridge: BridgeFactory) -> None:
    b = await make_bridge(backfill=2)
    net, chat = b.networks["fakenet"], b.chats["fakechat"]
    old = [net.make_post("alice.fake", f"old {i}") for i in range(4)]
    net.published.extend(old)
    await chat.command("r", "boss", "/follow alice.fake")
    await chat.wait_sent(2)
    await asyncio.sleep(0.2)
    assert chat.sent_to("r") == [old[2].ref.id, old[3].ref.id]


async def test_unfollow_stops_and_refollow_starts_from_now(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    net, chat = b.networks["fakenet"], b.chats["fakechat"]
    await chat.command("r", "boss", "/follow alice.fake")
    answer = await chat.command("r", "boss", "/unfollow alice.fake")
    assert answer.ok and "Stopped following" in answer.text
    await net.publish("alice.fake", "unseen")
    assert b.matcher.sources("fakenet") == frozenset()
    await chat.command("r", "boss", "/follow alice.fake")
    post = await net.publish("alice.fake", "seen")
    await chat.wait_sent(1)
    assert chat.sent_to("r") == [post.ref.id]


async def test_a_send_that_never_answers_is_retried(make_bridge: BridgeFactory, monkeypatch) -> None:
    monkeypatch.setattr("bridge.delivery.dispatcher.backoff", lambda attempts: 0.1)
    b = await make_bridge(send_timeout=1)
    net, chat = b.networks["fakenet"], b.chats["fakechat"]
    await chat.command("stuck", "boss", "/follow alice.fake")
    await chat.command("fine", "boss", "/follow alice.fake")
    chat.send_delay = 3.0  # the platform stops answering
    post = await net.publish("alice.fake", "into the void")
    await until(lambda: chat.in_flight == 2)
    chat.send_delay = 0.0  # and comes back
    await chat.wait_sent(2, timeout=5)
    await asyncio.sleep(0.3)
    assert chat.sent_to("stuck") == [post.ref.id] and chat.sent_to("fine") == [post.ref.id]


async def test_subscription_added_by_another_process_is_picked_up(make_bridge: BridgeFactory) -> None:
    """`bridge follow` on the command line writes the subscription while `bridge run` runs
    elsewhere; the running bridge reloads it within a few seconds."""
    from bridge.model import ChatTarget, Source, SourceKind

    b = await make_bridge()
    net, chat = b.networks["fakenet"], b.chats["fakechat"]
    await Store().add_subscription(
        Source("fakenet", SourceKind.FOLLOW, "id:alice.fake"), "alice.fake", ChatTarget("fakechat", "r"), "cli:operator"
    )
    await until(lambda: len(b.matcher) == 1, timeout=6)
    post = await net.publish("alice.fake", "seen by the running bridge")
    await chat.wait_sent(1)
    assert chat.sent_to("r") == [post.ref.id]
