"""Handles, resolving and the look-up contract (find/profile/recent/search) of the Mastodon
adapter against the emulator, without ``start`` (as the command line calls them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.mastodon import MastodonAdapter
from bridge.errors import NotFound, Permanent
from bridge.model import Source, SourceKind
from tests.adapters.mastodon.conftest import World, mastodon_settings
from tests.fakehost import FakeHost


@pytest.fixture
async def adapter(world: World) -> AsyncIterator[MastodonAdapter]:
    a = MastodonAdapter(mastodon_settings(world), FakeHost(name="mastodon"))
    yield a
    await a.stop()


def test_owns_mastodon_handles_only() -> None:
    a = MastodonAdapter({"instance": "https://team.example", "access_token": "x"}, FakeHost(name="mastodon"))
    for h in ("@alice@mastodon.social", "alice@mastodon.social", "mastodon:alice@x.y", "https://mastodon.social/@alice"):
        assert a.owns_handle(h), h
    for h in ("alice.bsky.social", "did:plc:abc", "@alice", "hello world"):
        assert not a.owns_handle(h), h


async def test_resolve_finds_a_remote_account_the_server_does_not_know_yet(world: World, adapter: MastodonAdapter) -> None:
    stranger = world.server.add_account("carol", "far.example", display_name="Carol", known=False)
    author = await adapter.resolve("https://far.example/@carol")
    assert (author.id, author.handle, author.display_name) == (stranger.id, "carol@far.example", "Carol")
    assert (await adapter.resolve("@bob@team.example")).handle == "bob@team.example"
    with pytest.raises(NotFound, match=r"no Mastodon account @nobody@far\.example"):
        await adapter.resolve("nobody@far.example")
    with pytest.raises(ValueError):
        await adapter.resolve("not a handle")


async def test_check_and_capabilities_carry_the_instance_limit(world: World) -> None:
    world.server.max_characters = 1000
    a = MastodonAdapter(mastodon_settings(world), FakeHost(name="mastodon"))
    try:
        assert await a.check() == "ok: @team@team.example (max 1000 chars)"
        assert a.capabilities().text_limit == 1000
        assert a.check_text("x" * 1000) is None
        assert "1001 characters" in (a.check_text("x" * 1001) or "")
        # a link counts 23 whatever its length
        assert a.check_text("https://example.com/" + "a" * 2000) is None
    finally:
        await a.stop()


async def test_find_profile_recent_and_search(world: World, adapter: MastodonAdapter) -> None:
    server = world.server
    server.follow(world.team, world.alice)
    page = await adapter.find_accounts("ali", 5)
    [p] = page.profiles
    assert p.author.handle == "alice@other.example" and p.followed_by_team is True and page.next_cursor == ""
    prof = await adapter.profile("bob@team.example")
    assert prof.author.handle == "bob@team.example" and prof.followed_by_team is False
    assert isinstance(prof.followers, int) and isinstance(prof.posts, int)
    posts = [server.post(world.alice, f"note {i} #cats") for i in range(3)]
    recent = await adapter.recent(Source("mastodon", SourceKind.FOLLOW, world.alice.id), 2)
    assert [x.ref.id for x in recent] == [s.id for s in posts[1:]]  # newest last
    tagged = await adapter.search_posts("#cats", 10)
    assert [x.ref.id for x in tagged] == [s.id for s in posts]
    server.full_text_search = False
    with pytest.raises(Permanent, match="no full-text search"):
        await adapter.search_posts("note", 10)


async def test_every_request_is_counted_by_route_without_user_data(world: World) -> None:
    host = FakeHost(name="mastodon")
    a = MastodonAdapter(mastodon_settings(world), host)
    try:
        await a.search_posts("#secretproject", 5)
    finally:
        await a.stop()
    routes: list[Any] = [endpoint for endpoint, _ in host.requests]
    assert "GET /api/v1/timelines/tag/:tag" in routes and "GET /api/v2/instance" in routes
    assert not any("secretproject" in r for r in routes)
