"""X's weighted length (adapters/x/text.py) and the handles a user may type
(adapters/x/handles.py), table-driven."""

from __future__ import annotations

import pytest

from adapters.x.handles import BadHandle, looks_like_x, parse_handle
from adapters.x.text import check_length, find_urls, has_url, weighted_length


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("", 0),
        ("Hello, world!", 13),
        ("a" * 280, 280),
        ("日本語のテキスト", 16),  # CJK and kana weigh 2
        ("한국어", 6),  # Hangul weighs 2
        ("Привет мир", 10),  # Cyrillic weighs 1
        ("“quoted” — dash…", 17),  # general punctuation U+2010-U+201F weighs 1; U+2026 weighs 2
        ("e\u0301", 1),  # NFC: e + combining acute is é
        ("😀", 2),
        ("👍🏽", 2),  # skin tone modifier: one emoji
        ("👨‍👩‍👧‍👦", 2),  # ZWJ family: one emoji
        ("🇫🇷", 2),  # flag
        ("1️⃣", 2),  # keycap
        ("https://example.com", 23),
        ("https://example.com/a/very/long/path/that/goes/on/and/on?with=query&and=more", 23),
        ("see https://example.com.", 4 + 23 + 1),  # the full stop is not part of the link
        ("example.com", 23),
        ("read docs.python.org/3/library today", 5 + 23 + 6),
        ("bit.ly/abc", 23),  # country TLD with a path
        ("file.py is a module", 19),  # country TLD without a path: not a link
        ("(https://en.wikipedia.org/wiki/Foo_(bar))", 1 + 23 + 1),
        ("a@example.com", 13),  # an email address is not a link
        ("x" * 257 + " https://example.com", 281),
    ],
)
def test_weighted_length(text: str, length: int) -> None:
    assert weighted_length(text) == length


def test_the_refusal_carries_the_count() -> None:
    assert check_length("a" * 280) is None
    assert check_length("字" * 140) is None
    too_long = check_length("字" * 141)
    assert too_long is not None and too_long.length == 282
    assert too_long.message == (
        "Too long for X: 282 of 280 characters (links count 23, CJK characters and emoji 2). Shorten it by 2."
    )


def test_urls_decide_the_post_price() -> None:
    assert has_url("our report: https://example.com/q3")
    assert has_url("see example.com")
    assert not has_url("no link here, just words.")
    assert find_urls("go to https://a.io/x, then b.com!") == [(6, 20), (27, 32)]


@pytest.mark.parametrize(
    ("typed", "username"),
    [
        ("x:alice", "alice"),
        ("X:Alice_99", "Alice_99"),
        ("twitter:bob", "bob"),
        ("@carol", "carol"),
        ("  @carol  ", "carol"),
        ("https://x.com/dave", "dave"),
        ("https://twitter.com/dave/", "dave"),
        ("x.com/erin?lang=en", "erin"),
        ("https://mobile.twitter.com/frank", "frank"),
        ("https://www.x.com/@gina", "gina"),
        ("https://x.com/harry/with_replies", "harry"),
        ("x:https://x.com/ivy", "ivy"),
    ],
)
def test_handles(typed: str, username: str) -> None:
    h = parse_handle(typed)
    assert h.username == username
    assert str(h) == f"x:{username}" and h.key == username.lower()


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("@alice@mastodon.social", "is a Mastodon address, not an X account; X handles look like @alice or x:alice"),
        ("x:", "an X handle is missing; write it as @alice or x:alice"),
        ("@this_is_far_too_long", "X usernames are at most 15 characters (this one has 20)"),
        ("x:al-ice", "X usernames hold only letters, digits and _ (like @alice_99)"),
        ("https://x.com/alice/status/123", "links to a post; to follow its author use x:alice"),
        ("https://x.com/home", "is not a profile link; give https://x.com/<username> or x:<username>"),
        ("https://x.com/", "is not a profile link"),
        ("https://bsky.app/profile/alice", "is not an x.com or twitter.com link"),
    ],
)
def test_bad_handles_say_why(typed: str, message: str) -> None:
    with pytest.raises(BadHandle) as e:
        parse_handle(typed)
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("typed", "is_x"),
    [
        ("x:alice", True),
        ("@alice", True),
        ("https://twitter.com/alice", True),
        ("x.com/alice", True),
        ("@alice@mastodon.social", False),
        ("alice.bsky.social", False),
        ("@alice.bsky.social", False),
        ("alice", False),
    ],
)
def test_looks_like_x(typed: str, is_x: bool) -> None:
    assert looks_like_x(typed) is is_x
