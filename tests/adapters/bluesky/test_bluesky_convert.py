"""Pure parts of the adapter, table-driven: handles, the 300-grapheme limit, outgoing facets,
and building Posts from Bluesky JSON, including broken JSON that must not crash a feed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.bluesky import BlueskyAdapter
from adapters.bluesky.convert import parse_time, post_from_feed_item, post_from_record, post_from_view
from adapters.bluesky.richtext import build_facets, check_text, links_from_facets
from tests.adapters.bluesky.conftest import FakeHost

ADAPTER = BlueskyAdapter({"identifier": "team.test", "password": "x"}, FakeHost())


@pytest.mark.parametrize(
    ("handle", "owned"),
    [
        ("alice.bsky.social", True),
        ("@alice.bsky.social", True),
        ("alice.test", True),
        ("Alice.Example.COM", True),
        ("did:plc:ewvi7nxzyoun6zhxrhs64oiz", True),
        ("did:web:example.com", True),
        ("@alice@mastodon.social", False),
        ("alice@mastodon.social", False),
        ("alice", False),
        ("not a handle", False),
        ("-bad-.test", False),
        ("did:plc:short", False),
        ("", False),
    ],
)
def test_owns_handle(handle: str, owned: bool) -> None:
    assert ADAPTER.owns_handle(handle) is owned


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("hello", None),
        ("x" * 300, None),
        ("x" * 301, "the text is 301 graphemes; Bluesky allows 300"),
        ("👩‍👩‍👧‍👦" * 100, None),  # one grapheme each: 7 code points, 25 bytes
        ("👩‍👩‍👧‍👦" * 150, "the text is 3750 bytes; Bluesky allows 3000"),  # the lexicon's byte limit
        ("🇺🇸" * 301, "the text is 301 graphemes; Bluesky allows 300"),
        ("e\u0301" * 301, "the text is 301 graphemes; Bluesky allows 300"),  # e + combining accent
        ("", "the text is empty"),
        ("  \n ", "the text is empty"),
    ],
)
def test_check_text(text: str, problem: str | None) -> None:
    assert check_text(text) == problem
    assert ADAPTER.check_text(text) == problem


async def test_outgoing_facets_have_utf8_byte_offsets() -> None:
    text = "café ☕ @bob.test see https://example.com/ü and #launch"

    async def resolve(handle: str) -> str | None:
        return {"bob.test": "did:plc:bob"}.get(handle)

    facets = await build_facets(text, resolve)
    raw = text.encode()
    spans = {
        f["features"][0]["$type"].rsplit("#", 1)[-1]: raw[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode()
        for f in facets
    }
    assert spans == {"mention": "@bob.test", "link": "https://example.com/ü", "tag": "#launch"}
    assert [f["features"][0].get("did") for f in facets if "mention" in f["features"][0]["$type"]] == ["did:plc:bob"]

    async def nobody(handle: str) -> str | None:
        return None

    assert all("mention" not in f["features"][0]["$type"] for f in await build_facets("hi @ghost.test", nobody))


def test_links_convert_byte_offsets_and_skip_broken_facets() -> None:
    text = "日本 https://example.com/x end"
    start = len("日本 ".encode())
    end = start + len(b"https://example.com/x")
    link = {"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com/x"}
    facets = [
        {"index": {"byteStart": start, "byteEnd": end}, "features": [link]},
        {"index": {"byteStart": 1, "byteEnd": 4}, "features": [link]},  # inside a character
        {"index": {"byteStart": 5, "byteEnd": 999}, "features": [link]},  # past the end
        {"index": {"byteStart": "a", "byteEnd": None}, "features": [link]},
        {"features": [link]},
        "not a facet",
        {"index": {"byteStart": 0, "byteEnd": 3}, "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "日"}]},
    ]
    links = links_from_facets(text, facets)
    assert [(text[link.start : link.end], link.url) for link in links] == [
        ("日", "https://bsky.app/hashtag/日"),
        ("https://example.com/x", "https://example.com/x"),
    ]


@pytest.mark.parametrize(
    ("created", "indexed", "expected"),
    [
        ("2024-05-01T12:00:00.000Z", None, datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T14:00:00+02:00", None, datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00", None, datetime(2024, 5, 1, 12, tzinfo=UTC)),  # no zone: UTC
        ("yesterday", "2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        (None, "2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ],
)
def test_times_are_aware_utc_with_fallbacks(created: str | None, indexed: str | None, expected: datetime) -> None:
    assert parse_time(created, indexed) == expected


def test_unparseable_time_falls_back_to_now() -> None:
    assert abs(parse_time("not a date", 12345) - datetime.now(UTC)) < timedelta(seconds=5)


VIEW = {
    "uri": "at://did:plc:alice/app.bsky.feed.post/3kabc",
    "cid": "bafy",
    "author": {"did": "did:plc:alice", "handle": "alice.test", "displayName": "Alice", "avatar": "https://cdn/a.jpg"},
    "record": {
        "$type": "app.bsky.feed.post",
        "text": "hello",
        "createdAt": "2024-05-01T12:00:00Z",
        "reply": {"root": {"uri": "at://r", "cid": "c"}, "parent": {"uri": "at://did:plc:bob/app.bsky.feed.post/1", "cid": "c"}},
    },
    "embed": {
        "$type": "app.bsky.embed.recordWithMedia#view",
        "media": {
            "$type": "app.bsky.embed.images#view",
            "images": [{"fullsize": "https://cdn/f.jpg", "thumb": "https://cdn/t.jpg", "alt": "cat"}],
        },
        "record": {
            "$type": "app.bsky.embed.record#view",
            "record": {
                "$type": "app.bsky.embed.record#viewRecord",
                "uri": "at://did:plc:bob/app.bsky.feed.post/2",
                "author": {"did": "did:plc:bob", "handle": "bob.test"},
                "value": {"text": "quoted text"},
            },
        },
    },
    "indexedAt": "2024-05-01T12:00:01Z",
}


def test_post_from_view() -> None:
    post = post_from_view(VIEW)
    assert post is not None
    assert post.url == "https://bsky.app/profile/alice.test/post/3kabc"
    assert post.author.label == "Alice (@alice.test)" and post.author.avatar_url == "https://cdn/a.jpg"
    assert post.reply_to is not None and post.reply_to.id == "at://did:plc:bob/app.bsky.feed.post/1"
    assert [(m.kind, m.url, m.alt) for m in post.media] == [("image", "https://cdn/f.jpg", "cat")]
    assert post.quote is not None and (post.quote.text, post.quote.author.handle) == ("quoted text", "bob.test")
    assert post.quote.url == "https://bsky.app/profile/bob.test/post/2"


def test_repost_feed_item_has_the_reposter_and_the_repost_time() -> None:
    item = {
        "post": VIEW,
        "reason": {
            "$type": "app.bsky.feed.defs#reasonRepost",
            "by": {"did": "did:plc:carol", "handle": "carol.test"},
            "indexedAt": "2024-06-01T00:00:00Z",
        },
    }
    post = post_from_feed_item(item)
    assert post is not None and post.author.id == "did:plc:alice"
    assert post.reposted_by is not None and post.reposted_by.handle == "carol.test"
    assert post.created_at == datetime(2024, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"uri": "not-at-uri"},
        {"uri": "at://did:plc:x/app.bsky.feed.post/1", "record": "garbage", "author": None, "embed": 5},
        {"uri": "at://did:plc:x/app.bsky.feed.post/1", "record": {"text": 7, "facets": "x", "createdAt": 3}},
        {"uri": "at://did:plc:x/app.bsky.feed.post/1", "embed": {"$type": "app.bsky.embed.images#view", "images": [None, {}]}},
    ],
)
def test_broken_views_do_not_crash(broken: dict) -> None:
    post = post_from_view(broken)
    if post is not None:
        assert post.ref.id.startswith("at://") and post.created_at.tzinfo is not None


def test_post_from_raw_record_links_images_to_the_blob() -> None:
    record = {
        "text": "raw",
        "createdAt": "2024-05-01T12:00:00Z",
        "embed": {"$type": "app.bsky.embed.images", "images": [{"alt": "a", "image": {"ref": {"$link": "bafkrei"}}}]},
    }
    from bridge.model import Author

    post = post_from_record(
        "at://did:plc:x/app.bsky.feed.post/9", record, Author("did:plc:x", "x.test"), blob_url=lambda d, c: f"blob:{d}:{c}"
    )
    assert [(m.url, m.alt) for m in post.media] == [("blob:did:plc:x:bafkrei", "a")]
