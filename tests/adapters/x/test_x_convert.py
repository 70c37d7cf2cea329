"""X API v2 payloads into Posts (adapters/x/convert.py), including what a hostile or broken
payload holds: missing fields, unknown entities and types, offsets that do not fit the text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.x.convert import Includes, entry_time, is_summoned, native_id, post_from, post_from_dm, post_url
from bridge.model import Author

ME = "1000"
ALICE = {"id": "2000", "username": "alice", "name": "Alice Prospect"}
BOB = {"id": "3000", "username": "bob", "name": "Bob"}


def tweet(**fields: Any) -> dict[str, Any]:
    return {"id": "1500000000000000001", "text": "hello", "author_id": "2000", "created_at": "2026-12-02T10:00:00.000Z", **fields}


def convert(t: dict[str, Any], includes: dict[str, Any] | None = None, reason: str = "") -> Any:
    payload = {"data": [t], "includes": includes if includes is not None else {"users": [ALICE, BOB]}}
    return post_from("x", t, Includes(payload), ME, reason)


def test_links_are_expanded_and_the_links_point_into_the_text() -> None:
    t = tweet(
        text="see https://t.co/a1 and https://t.co/b2 😀 https://t.co/a1",
        entities={
            "urls": [
                {"url": "https://t.co/a1", "expanded_url": "https://example.com/a", "start": 4, "end": 19},
                {"url": "https://t.co/b2", "unwound_url": "https://example.com/final", "expanded_url": "https://bit.ly/x"},
            ]
        },
    )
    post = convert(t)
    assert post.text == "see https://example.com/a and https://example.com/final 😀 https://example.com/a"
    assert len(post.links) == 3
    for link in post.links:
        assert post.text[link.start : link.end] == link.url
    assert post.url == "https://x.com/alice/status/1500000000000000001"
    assert post.author == Author("2000", "alice", "Alice Prospect", url="https://x.com/alice")


@pytest.mark.parametrize(
    "entities",
    [
        {"urls": [{"url": "https://t.co/zz", "expanded_url": "https://example.com", "start": 900, "end": -4}]},  # bad offsets
        {"urls": [{"url": "https://t.co/zz", "expanded_url": "javascript:alert(1)"}]},  # not a web link: kept short
        {"urls": [{"expanded_url": "https://example.com"}, "junk", None]},  # entities without url
        {"cashtags": [{"tag": "ACME"}], "annotations": [{"type": "Brand"}], "hologram": {"x": 1}},  # unknown entities
        ["not", "a", "dict"],
        "entities",
    ],
)
def test_hostile_entities_never_break_the_text(entities: Any) -> None:
    post = convert(tweet(text="news 🎉 https://t.co/zz ok", entities=entities))
    assert post is not None
    assert post.text.startswith("news 🎉 ") and post.text.endswith(" ok")
    assert "javascript:" not in post.text
    for link in post.links:
        assert post.text[link.start : link.end] == link.url and link.url.startswith("https://")


@pytest.mark.parametrize("tid", [None, "", "abc", "12a", 3.5, {"id": 1}])
def test_a_post_without_a_usable_id_is_not_a_post(tid: Any) -> None:
    assert convert(tweet(id=tid)) is None


def test_missing_fields_give_a_post_that_says_what_it_does_not_know() -> None:
    post = convert({"id": "1500000000000000002"}, includes={})
    assert post is not None and post.text == "" and post.author.handle == "unknown"
    assert post.url == "https://x.com/i/status/1500000000000000002"
    assert post.created_at.tzinfo is not None  # no created_at: now, aware
    unknown = convert(tweet(author_id="4242", created_at="yesterday"), includes={"users": "nope"})
    assert unknown.author.handle == "4242" and unknown.author.url == "https://x.com/i/user/4242"


def test_media_of_unknown_kinds_or_without_https_urls() -> None:
    t = tweet(attachments={"media_keys": ["3_1", "3_2", "3_3", "3_missing", 7]})
    includes = {
        "users": [ALICE],
        "media": [
            {"media_key": "3_1", "type": "photo", "url": "https://pbs.twimg.com/a.jpg", "alt_text": "team"},
            {"media_key": "3_2", "type": "hologram", "preview_image_url": "https://pbs.twimg.com/b.jpg"},
            {"media_key": "3_3", "type": "photo", "url": "http://insecure.example/c.jpg"},
            "junk",
        ],
    }
    post = convert(t, includes)
    assert [(m.kind, m.url, m.alt) for m in post.media] == [
        ("image", "https://pbs.twimg.com/a.jpg", "team"),
        ("image", "https://pbs.twimg.com/b.jpg", ""),
    ]
    assert convert(tweet(attachments="3_1"), includes).media == ()


def test_a_repost_shows_the_original_by_its_author_and_a_quote_in_brief() -> None:
    original = {"id": "1400000000000000000", "text": "the original", "author_id": "3000"}
    repost = tweet(text="RT @bob: the original", referenced_tweets=[{"type": "retweeted", "id": original["id"]}])
    post = convert(repost, {"users": [ALICE, BOB], "tweets": [original]})
    assert post.author.handle == "bob" and post.reposted_by is not None and post.reposted_by.handle == "alice"
    assert post.text == "the original" and post.url == "https://x.com/bob/status/1400000000000000000"
    # The original is not in includes: the repost as X sent it.
    alone = convert(repost, {"users": [ALICE]})
    assert alone.reposted_by is None and alone.text == "RT @bob: the original"
    quoting = tweet(text="look", referenced_tweets=[{"type": "quoted", "id": original["id"]}, {"type": "mystery", "id": "9"}])
    q = convert(quoting, {"users": [ALICE, BOB], "tweets": [original]}).quote
    assert q is not None and q.text == "the original" and q.url.endswith("/bob/status/1400000000000000000")
    assert convert(tweet(referenced_tweets={"type": "quoted"})) is not None  # not a list: ignored


@pytest.mark.parametrize(
    ("fields", "includes", "summoned"),
    [
        ({"entities": {"mentions": [{"id": ME, "username": "teamaccount"}]}}, {}, True),
        ({"entities": {"mentions": [{"id": "5", "username": "someone"}]}}, {}, False),
        ({"referenced_tweets": [{"type": "quoted", "id": "77"}]}, {"tweets": [{"id": "77", "author_id": ME}]}, True),
        ({"referenced_tweets": [{"type": "quoted", "id": "77"}]}, {"tweets": [{"id": "77", "author_id": "5"}]}, False),
        ({"referenced_tweets": [{"type": "quoted", "id": "77"}]}, {}, False),  # the quoted post is unknown
        ({"entities": {"mentions": "teamaccount"}}, {}, False),
    ],
)
def test_who_may_be_replied_to_under_x_rules_of_2026(fields: dict[str, Any], includes: dict[str, Any], summoned: bool) -> None:
    post = convert(tweet(**fields), {"users": [ALICE], **includes})
    assert is_summoned(post) is summoned
    assert native_id(post) == "1500000000000000001"


def test_direct_messages_and_hostile_events() -> None:
    sender = Author("2000", "alice", "Alice")
    dm = post_from_dm("x", {"id": "55", "text": "hi https://t.co/q", "dm_conversation_id": "1000-2000"}, sender)
    assert dm is not None and dm.ref.id == "dm:55" and dm.conversation == "1000-2000" and dm.reason == "dm"
    assert post_from_dm("x", {"text": "no id"}, sender) is None
    assert post_from_dm("x", {"id": "5x"}, sender) is None
    assert post_from_dm("x", {"id": "56"}, sender).conversation == "2000"


def test_entry_time_orders_by_snowflake_and_falls_back_on_a_foreign_id() -> None:
    at = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    ms = int(at.timestamp() * 1000) - 1288834974657
    first, second = str(ms << 22), str((ms << 22) + 1)
    assert entry_time(first, at) < entry_time(second, at)
    assert entry_time("42", at) == at and entry_time("not-a-number", at) == at


def test_post_urls_never_carry_what_is_not_a_username() -> None:
    assert post_url("alice", "1") == "https://x.com/alice/status/1"
    assert post_url("", "1") == post_url("evil/../x", "1") == "https://x.com/i/status/1"
