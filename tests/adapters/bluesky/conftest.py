"""Fixtures of the Bluesky adapter's tests.

``atproto`` is the reference AT Protocol stack (PLC + PDS + AppView from @atproto/dev-env),
installed by tests/atproto/provision.sh on first use and shared by the whole session; each
test makes accounts of its own. ``FakeHost`` is the core's side of the adapter boundary, for
tests of the adapter alone; ``bluesky_bridge`` runs the real core (bridge.app.Bridge) with
the adapter and tests.fakes.FakeChat as the chat side.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.bluesky import BlueskyAdapter
from bridge.app import Bridge
from bridge.config import config_from_dict
from tests.atproto.harness import Account, AtprotoStack, provision
from tests.emulators.bsky_chat import BskyChatEmulator
from tests.fakehost import FakeHost
from tests.fakes import FakeChat


@pytest.fixture(scope="session")
def atproto() -> Iterator[AtprotoStack]:
    """The reference stack, for the whole session (shut down and its schemas dropped at the end)."""
    stack = AtprotoStack.start(provision())
    logging.getLogger("tests.atproto").info("AT Protocol stack up in %.1fs at %s", stack.startup_seconds, stack.pds)
    try:
        yield stack
    finally:
        stack.close()


@dataclass
class Team:
    """The bridge's team account on the test network, with the app password it logs in with."""

    account: Account
    app_password: str

    @property
    def handle(self) -> str:
        return self.account.handle


@pytest.fixture
async def team(atproto: AtprotoStack) -> Team:
    account = await atproto.create_account("team", "The Team")
    return Team(account, await atproto.app_password(account))


def bluesky_settings(atproto: AtprotoStack, team: Team, **overrides: Any) -> dict[str, Any]:
    return {
        "service": atproto.pds,
        "identifier": team.handle,
        "password": team.app_password,
        "realtime": "poll",
        "poll_interval": 1,
        **overrides,
    }


AdapterFactory = Callable[..., Awaitable[tuple[BlueskyAdapter, FakeHost]]]


@pytest.fixture
async def make_adapter(atproto: AtprotoStack, team: Team) -> AsyncIterator[AdapterFactory]:
    """Start the adapter against a FakeHost; every adapter started is stopped at the end."""
    started: list[BlueskyAdapter] = []

    async def make(host: FakeHost | None = None, start: bool = True, **overrides: Any) -> tuple[BlueskyAdapter, FakeHost]:
        host = host or FakeHost()
        adapter = BlueskyAdapter(bluesky_settings(atproto, team, **overrides), host)
        if start:
            await adapter.start()
        started.append(adapter)
        return adapter, host

    yield make
    for adapter in started:
        await adapter.stop()


BridgeFactory = Callable[..., Awaitable[Bridge]]


@pytest.fixture
async def bluesky_bridge(atproto: AtprotoStack, team: Team, tmp_path: Any) -> AsyncIterator[BridgeFactory]:
    """Start the real core with the Bluesky adapter and FakeChat. Calling it again stops the
    previous bridge first (a restart: the same database)."""
    running: list[Bridge] = []
    classes = {"bluesky": BlueskyAdapter, "fakechat": FakeChat}

    async def make(**overrides: Any) -> Bridge:
        for b in running:
            await b.stop()
        running.clear()
        cfg = config_from_dict(
            {
                "database": {"url": f"sqlite://{tmp_path}/bridge.sqlite3"},
                "bridge": {"admins": ["fakechat:boss"], "senders": ["fakechat:sender"]},
                "bluesky": bluesky_settings(atproto, team, **overrides),
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


@pytest.fixture
async def chat_emulator() -> AsyncIterator[BskyChatEmulator]:
    """The chat.bsky.convo emulator (the chat service is not part of the reference stack)."""
    emulator = BskyChatEmulator()
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()
