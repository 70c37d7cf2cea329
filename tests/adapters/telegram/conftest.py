"""Fixtures for the Telegram adapter tests: the Bot API emulator, a fake host, the adapter."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# Make `tests.emulators.telegram` importable from the repository root.
_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from adapters.telegram import TelegramAdapter  # noqa: E402
from tests.adapters.telegram.tg_world import World, start_world  # noqa: E402
from tests.emulators.telegram import TelegramEmulator  # noqa: E402
from tests.fakehost import FakeHost  # noqa: E402

TOKEN = "123456:TEST-token-do-not-leak"


@pytest.fixture
async def tg() -> AsyncIterator[TelegramEmulator]:
    """The Bot API emulator on 127.0.0.1, stopped after the test."""
    async with TelegramEmulator(token=TOKEN) as emulator:
        yield emulator


@pytest.fixture
def host() -> FakeHost:
    return FakeHost()


def settings_for(tg: TelegramEmulator, **extra: object) -> dict[str, object]:
    return {"token": tg.token, "api_url": tg.url, "poll_timeout": 1, "max_pacing_wait": 5.0, **extra}


@pytest.fixture
async def adapter(tg: TelegramEmulator, host: FakeHost) -> AsyncIterator[TelegramAdapter]:
    """The adapter, started against the emulator and stopped after the test."""
    instance = TelegramAdapter(settings_for(tg), host)
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


@pytest.fixture
async def world(tg: TelegramEmulator, tmp_path: Path) -> AsyncIterator[World]:
    """The real core with the Telegram adapter on the emulator; stopped after the test."""
    started = await start_world(tg, f"sqlite://{tmp_path}/bridge.sqlite3")
    try:
        yield started
    finally:
        await started.bridge.stop()
