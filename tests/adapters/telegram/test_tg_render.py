"""Rendering of relayed posts into Telegram HTML: escaping, links, splitting, captions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adapters.telegram.htmlsplit import html_visible_length, split_html, truncate_html
from adapters.telegram.render import MAX_CAPTION, MAX_TEXT, keyboard, plan_post, post_html, text_html
from bridge.model import Author, Button, ButtonAction, Link, Media, Post, QuotedPost, Ref
from tests.emulators.telegram import parse_html

ALICE = Author("did:alice", "alice.test", "Alice <Admin> & Co", url="https://bsky.app/profile/alice.test")


def make_post(text: str, **fields: object) -> Post:
    return Post(
        ref=Ref("bluesky", "p1"),
        author=ALICE,
        text=text,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        url="https://bsky.app/profile/alice.test/post/p1",
        **fields,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    "text",
    [
        "a < b && c > d",
        "</b> closing a tag that was never opened",
        '<a href="javascript:alert(1)">click</a> &amp; &lt;',
        "<b>bold</b> <i>not really</i> &#128512; &nosuch;",
    ],
)
def test_network_text_is_shown_verbatim(text: str) -> None:
    plain, _ = parse_html(text_html(text))
    assert plain == text


def test_links_render_over_their_spans() -> None:
    text = "see example.com & <more>"
    rendered = text_html(text, (Link(4, 15, "https://example.com/?a=1&b=2"),))
    plain, entities = parse_html(rendered)
    assert plain == text
    assert entities == [{"type": "text_link", "offset": 4, "length": 11, "url": "https://example.com/?a=1&b=2"}]


def test_post_shows_author_text_quote_repost_and_original_link() -> None:
    post = make_post(
        "hello </b>",
        quote=QuotedPost(Author("did:bob", "bob.test", "Bob"), "quoted <text> " * 40, "https://bsky.app/q"),
        reposted_by=Author("did:carol", "carol.test", "Carol & Sons"),
    )
    plain, entities = parse_html(post_html(post))
    assert plain.startswith("Alice <Admin> & Co @alice.test\n🔁 reposted by Carol & Sons @carol.test")
    assert "hello </b>" in plain
    assert "💬 Bob @bob.test\nquoted <text>" in plain
    assert len(plain.split("quoted <text>")) < 30  # the quote is brief
    urls = [e["url"] for e in entities if e["type"] == "text_link"]
    assert "https://bsky.app/profile/alice.test" in urls
    assert "https://bsky.app/profile/alice.test/post/p1" in urls


def test_5000_character_text_is_split_without_breaking_markup() -> None:
    word = "x<&>y "
    text = (word * 900)[:5000]
    post = make_post(text, links=(Link(4090, 4110, "https://example.com/long"),))
    pieces = plan_post(post)
    assert len(pieces) == 2
    seen = ""
    for piece in pieces:
        plain, _ = parse_html(piece.text)  # every part is valid Telegram HTML on its own
        assert len(plain) <= MAX_TEXT
        seen += plain
    assert text in seen  # nothing lost
    assert "".join(seen.split()).count("x<&>y") == text.count("x<&>y")


def test_split_reopens_tags_across_parts() -> None:
    markup = "<b>" + "a" * 30 + "</b>"
    parts = split_html(markup, 10)
    assert parts == ["<b>" + "a" * 10 + "</b>"] * 3
    assert split_html("<i>ab &amp; cd</i>", 4) == ["<i>ab </i>", "<i>&amp; cd</i>"]


def test_split_never_cuts_an_entity_and_counts_utf16() -> None:
    markup = "&lt;" * 5 + "😀" * 5
    parts = split_html(markup, 4)
    assert "".join(parse_html(p)[0] for p in parts) == "<<<<<😀😀😀😀😀"
    assert all(html_visible_length(p) <= 4 for p in parts)


def test_truncate_keeps_markup_balanced() -> None:
    short = truncate_html("<b>" + "z" * 50 + "</b>", 10)
    plain, _ = parse_html(short)
    assert plain == "z" * 9 + "…"


def test_one_photo_with_short_text_is_one_captioned_photo() -> None:
    post = make_post("nice view", media=(Media("image", "https://cdn.example/1.jpg"),))
    buttons = (Button(ButtonAction.OPEN, "Open", url=post.url), Button(ButtonAction.LIKE, "Like", token="like:1"))
    pieces = plan_post(post, buttons)
    assert len(pieces) == 1
    assert pieces[0].photos == ("https://cdn.example/1.jpg",)
    assert "nice view" in parse_html(pieces[0].text)[0]
    assert pieces[0].keyboard


def test_caption_overflow_moves_text_to_a_following_message() -> None:
    text = "long & <caption> " * 100  # 1700 characters
    post = make_post(text, media=(Media("image", "https://cdn.example/1.jpg"),))
    pieces = plan_post(post, (Button(ButtonAction.LIKE, "Like", token="like:1"),))
    assert len(pieces) == 2
    caption, _ = parse_html(pieces[0].text)
    assert len(caption) <= MAX_CAPTION and pieces[0].photos
    assert text.strip() in parse_html(pieces[1].text)[0]
    assert not pieces[0].keyboard and pieces[1].keyboard


def test_album_puts_buttons_on_a_following_text_message() -> None:
    media = tuple(Media("image", f"https://cdn.example/{i}.jpg") for i in range(3))
    pieces = plan_post(make_post("three", media=media), (Button(ButtonAction.LIKE, "Like", token="like:1"),))
    assert len(pieces) == 2
    assert len(pieces[0].photos) == 3 and not pieces[0].keyboard
    assert pieces[1].keyboard and not pieces[1].photos


def test_keyboard_open_is_a_url_button_and_oversized_tokens_are_dropped() -> None:
    rows = keyboard(
        (
            Button(ButtonAction.OPEN, "Open", url="https://bsky.app/x"),
            Button(ButtonAction.REPLY, "Reply", token="reply:1"),
            Button(ButtonAction.LIKE, "Like", token="like:1"),
            Button(ButtonAction.REPOST, "Repost", token="x" * 65),
        )
    )
    flat = [b for row in rows for b in row]
    assert [(b.label, b.url, b.callback_data) for b in flat] == [
        ("Open", "https://bsky.app/x", ""),
        ("Reply", "", "reply:1"),
        ("Like", "", "like:1"),
    ]


def test_content_warning_is_shown_and_the_text_hidden_behind_a_spoiler() -> None:
    post = make_post(
        "the <ending> of the film",
        spoiler="film spoilers & more",
        media=(Media("video", "https://files.example/v.mp4", "the last scene"),),
    )
    markup = post_html(post)
    text, entities = parse_html(markup)  # what Telegram accepts and shows
    assert "⚠️ CW: film spoilers & more" in text
    hidden = [text[e["offset"] : e["offset"] + e["length"]].strip() for e in entities if e["type"] == "spoiler"]
    assert hidden == ["the <ending> of the film", "🎞 video: the last scene"]
    assert "CW" not in "".join(hidden)
    # split over several messages, each part stays valid Telegram HTML
    long = make_post("word " * 1500, spoiler="long one")
    for piece in plan_post(long):
        _, ents = parse_html(piece.text)
        assert any(e["type"] == "spoiler" for e in ents)


def test_no_spoiler_without_a_content_warning() -> None:
    assert "tg-spoiler" not in post_html(make_post("plain"))
