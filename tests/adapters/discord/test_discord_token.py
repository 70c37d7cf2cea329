"""A Discord bot token reset while the bridge runs, end to end: the real core with the Discord and
Telegram adapters on their emulators (the Discord one closes the Gateway with 4004 and answers
REST with 401, as Discord does after Bot → Reset Token), a FakeNetwork as the network, and the
HTTP endpoint. What the operator and the admins see, and that no post is lost or doubled."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.discord import DiscordAdapter
from adapters.telegram import TelegramAdapter
from bridge.app import Bridge
from bridge.config import config_from_dict
from bridge.model import ChatTarget, Source, SourceKind
from bridge.ops import status
from bridge.storage.models import DeliveryRow
from tests.emulators.discord import DiscordEmulator
from tests.emulators.telegram import TelegramEmulator
from tests.fakes import FakeNetwork
from tests.tcp_proxy import free_port

CLASSES = {"fakenet": FakeNetwork, "telegram": TelegramAdapter, "discord": DiscordAdapter}
TOKEN = "discord-token-reset-test-0123456789"


@dataclass
class Room:
    bridge: Bridge
    net: FakeNetwork
    tg: TelegramEmulator
    dc: DiscordEmulator
    boss_chat: int  # the admin's private chat with the Telegram bot
    channel: int  # the Discord channel that follows alice.fake
    url: str  # the HTTP endpoint

    def relayed(self, marker: str) -> int:
        return sum(marker in (e.get("description") or "") for m in self.dc.bot_messages(self.channel) for e in m.embeds)

    def boss_reads(self) -> list[str]:
        return [m.text for m in self.tg.messages(self.boss_chat)]

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as s, s.get(self.url + path) as r:
            return r.status, await r.text()


@pytest.fixture
async def room(tmp_path: Path) -> AsyncIterator[Room]:
    async with TelegramEmulator(token="123456:discord-token-test") as tg:
        dc = DiscordEmulator(token=TOKEN)
        await dc.start()
        boss = tg.add_user("Boss", "boss")
        guild = dc.add_guild("Acme")
        channel = dc.add_channel(guild, "leads")
        port = free_port()
        config = config_from_dict(
            {
                "database": {"url": f"sqlite://{tmp_path}/bridge.sqlite3"},
                "bridge": {"admins": [f"telegram:{boss['id']}"], "shutdown_timeout": 2},
                "http": {"listen": f"127.0.0.1:{port}"},
                "fakenet": {},
                "telegram": {"token": tg.token, "api_url": tg.url, "poll_timeout": 1},
                "discord": {"token": dc.token, "api_url": dc.api_url, "guild_ready_timeout": 0.1, "login_check_interval": 1},
            },
            adapter_classes=CLASSES,
        )
        bridge = Bridge(config, adapter_classes=CLASSES)
        await bridge.start()
        try:
            await dc.wait_connected()
            net: FakeNetwork = bridge.networks["fakenet"]  # type: ignore[assignment]
            author = await net.resolve("alice.fake")
            await bridge.subscribe(
                Source("fakenet", SourceKind.FOLLOW, author.id), "alice.fake", ChatTarget("discord", str(channel)), "test"
            )
            yield Room(bridge, net, tg, dc, tg.private_chat(boss).id, channel, f"http://127.0.0.1:{port}")
        finally:
            await bridge.stop()
            await dc.stop()


async def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition() if asyncio.iscoroutinefunction(condition) else not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.05)


async def test_a_token_reset_while_running_is_told_held_and_picked_up_when_it_works(
    room: Room, caplog: pytest.LogCaptureFixture
) -> None:
    r = room
    await r.net.publish("alice.fake", "before the reset")
    await until(lambda: r.relayed("before the reset") == 1, 10, "the first post in Discord")
    caplog.set_level(logging.INFO)
    old = r.dc.token

    await r.dc.revoke_token()  # Gateway closed with 4004; REST answers 401 to the old token

    async def down() -> bool:
        health = (await r.bridge.store.platform_health()).get("discord")
        return health is not None and health.state == "down"

    await until(down, 15, "the refused token reported")
    health = (await r.bridge.store.platform_health())["discord"]
    assert "Reset Token" in health.reason and "discord.token" in health.reason, health.reason
    assert old not in health.reason and r.dc.token not in health.reason
    # The operator: one ERROR line that says how to fix it, without the token.
    errors = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR and "discord" in rec.getMessage()]
    refused = [line for line in errors if "discord.login_refused" in line]
    assert len(refused) == 1 and "Reset Token" in refused[0], errors
    assert not any(old in rec.getMessage() for rec in caplog.records)
    # The admin, on the other platform: told once.
    await until(lambda: any("Discord stopped working" in t for t in r.boss_reads()), 10, "the admin's notice")
    # bridge status and /healthz say it; /readyz still takes traffic (another platform's webhooks).
    report = await status.gather(r.bridge.store)
    assert "discord: down since" in status.table(report)
    code, body = await r.get("/healthz")
    assert code == 503 and "discord down" in body and "Reset Token" in body, body
    assert (await r.get("/readyz"))[0] == 200

    # A post meanwhile waits, spending none of its attempts; the token is checked calmly.
    await r.net.publish("alice.fake", "during the outage")
    checks = sum(1 for method, path in r.dc.requests if method == "GET" and path.endswith("/users/@me"))
    await asyncio.sleep(3)
    assert 1 <= sum(1 for method, path in r.dc.requests if method == "GET" and path.endswith("/users/@me")) - checks <= 5
    assert r.relayed("during the outage") == 0
    [waiting] = await DeliveryRow.filter(status="pending").all()
    assert waiting.attempts == 0
    assert sum("Discord stopped working" in t for t in r.boss_reads()) == 1

    # Discord accepts the token again (here: the emulator takes it back; in life, a restart
    # with the new token): picked up without a restart, the post goes out once, all is told.
    r.dc.token = old
    await until(lambda: r.relayed("during the outage") == 1, 20, "the held post delivered")
    await until(lambda: any("Discord works again" in t for t in r.boss_reads()), 10, "the admin told it is back")
    assert (await r.get("/healthz"))[0] == 200
    await r.net.publish("alice.fake", "after the fix")
    await until(lambda: r.relayed("after the fix") == 1, 10, "a new post after the fix")
    await asyncio.sleep(0.5)
    assert [r.relayed(m) for m in ("before the reset", "during the outage", "after the fix")] == [1, 1, 1]


async def test_a_gateway_ended_for_another_reason_is_connected_again_and_reports_nothing(
    room: Room, caplog: pytest.LogCaptureFixture
) -> None:
    """Close 4012 (a code discord.py does not reconnect from) is not a token problem: the
    watchdog finds the token good, connects a new session and nobody is told of an outage."""
    r = room
    caplog.set_level(logging.INFO)
    identified = r.dc.identifies
    await r.dc.drop_gateway(4012)
    await until(lambda: r.dc.identifies > identified, 20, "a new Gateway session")
    await r.dc.wait_connected()
    await r.net.publish("alice.fake", "after the new session")
    await until(lambda: r.relayed("after the new session") == 1, 10, "a post after the new session")
    assert "discord" not in await r.bridge.store.platform_health()
    assert any("discord.gateway_ended" in rec.getMessage() for rec in caplog.records)
    assert not any(rec.levelno >= logging.ERROR for rec in caplog.records if "discord" in rec.name)
