"""How a relayed post looks: embed text, limits and mention safety (pure rendering)."""

from __future__ import annotations

from discord_world import make_delivery, make_post

from adapters.discord.render import buttons_view, delivery_nonce, description, post_embed
from bridge.model import Author, Link, Media, QuotedPost


def test_links_become_markdown_and_markup_is_escaped() -> None:
    text = "see the *docs* here"
    post = make_post(text, links=(Link(15, 19, "https://example.test/docs"),))
    assert description(post) == "see the \\*docs\\* [here](https://example.test/docs)"


def test_a_link_over_a_line_break_keeps_the_break_outside_and_a_blank_one_is_plain_text() -> None:
    # Facets that start on a line break: a masked link's text is one line in Discord, and a
    # backslash before the break (a list marker escaped with it) would show as a stray "\\".
    text = "intro\n- item and\nmore"
    over_break = make_post(text, links=(Link(5, 7, "https://example.test/a"),))
    assert description(over_break) == "intro\n[\\-](https://example.test/a) item and\nmore"
    blank = make_post(text, links=(Link(16, 17, "https://example.test/b"),))
    assert description(blank) == "intro\n\\- item and\nmore"


def test_6000_character_text_is_shortened_with_a_link_to_the_original() -> None:
    post = make_post("word " * 1200)  # 6000 characters
    embed = post_embed(post)
    assert len(embed.description) <= 4096
    assert embed.description.endswith(f"[Read the full post]({post.url})")
    assert len(embed) <= 6000  # Discord's total over all embeds of a message


def test_shortening_never_cuts_a_link() -> None:
    url = "https://example.test/" + "x" * 50
    text = "a" * 4000 + " " + "link" + " tail"
    post = make_post(text, links=(Link(4001, 4005, url),))
    out = description(post)
    assert len(out) <= 4096
    assert "[link](" not in out or f"[link]({url})" in out


def test_embed_has_author_image_quote_timestamp_footer_and_url() -> None:
    quote = QuotedPost(Author("did:plc:bob", "bob.test", "Bob"), "quoted words", "https://bsky.app/bob/1")
    post = make_post(media=(Media("image", "https://cdn.test/pic.jpg"),), quote=quote)
    embed = post_embed(post).to_dict()
    assert embed["author"] == {
        "name": "Alice (@alice.test)",
        "url": "https://bsky.app/alice",
        "icon_url": "https://cdn.test/alice.png",
    }
    assert embed["image"]["url"] == "https://cdn.test/pic.jpg"
    assert embed["fields"][0]["name"] == "Quoting Bob (@bob.test)"
    assert "quoted words" in embed["fields"][0]["value"]
    assert embed["footer"]["text"] == "Bluesky"
    assert embed["url"] == post.url
    assert embed["timestamp"].startswith("2025-01-02T03:04:05")


async def test_buttons_open_is_a_link_others_carry_the_token() -> None:
    view = buttons_view(make_delivery(1).buttons)
    assert view is not None
    rows = view.to_components()
    buttons = rows[0]["components"]
    assert buttons[0]["url"] == "https://bsky.app/profile/alice.test/post/1"
    assert [b.get("custom_id") for b in buttons[1:]] == ["reply:1", "like:1", "repost:1", "follow:1"]
    assert view.is_finished()  # not kept in memory: presses go through on_interaction


def test_nonce_is_stable_and_fits_discord() -> None:
    a = delivery_nonce(make_delivery(1, key="delivery:42:discord:1" * 5))
    b = delivery_nonce(make_delivery(1, key="delivery:42:discord:1" * 5))
    assert a == b and len(a) <= 25
    assert a != delivery_nonce(make_delivery(1, key="other"))


def test_content_warning_is_shown_and_the_text_hidden_behind_bars() -> None:
    post = make_post("the ending || of *the* film", spoiler="film spoilers")
    text = description(post)
    assert text.startswith("⚠️ **CW:** film spoilers\n||") and text.endswith("||")
    inner = text.split("\n", 1)[1][2:-2]
    assert "\\|\\|" in inner and "\\*the\\*" in inner  # the author's own bars cannot end the spoiler early
    assert description(make_post("plain")) == "plain"


def test_a_long_text_behind_a_content_warning_is_hidden_in_every_part() -> None:
    from adapters.discord.render import description_parts

    parts = description_parts(make_post("word " * 2000, spoiler="long"), limit=1000)
    assert len(parts) > 1 and all(len(p) <= 1000 for p in parts)
    assert parts[0].startswith("⚠️ **CW:** long\n||")
    assert all(p.rstrip().endswith("||") for p in parts)
