"""Mastodon JSON → bridge.model: statuses as the emulator (and so the documentation) shapes
them, boosts, replies, media with alt text, content warnings, the inbox, and hostile JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.mastodon.convert import convert_conversation, convert_notification, convert_status
from bridge.model import Author, Ref
from tests.adapters.mastodon.conftest import World


def status_json(world: World, status_id: str, viewer: Any = None) -> dict[str, Any]:
    s = world.server.statuses[status_id]
    return world.server._status_json(s, viewer or world.team)


async def test_a_status_with_html_mentions_media_and_a_warning(world: World) -> None:
    s = world.server.post(
        world.alice,
        "hey @bob look https://example.com/a/very/long/path/that/goes/on #Cats",
        spoiler_text="spoilers for the finale",
        media=[("image", "https://other.example/m/1.png", "a cat on a keyboard"), ("gifv", "https://other.example/m/2.mp4", "")],
    )
    c = convert_status(status_json(world, s.id), "team.example")
    post = c.post
    assert post.ref == Ref("mastodon", s.id)
    assert post.author == Author(
        id=world.alice.id,
        handle="alice@other.example",
        display_name="Alice",
        avatar_url="https://other.example/avatars/alice.png",
        url="https://other.example/@alice",
    )
    assert post.text == "hey @bob@team.example look example.com/a/very/long/path/t… #Cats"
    assert [(post.text[x.start : x.end], x.url) for x in post.links] == [
        ("@bob@team.example", "https://team.example/@bob"),
        ("example.com/a/very/long/path/t…", "https://example.com/a/very/long/path/that/goes/on"),
        ("#Cats", "https://team.example/tags/cats"),
    ]
    assert [(m.kind, m.url, m.alt) for m in post.media] == [
        ("image", "https://other.example/m/1.png", "a cat on a keyboard"),
        ("gif", "https://other.example/m/2.mp4", ""),
    ]
    assert post.url == f"https://other.example/@alice/{s.id}"
    assert post.created_at.tzinfo is not None
    assert (c.content_warning, c.sensitive, c.visibility) == ("spoilers for the finale", True, "public")
    folded = c.folded()
    assert folded.text.startswith("CW: spoilers for the finale\n\nhey @bob@team.example")
    assert [folded.text[x.start : x.end] for x in folded.links] == [post.text[x.start : x.end] for x in post.links]


async def test_a_boost_is_the_original_with_reposted_by(world: World) -> None:
    original = world.server.post(world.alice, "worth sharing")
    boost = world.server.boost(world.bob, original)
    post = convert_status(status_json(world, boost.id), "team.example").post
    assert post.ref == Ref("mastodon", original.id)
    assert post.author.handle == "alice@other.example"
    assert post.reposted_by is not None and post.reposted_by.handle == "bob@team.example"
    assert post.text == "worth sharing" and post.url == original.url


async def test_a_reply_points_at_its_parent(world: World) -> None:
    parent = world.server.post(world.bob, "question")
    reply = world.server.post(world.alice, "@bob answer", in_reply_to=parent)
    post = convert_status(status_json(world, reply.id), "team.example").post
    assert post.reply_to == Ref("mastodon", parent.id) and post.is_reply


async def test_inbox_mentions_and_conversations(world: World) -> None:
    world.server.post(world.alice, "@team hello there")
    dm = world.server.dm(world.bob, [world.team], "a secret")
    notes = [world.server._notification_json(n) for n in world.server.notifications]
    inbox = [convert_notification(n, "team.example", me=world.team.id) for n in notes]
    assert [(c.post.reason, c.post.text) for c in inbox if c] == [
        ("mention", "@team@team.example hello there"),
        ("dm", "@team@team.example a secret"),
    ]
    key = next(k for k in world.server.conversations if k.startswith(f"{world.team.id}:"))
    convo = world.server._conversation_json(world.server.conversations[key], world.team)
    c = convert_conversation(convo, "team.example", me=world.team.id)
    assert c is not None and c.post.reason == "dm" and c.post.conversation == convo["id"] and c.post.ref.id == dm.id
    assert c.visibility == "direct"
    # the team account's own last message is not an inbox item
    ours = world.server.dm(world.team, [world.bob], "reply")
    convo = world.server._conversation_json(world.server.conversations[key], world.team)
    assert convo["last_status"]["id"] == ours.id
    assert convert_conversation(convo, "team.example", me=world.team.id) is None


def test_other_notification_types_are_not_inbox_posts() -> None:
    for kind in ("favourite", "reblog", "follow", "poll", "status", "update", "admin.sign_up"):
        assert convert_notification({"type": kind, "status": {"id": "1", "account": {"id": "2"}}}, "t.example") is None


def test_unknown_media_stays_as_a_link() -> None:
    c = convert_status(
        {
            "id": "1",
            "account": {"id": "2", "acct": "a@b.example"},
            "content": "<p>file</p>",
            "media_attachments": [{"type": "unknown", "url": None, "remote_url": "https://b.example/f.bin"}],
        },
        "t.example",
    )
    assert c.post.text == "file\n📎 https://b.example/f.bin"
    assert [c.post.text[x.start : x.end] for x in c.post.links] == ["https://b.example/f.bin"]
    assert c.post.media == ()


@pytest.mark.parametrize(
    "status",
    [
        {},
        {"id": "1"},
        {"id": "1", "account": "not a dict"},
        {"id": 5, "account": {"id": "2"}},
        {"account": {"id": "2"}},
        {"id": "1", "account": {"id": None}},
        "a string",
        None,
    ],
)
def test_a_status_without_id_or_account_is_refused(status: Any) -> None:
    with pytest.raises(ValueError):
        convert_status(status, "t.example")


def test_hostile_fields_do_not_break_the_post() -> None:
    c = convert_status(
        {
            "id": "1",
            "account": {"id": "2", "acct": 7, "username": "x", "display_name": "Evil\n\nName" * 100, "avatar": ["no"]},
            "content": {"not": "html"},
            "created_at": "yesterday",
            "spoiler_text": 12,
            "media_attachments": "nope",
            "mentions": [None, {"url": 1}],
            "in_reply_to_id": {"x": 1},
            "reblog": "also nope",
            "quote": {"state": "accepted", "quoted_status": {"id": "9", "account": {}}},
            "url": None,
        },
        "t.example",
    )
    post = c.post
    assert post.text == "" and post.media == () and post.reply_to is None and post.quote is None
    assert post.author.handle == "x@t.example" and "\n" not in post.author.display_name
    assert len(post.author.display_name) <= 200
    assert post.created_at.tzinfo is not None and post.created_at <= datetime.now(UTC)
    assert c.content_warning == ""
