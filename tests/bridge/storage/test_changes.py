"""Settings changes made elsewhere reach a running bridge: the revision every settings write
bumps, the feed that waits for it (LISTEN/NOTIFY on Postgres, a poll on SQLite), and a bridge
that applies changes another process wrote: switching a subscription off, filters, quiet hours,
pausing and resuming a room."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import asyncpg

from bridge.delivery.quiet import parse_quiet
from bridge.matching.filters import Filters
from bridge.model import ChatEvent, ChatTarget, ChatUser, EventKind, Source, SourceKind
from bridge.storage import changes
from bridge.storage.changes import ChangeFeed
from bridge.storage.db import close_database, open_database
from bridge.storage.store import Store
from tests.conftest import BridgeFactory, until

ROOM = ChatTarget("fakechat", "r")
ALICE = Source("fakenet", SourceKind.FOLLOW, "id:alice.fake")


async def test_every_settings_write_moves_the_revision_and_a_waiting_feed_sees_it(db_url: str) -> None:
    await open_database(db_url)
    feed = ChangeFeed()
    try:
        await feed.start()
        store = Store()
        assert await changes.current() == 0
        writes = [
            lambda: store.add_subscription(ALICE, "alice.fake", ROOM, "test"),
            lambda: store.set_filters(1, Filters(replies=False)),
            lambda: store.set_quiet(ROOM, parse_quiet("22:00-07:00 UTC")),
            lambda: store.pause_destination(ROOM, "bot removed"),
            lambda: store.resume_destination(ROOM),
            lambda: store.disable_subscription(1),
            lambda: store.add_subscription(ALICE, "alice.fake", ROOM, "test"),  # re-enabled
            lambda: store.move_destination(ROOM, ChatTarget("fakechat", "moved")),
        ]
        seen = 0
        for n, write in enumerate(writes, 1):
            waiting = asyncio.create_task(feed.wait(seen))
            await asyncio.sleep(0.05)
            assert not waiting.done(), f"write {n}: the feed woke before anything changed"
            started = time.monotonic()
            await write()
            seen = await asyncio.wait_for(waiting, 3)
            assert seen == n, f"write {n} left the revision at {seen}"
            # Postgres notifies at commit; SQLite is polled twice a second.
            assert time.monotonic() - started < (0.5 if "postgres" in db_url else 1.0)
        assert store.made == set(range(1, len(writes) + 1))
        # Reads, and a resume of a room that is not paused, change nothing.
        await store.subscriptions(ROOM)
        assert not await store.resume_destination(ROOM)
        assert await changes.current() == len(writes)
    finally:
        await feed.close()
        await close_database()


async def test_a_dropped_listening_connection_falls_back_to_polling(postgres_url: str) -> None:
    await open_database(postgres_url)
    feed = ChangeFeed()
    try:
        await feed.start()
        assert feed._listener is not None
        admin = await asyncpg.connect(postgres_url.replace("postgres://", "postgresql://", 1))
        try:  # the server ends the listening backend (a restart, an idle-session killer)
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        await until(lambda: feed._listener is None, timeout=5)
        waiting = asyncio.create_task(feed.wait(0))
        await Store().add_subscription(ALICE, "alice.fake", ROOM, "test")
        assert await asyncio.wait_for(waiting, 5) == 1
    finally:
        await feed.close()
        await close_database()


async def test_changes_written_by_another_process_reach_the_running_bridge(db_url: str, make_bridge: BridgeFactory) -> None:
    """Another Store is another process's view: its revisions are not the bridge's own. Each
    kind of change must take effect in the running bridge, not only in the database."""
    b = await make_bridge(db_url)
    net, chat = b.networks["fakenet"], b.chats["fakechat"]
    other = Store()
    sub, _ = await other.add_subscription(ALICE, "alice.fake", ROOM, "cli:operator")
    await until(lambda: len(b.matcher) == 1, timeout=3)

    await other.set_filters(sub.id, replace(sub.filters, exclude=("hiring",)))
    await until(lambda: [r.filters.exclude for r in b.matcher.routes(ALICE)] == [("hiring",)], timeout=3)
    await net.publish("alice.fake", "we are hiring")
    kept = await net.publish("alice.fake", "pricing news")
    await chat.wait_sent(1)

    await other.pause_destination(ROOM, "paused from the command line")
    await until(lambda: str(ROOM) in b._paused, timeout=3)
    await net.publish("alice.fake", "while paused")
    await asyncio.sleep(0.3)

    await other.resume_destination(ROOM)
    await until(lambda: str(ROOM) not in b._paused, timeout=3)

    await other.disable_subscription(sub.id)  # `bridge unfollow`: QuerySet.update, no updated_at
    await until(lambda: len(b.matcher) == 0, timeout=3)
    await net.publish("alice.fake", "after unfollow")
    await asyncio.sleep(0.3)
    assert chat.sent_to(ROOM.chat_id) == [kept.ref.id]


async def test_the_bridge_does_not_reload_for_its_own_changes(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    reloads = 0
    real = b.refresh_routes

    async def counting() -> None:
        nonlocal reloads
        await real()
        reloads += 1  # counted once done: the matcher is read right after

    b.refresh_routes = counting  # type: ignore[method-assign]
    answer = await b.commands.handle(_command("follow", "alice.fake"))
    assert answer.ok, answer.text
    await asyncio.sleep(1.2)  # longer than the SQLite poll
    assert reloads == 0 and len(b.matcher) == 1
    await Store().disable_subscription(1)
    await until(lambda: reloads == 1, timeout=3)
    assert len(b.matcher) == 0


async def test_a_subscription_made_while_the_settings_reload_keeps_its_posts(make_bridge: BridgeFactory) -> None:
    """A reload read the subscriptions just before this process added one, and swapped its
    matcher in just after the new route went into the old one: the room never got a post,
    and since the revision was the bridge's own, no later reload brought the route back."""
    b = await make_bridge()
    net, chat = b.networks["fakenet"], b.chats["fakechat"]
    read, go = asyncio.Event(), asyncio.Event()
    real = b.store.subscriptions

    async def slow(*args: Any, **kwargs: Any) -> Any:
        rows = await real(*args, **kwargs)
        if not go.is_set():  # only the reload below waits: the rows it read predate the follow
            read.set()
            await go.wait()
        return rows

    b.store.subscriptions = slow  # type: ignore[method-assign]
    reload = asyncio.create_task(b.refresh_routes())
    await asyncio.wait_for(read.wait(), 5)
    answer = await b.commands.handle(_command("follow", "alice.fake"))
    assert answer.ok, answer.text
    assert len(b.matcher) == 1
    go.set()
    await asyncio.wait_for(reload, 5)
    assert [r.destination for r in b.matcher.routes(ALICE)] == [ROOM]
    post = await net.publish("alice.fake", "after the reload")
    await chat.wait_sent(1)
    assert chat.sent_to(ROOM.chat_id) == [post.ref.id]


def _command(verb: str, args: str) -> ChatEvent:
    return ChatEvent(EventKind.COMMAND, ROOM, ChatUser("fakechat", "boss", "Boss", is_room_admin=True), command=verb, args=args)
