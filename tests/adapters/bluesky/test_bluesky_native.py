"""The post's own reference travels with it: a like, repost or reply of a post the feed gave
(with its CID and thread root) needs no second lookup; a post stored before it existed still
works through the lookup. Record keys are TIDs that only grow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.bluesky import BlueskyAdapter
from adapters.bluesky.convert import post_from_view
from adapters.bluesky.tid import Tids, tid_time
from bridge.errors import Transient
from bridge.storage.serialize import post_from_json, post_to_json
from tests.fakehost import FakeHost

URI = "at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/app.bsky.feed.post/3kabc"
ROOT = {"uri": "at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/app.bsky.feed.post/3kroot", "cid": "bafyroot"}


def view(**record: Any) -> dict[str, Any]:
    return {
        "uri": URI,
        "cid": "bafypost",
        "author": {"did": "did:plc:ewvi7nxzyoun6zhxrhs64oiz", "handle": "alice.test"},
        "record": {"text": "hi", "createdAt": "2026-01-01T00:00:00Z", **record},
    }


class NoLookups:
    """An Api that fails the test's expectation loudly if the adapter asks the network."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def query(self, nsid: str, **_: Any) -> dict[str, Any]:
        self.calls.append(nsid)
        raise Transient("no lookups expected")


async def test_a_reply_in_a_thread_carries_its_cid_and_root_and_needs_no_lookup() -> None:
    post = post_from_view(view(reply={"root": ROOT, "parent": ROOT}))
    assert post is not None and post.native == f"bafypost {ROOT['uri']} {ROOT['cid']}"
    adapter = BlueskyAdapter({"identifier": "team.test", "password": "x"}, FakeHost())
    adapter.api = api = NoLookups()  # type: ignore[assignment]
    stored = post_from_json(post_to_json(post))  # as the ledger keeps and hands it back
    ref, root = await adapter._strong_refs(stored)
    assert ref == {"uri": URI, "cid": "bafypost"} and root == ROOT
    assert api.calls == []


async def test_a_post_stored_before_native_refs_falls_back_to_the_lookup() -> None:
    post = post_from_view(view())
    assert post is not None and post.native == "bafypost"
    old = post_to_json(post)
    del old["native"]  # a row written by an older version
    stored = post_from_json(old)
    assert stored.native == ""
    adapter = BlueskyAdapter({"identifier": "team.test", "password": "x"}, FakeHost())
    adapter.api = api = NoLookups()  # type: ignore[assignment]
    try:
        await adapter._strong_refs(stored)
    except Transient:
        pass
    assert api.calls == ["app.bsky.feed.getPosts"]


def test_an_account_named_apart_from_its_type_names_its_posts() -> None:
    adapter = BlueskyAdapter({"identifier": "team.test", "password": "x"}, FakeHost(name="bluesky_sales"))
    assert adapter.name == "bluesky_sales"


def test_record_keys_are_tids_that_grow_and_tell_their_time() -> None:
    tids = Tids()
    keys = [tids.next() for _ in range(1000)]
    assert keys == sorted(keys) and len(set(keys)) == 1000
    assert all(len(k) == 13 for k in keys)
    made = tid_time(keys[0])
    assert made is not None and abs(made - datetime.now(UTC)) < timedelta(seconds=5)
    assert tid_time("not-a-tid") is None
