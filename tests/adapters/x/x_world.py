"""The X test world: the real core with the Telegram adapter against the Telegram Bot API
emulator and the X API v2 emulator. What a person in the room sees, and what X would bill (the
emulator's usage meter)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.telegram import TelegramAdapter
from adapters.x import XAdapter
from adapters.x.cost import DEFAULT_PRICES_USD
from bridge.app import Bridge
from bridge.config import config_from_dict
from tests.emulators.telegram import TelegramEmulator
from tests.emulators.x import XEmulator


def clocked(shift: list[float]) -> type[XAdapter]:
    """The X adapter on a clock ``shift[0]`` seconds ahead of real time (a month rolling over)."""

    class ShiftedX(XAdapter):
        kind = "network"

        def __init__(self, settings: Any, host: Any) -> None:
            super().__init__(settings, host, clock=lambda: time.time() + shift[0])

    return ShiftedX


CLASSES = {"x": XAdapter, "telegram": TelegramAdapter}


class World:
    def __init__(self, tg: TelegramEmulator, xe: XEmulator, db: str) -> None:
        self.tg, self.xe, self.db = tg, xe, db
        self.classes: dict[str, Any] = dict(CLASSES)
        self.boss = tg.add_user("Boss", "boss")
        self.group = tg.add_group("Sales", admins=[self.boss])
        self.bridge: Bridge | None = None
        self.http: dict[str, str] | None = None  # [http], when a test scrapes /metrics

    def config(self, **x: Any) -> Any:
        xe = self.xe
        section = {
            "api_url": xe.url,
            "bearer_token": xe.bearer_token,
            "consumer_key": xe.consumer_key,
            "consumer_secret": xe.consumer_secret,
            "access_token": xe.access_token,
            "access_token_secret": xe.access_token_secret,
            "monthly_budget_usd": 25,
            "poll_interval": 1,
            "quiet_poll_interval": 1,
            **x,
        }
        data: dict[str, Any] = {
            "database": {"url": self.db},
            "bridge": {"admins": [], "senders": [f"telegram:{self.boss['id']}"]},
            "x": section,
            "telegram": {"token": self.tg.token, "api_url": self.tg.url, "poll_timeout": 1},
        }
        if self.http is not None:
            data["http"] = self.http
        return config_from_dict(data, adapter_classes=self.classes)

    async def start(self, **x: Any) -> Bridge:
        self.bridge = Bridge(self.config(**x), adapter_classes=self.classes)
        await self.bridge.start()
        return self.bridge

    async def stop(self) -> None:
        if self.bridge is not None:
            await self.bridge.stop()  # closes the database
            self.bridge = None

    def say(self, text: str, reply_to: int | None = None) -> None:
        self.tg.send_text(self.group.id, self.boss, text, reply_to=reply_to)

    def texts(self) -> list[str]:
        return [m.text for m in self.tg.messages(self.group.id)]

    async def wait(self, n: int, timeout: float = 15.0) -> list[Any]:
        return await self.tg.wait_messages(self.group.id, n, timeout=timeout)

    def calls(self, method: str, route: str) -> list[tuple[str, str, str, int]]:
        return [r for r in self.xe.requests if r[0] == method and r[1] == route]

    async def followed(self) -> None:
        """Wait for the first read of a followed timeline: the follow starts from then."""
        await self.tg.wait_until(lambda: bool(self.calls("GET", "/2/users/:id/tweets")))

    def billed_usd(self) -> float:
        return sum(DEFAULT_PRICES_USD[k] * n for k, n in self.xe.usage().items())


@pytest.fixture
async def world(tmp_path: Any) -> AsyncIterator[World]:
    async with TelegramEmulator(token="123456:X-e2e-token") as tg:
        xe = XEmulator()
        await xe.start()
        w = World(tg, xe, f"sqlite://{tmp_path}/bridge.sqlite3")
        try:
            yield w
        finally:
            await w.stop()
            await xe.stop()
