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


BridgeFactory = Callable[..., Awaitable[Any]]


def mastodon_settings(world: World, **overrides: Any) -> dict[str, Any]:
    return {
        "instance": world.server.url,
        "access_token": world.token,
        "streaming": False,
        "poll_interval": 5,
        **overrides,
    }


@pytest.fixture
async def mastodon_bridge(world: World, tmp_path: Any) -> AsyncIterator[BridgeFactory]:
    """The real core (bridge.app.Bridge) with the Mastodon adapter against the emulator and
    tests.fakes.FakeChat as the chat side. Calling it again stops the previous bridge first
    (a restart on the same database)."""
    from adapters.mastodon import MastodonAdapter
    from bridge.app import Bridge
    from bridge.config import config_from_dict
    from tests.fakes import FakeChat

    running: list[Bridge] = []
    classes = {"mastodon": MastodonAdapter, "fakechat": FakeChat}

    async def make(**overrides: Any) -> Bridge:
        for b in running:
            await b.stop()
        running.clear()
        cfg = config_from_dict(
            {
                "database": {"url": f"sqlite://{tmp_path}/bridge.sqlite3"},
                "bridge": {"admins": ["fakechat:boss"], "senders": ["fakechat:sender"]},
                "mastodon": mastodon_settings(world, **overrides),
                "fakechat": {},
            },
            adapter_classes=classes,
        )
        b = Bridge(cfg, adapter_classes=classes)
        await b.start()
        running.append(b)
        return b

    yield make
    for b in running:
        await b.stop()
