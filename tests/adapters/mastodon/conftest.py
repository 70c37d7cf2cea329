"""Fixtures of the Mastodon adapter's tests: the emulator on 127.0.0.1 with the team account
(``team@team.example``) and accounts on other servers, and the adapter's request path pointed
at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.mastodon.http import MastodonHttp
from tests.emulators.mastodon import Account, MastodonEmulator


@dataclass
class World:
    server: MastodonEmulator
    team: Account
    token: str
    alice: Account  # a remote account the server already knows
    bob: Account  # a local account


@pytest.fixture
async def world() -> AsyncIterator[World]:
    server = MastodonEmulator("team.example")
    await server.start()
    team = server.add_account("team", display_name="The Team")
    token = server.add_token(team, ("read", "write", "follow"), token="secret-team-token")
    alice = server.add_account("alice", "other.example", display_name="Alice")
    bob = server.add_account("bob", display_name="Bob")
    try:
        yield World(server, team, token, alice, bob)
    finally:
        await server.stop()


HttpFactory = Callable[..., Awaitable[MastodonHttp]]


@pytest.fixture
async def make_http(world: World) -> AsyncIterator[HttpFactory]:
    """A MastodonHttp against the emulator; every one made is closed at the end."""
    made: list[MastodonHttp] = []

    async def make(token: str | None = None, **kwargs: Any) -> MastodonHttp:
        http = MastodonHttp(world.server.url, world.token if token is None else token, **kwargs)
        made.append(http)
        return http

    yield make
    for http in made:
        await http.close()
