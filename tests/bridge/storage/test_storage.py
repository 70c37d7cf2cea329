"""The storage layer on its own: how SQLite is opened, and the ledger's shared decoded posts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from tortoise import connections

from bridge.model import ChatTarget, Post, Ref
from bridge.storage.db import close_database, open_database
from bridge.storage.store import Store, utcnow
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
