"""The storage layer on its own: how SQLite is opened, and the ledger's shared decoded posts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tortoise import connections

from bridge.delivery.quiet import parse_quiet
from bridge.matching.filters import Filters
from bridge.model import ChatTarget, Post, Ref, Source, SourceKind
from bridge.storage.db import close_database, open_database
from bridge.storage.models import DeliveryRow, Destination, Draft, Notice, RoomSetting, Subscription
from bridge.storage.store import RoomNotice, Store, utcnow
from tests.fakes import author

ROOMS = (ChatTarget("fakechat", "a"), ChatTarget("fakechat", "b"))


def make_post(native_id: str, text: str) -> Post:
    return Post(
        ref=Ref("fakenet", native_id),
        author=author("alice.fake"),
        text=text,
        created_at=datetime(2026, 11, 26, tzinfo=UTC),
        url=f"https://fake.example/{native_id}",
    )


async def _pragma(name: str) -> Any:
    rows = await connections.get("default").execute_query_dict(f"PRAGMA {name}")
    return next(iter(rows[0].values()))


@pytest.mark.parametrize(
    ("query", "journal", "synchronous"),
    [
        ("", "wal", 1),  # NORMAL: no fsync per commit, safe against a killed process in WAL
        ("?synchronous=FULL", "wal", 2),
        ("?journal_mode=DELETE", "delete", 2),  # NORMAL would risk corruption outside WAL: FULL stays
    ],
)
async def test_sqlite_commits_in_wal_without_an_fsync_unless_asked(
    tmp_path: Any, query: str, journal: str, synchronous: int
) -> None:
    await open_database(f"sqlite://{tmp_path}/bridge.sqlite3{query}")
    try:
        assert await _pragma("journal_mode") == journal
        assert await _pragma("synchronous") == synchronous  # 1 NORMAL, 2 FULL
    finally:
        await close_database()


async def test_rooms_of_one_post_get_it_decoded_once_and_whole(db_url: str) -> None:
    await open_database(db_url)
    try:
        store = Store()
        posts = [make_post(f"p{i}", f"post {i} with a link example.com/{i}") for i in range(3)]
        created = await store.ingest("fakenet", [(p, [(1, ROOMS[0]), (2, ROOMS[1])]) for p in posts], {"k": "3"})
        assert created == 6
        first = await store.pending_for(str(ROOMS[0]), utcnow(), 10)
        second = await store.pending_for(str(ROOMS[1]), utcnow(), 10)
        assert [d.post for d in first] == posts == [d.post for d in second]
        assert all(a.post is b.post for a, b in zip(first, second, strict=True))  # one copy for both rooms
        assert [d.key for d in first] != [d.key for d in second]  # per (post, room)
        # A fresh store (a restart) reads the same posts back from the database.
        again = await Store().pending_for(str(ROOMS[1]), utcnow(), 10)
        assert [d.post for d in again] == posts
    finally:
        await close_database()


async def test_parts_recorded_come_back_with_the_delivery_and_map_to_the_post(db_url: str) -> None:
    await open_database(db_url)
    try:
        store = Store()
        post = make_post("p1", "an album and its text")
        await store.ingest("fakenet", [(post, [(1, ROOMS[0])])], {})
        [pending] = await store.pending_for(str(ROOMS[0]), utcnow(), 10)
        assert pending.parts == ()
        await store.record_parts(pending, [("11", "12")])  # part 0: an album of two
        await store.record_parts(pending, [("11", "12"), ("13",)])
        [again] = await Store().pending_for(str(ROOMS[0]), utcnow(), 10)  # after a restart
        assert again.parts == (("11", "12"), ("13",))
        for message in ("11", "12", "13"):
            found = await store.message_post(ROOMS[0], message)
            assert found is not None and found.post == post
    finally:
        await close_database()


async def test_a_chat_that_moved_takes_everything_of_its_room_along_and_nothing_of_others(db_url: str) -> None:
    """A Telegram group upgraded to a supergroup: subscriptions (with filters), waiting and held
    deliveries, the room's state and settings, pending notices and waiting drafts move to the
    new id, threads included; a chat whose id merely starts the same is left alone."""
    old, new, topic = ChatTarget("telegram", "-12"), ChatTarget("telegram", "-10012"), ChatTarget("telegram", "-12", "7")
    other = ChatTarget("telegram", "-123")  # "-12" is its prefix
    await open_database(db_url)
    try:
        store = Store()
        alice = Source("fakenet", SourceKind.FOLLOW, "id:alice")
        sub, _ = await store.add_subscription(alice, "alice.fake", old, "test", Filters(exclude=("hiring",), digest="daily"))
        await store.add_subscription(alice, "alice.fake", topic, "test")
        await store.add_subscription(alice, "alice.fake", other, "test")
        posts = [make_post("p1", "waiting"), make_post("p2", "held")]
        later = utcnow() + timedelta(hours=5)
        await store.ingest("fakenet", [(posts[0], [(sub.id, old), (sub.id, other)])], {})
        await store.ingest(
            "fakenet",
            [(posts[1], [(sub.id, old)])],
            {},
            held={(sub.id, str(old)): later},
            notices=[RoomNotice(old, "gap:x", "some posts were skipped")],
        )
        await store.set_quiet(old, parse_quiet("22:00-07:00 UTC"))
        await store.set_room_setting(old, approval="on", format="compact")
        await store.set_room_setting(topic, approval="all")
        await store.set_room_setting(other, approval="all")
        draft = await store.create_draft(
            expires_at=later, request={}, room=str(topic), author="telegram:1", network="fakenet", action="post", text="hi"
        )
        await store.set_draft_message(draft.id, "55")

        assert await store.move_destination(old, new) == 2

        moved_topic = str(ChatTarget("telegram", new.chat_id, "7"))
        subs = {s.destination: s for s in await store.subscriptions()}
        assert set(subs) == {new, ChatTarget("telegram", new.chat_id, "7"), other}
        assert subs[new].filters.exclude == ("hiring",) and subs[new].filters.digest == "daily"
        assert await store.room_setting(new) == ("on", "compact")
        assert await store.room_setting(ChatTarget("telegram", new.chat_id, "7")) == ("all", "full")
        assert await store.room_setting(other) == ("all", "full")
        assert not await RoomSetting.filter(destination__in=[str(old), str(topic)]).exists()
        assert str(new) in await store.quiet_hours() and not await Destination.filter(target=str(old)).exists()
        assert await Notice.filter(destination=str(new), key="gap:x").exists()
        rows = {(d.destination, d.status) for d in await DeliveryRow.all()}
        assert rows == {(str(new), "pending"), (str(other), "pending"), (str(new), "held")}
        [moved] = await store.unshown_drafts(new)
        assert moved.id == draft.id and moved.room == moved_topic and moved.message_id == ""
        assert (await Draft.get(id=draft.id)).text == "hi"
        assert await Subscription.filter(destination=str(other)).count() == 1
    finally:
        await close_database()


async def test_a_rooms_topic_per_feed_is_kept_and_replaced(db_url: str) -> None:
    await open_database(db_url)
    try:
        store = Store()
        alice, bob = Source("fakenet", SourceKind.FOLLOW, "id:alice"), Source("fakenet", SourceKind.FOLLOW, "id:bob")
        room = ChatTarget("telegram", "-1001")
        assert await store.topic_id(room, alice) == ""
        await store.set_topic(room, alice, "@alice.fake", "7")
        await store.set_topic(room, bob, "@bob.fake", "9")
        await store.set_topic(ChatTarget("discord", "55"), alice, "@alice.fake", "1234")
        # A restart (a fresh store) reads the same; a topic made again replaces the old id.
        assert await Store().topic_id(room, alice) == "7"
        await store.set_topic(room, alice, "@alice.fake", "11")
        assert [await store.topic_id(room, s) for s in (alice, bob)] == ["11", "9"]
        assert await store.topic_id(ChatTarget("discord", "55"), alice) == "1234"
        await store.set_room_setting(room, format="compact")
        assert await store.room_formats() == {str(room): "compact"}
        assert await store.room_setting(room) == ("off", "compact")
    finally:
        await close_database()


async def test_adapter_state_compare_and_set_refuses_a_write_over_a_newer_value(db_url: str) -> None:
    await open_database(db_url)
    try:
        store = Store()
        assert await store.replace_state("bluesky", "session", None, "s1")  # first one in
        assert not await store.replace_state("bluesky", "session", None, "s1-other")  # another was first
        assert await store.replace_state("bluesky", "session", "s1", "s2")
        # a worker that still believes s1 is saved cannot overwrite s2: it must re-read
        assert not await store.replace_state("bluesky", "session", "s1", "s2-stale")
        assert await store.load_state("bluesky", "session") == "s2"
        # scoped per adapter
        assert await store.replace_state("bluesky_sales", "session", None, "other account")
        assert await store.load_state("bluesky", "session") == "s2"
    finally:
        await close_database()
