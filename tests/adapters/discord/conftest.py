"""Fixtures for the Discord adapter tests: the emulator on 127.0.0.1, a fake host, the adapter."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# Make `tests.emulators.discord` (repository root) and this folder's helpers (discord_*.py)
# importable whatever pytest's import mode.
for _path in (str(Path(__file__).resolve().parents[3]), str(Path(__file__).resolve().parent)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from discord_world import World, build_world  # noqa: E402

from adapters.discord import DiscordAdapter  # noqa: E402
from tests.emulators.discord import DiscordEmulator  # noqa: E402
from tests.fakehost import FakeHost  # noqa: E402


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
