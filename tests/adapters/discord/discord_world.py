"""Builders shared by the Discord tests: posts, deliveries and a small server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from bridge.app import Bridge
from bridge.model import Author, Button, ButtonAction, ChatTarget, Delivery, Link, Media, Post, QuotedPost, Ref
from tests.emulators.discord import DiscordEmulator

StartBridge = Callable[[], Awaitable[Bridge]]  # the start_bridge fixture: a second call is a restart


def make_post(text: str = "Hello from the network", **fields) -> Post:
    defaults = dict(
        ref=Ref("bluesky", "at://did:plc:alice/app.bsky.feed.post/1"),
        author=Author("did:plc:alice", "alice.test", "Alice", "https://cdn.test/alice.png", "https://bsky.app/alice"),
        text=text,
        created_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        url="https://bsky.app/profile/alice.test/post/1",
    )
    defaults.update(fields)
    return Post(**defaults)


def make_delivery(channel_id: int, post: Post | None = None, *, key: str = "d-1", thread_id: str = "", **fields) -> Delivery:
    buttons = (
        Button(ButtonAction.OPEN, "Open", url="https://bsky.app/profile/alice.test/post/1"),
        Button(ButtonAction.REPLY, "Reply", token="reply:1"),
        Button(ButtonAction.LIKE, "Like", token="like:1"),
        Button(ButtonAction.REPOST, "Repost", token="repost:1"),
        Button(ButtonAction.FOLLOW, "Follow", token="follow:1"),
    )
    return Delivery(
        id=1,
        key=key,
        post=post or make_post(),
        target=ChatTarget("discord", str(channel_id), thread_id),
        buttons=fields.pop("buttons", buttons),
        **fields,
    )


@dataclass
class World:
    guild: int
    feed: int
    other: int
    admin: int
    member: int
    outsider: int


def build_world(emu: DiscordEmulator) -> World:
    guild = emu.add_guild("Acme")
    return World(
        guild=guild,
        feed=emu.add_channel(guild, "feed"),
        other=emu.add_channel(guild, "other"),
        admin=emu.add_member(guild, "ann", manage_channels=True),
        member=emu.add_member(guild, "bob"),
        outsider=emu.add_member(guild, "cat"),
    )


__all__ = ["Link", "Media", "QuotedPost", "World", "build_world", "make_delivery", "make_post"]
