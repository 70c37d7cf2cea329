"""Fixtures for the Discord adapter tests: the emulator on 127.0.0.1, a fake host, the adapter."""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# Make `tests.emulators.discord` (repository root) and this folder's helpers (discord_*.py)
# importable whatever pytest's import mode.
for _path in (str(Path(__file__).resolve().parents[3]), str(Path(__file__).resolve().parent)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from discord_world import StartBridge, World, build_world  # noqa: E402

from adapters.discord import DiscordAdapter  # noqa: E402
from bridge.app import Bridge  # noqa: E402
from bridge.config import config_from_dict  # noqa: E402
from tests.emulators.discord import DiscordEmulator  # noqa: E402
from tests.fakehost import FakeHost  # noqa: E402
from tests.fakes import FakeNetwork  # noqa: E402


@pytest.fixture
async def emulator() -> AsyncIterator[DiscordEmulator]:
    emu = DiscordEmulator()
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


@pytest.fixture
def host() -> FakeHost:
    return FakeHost()


@pytest.fixture
def world(emulator: DiscordEmulator) -> World:
    return build_world(emulator)


@pytest.fixture
async def adapter(emulator: DiscordEmulator, host: FakeHost, world: World) -> AsyncIterator[DiscordAdapter]:
    """A started adapter connected to the emulator's gateway."""
    adapter = DiscordAdapter({"token": emulator.token, "api_url": emulator.api_url, "guild_ready_timeout": 0.1}, host)
    await adapter.start()
    try:
        await emulator.wait_connected()
        await adapter.ready.wait()
        yield adapter
    finally:
        await adapter.stop()


@pytest.fixture
async def start_bridge(emulator: DiscordEmulator, world: World, tmp_path: Path) -> AsyncIterator[StartBridge]:
    """Start a bridge (stopping the previous one: tortoise's connection is process-wide) on one
    database, so a second start is a restart."""
    running: list[tuple[Bridge, contextvars.Context]] = []
    # ann has Manage Channels (room admin); bob is a sender; cat is neither.

    async def start() -> Bridge:
        for old, _ in running:
            await old.stop()
        running.clear()
        data = {
            "database": {"url": f"sqlite://{tmp_path}/bridge.sqlite3"},
            "bridge": {"admins": [], "senders": [f"discord:{world.member}"]},
            "fakenet": {},
            "discord": {"token": emulator.token, "api_url": emulator.api_url, "guild_ready_timeout": 0.1},
        }
        classes = {"fakenet": FakeNetwork, "discord": DiscordAdapter}
        bridge = Bridge(config_from_dict(data, adapter_classes=classes), adapter_classes=classes)
        await bridge.start()
        # tortoise keeps its connection in a ContextVar of the test's context; the teardown
        # below runs in the fixture's, so it stops the bridge in a copy of the test's context.
        running.append((bridge, contextvars.copy_context()))
        await asyncio.wait_for(bridge.adapters["discord"].ready.wait(), 10)
        return bridge

    yield start
    for bridge, context in running:
        await asyncio.create_task(bridge.stop(), context=context)
