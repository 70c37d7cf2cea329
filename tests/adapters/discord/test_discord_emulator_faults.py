"""Faults and limits the emulator enforces, seen through the adapter (what the engine gets)."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from discord_world import World, make_delivery

from adapters.discord import DiscordAdapter
from bridge.errors import DestinationUnavailable, Permanent, Transient
from bridge.model import ChatTarget
from tests.conftest import until
from tests.emulators.discord import DiscordEmulator
from tests.fakehost import FakeHost


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"content": "x" * 2001}, "content"),
        ({"embeds": [{"description": "x" * 4097}]}, "embeds"),
        ({"embeds": [{"title": "x" * 257}]}, "embeds"),
        ({"embeds": [{"description": "x" * 4000}, {"description": "x" * 2001}]}, "embeds"),
        ({"embeds": [{"description": "x"}] * 11}, "embeds"),
    ],
)
async def test_emulator_refuses_over_limit_messages_like_discord(
    emulator: DiscordEmulator, world: World, payload: dict, field: str
) -> None:
    url = f"{emulator.api_url}/channels/{world.feed}/messages"
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, json=payload, headers={"Authorization": f"Bot {emulator.token}"}) as resp,
    ):
        body = await resp.json()
        assert resp.status == 400 and resp.headers["Content-Type"] == "application/json"
    assert body["code"] == 50035 and field in body["errors"]


async def test_rejected_message_is_permanent_and_notice_is_clipped(
    emulator: DiscordEmulator, adapter: DiscordAdapter, world: World
) -> None:
    await adapter.notify(ChatTarget("discord", str(world.feed)), "y" * 5000)
    [notice] = emulator.bot_messages(world.feed)
    assert len(notice.message["content"]) == 2000
    assert notice.payload["allowed_mentions"] == {"parse": []}


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [(400, 50035, Permanent), (404, 10003, DestinationUnavailable), (503, 0, Transient)],
)
async def test_send_failures_map_to_the_bridge_errors(
    emulator: DiscordEmulator, adapter: DiscordAdapter, world: World, status: int, code: int, error: type
) -> None:
    emulator.fail_next(world.feed, status, "refused by the test", code)
    with pytest.raises(error) as caught:
        await adapter.send(make_delivery(world.feed))
    if error is Permanent:
        assert not isinstance(caught.value, DestinationUnavailable)
    await adapter.send(make_delivery(world.feed))  # the next send goes through
    assert len(emulator.bot_messages(world.feed)) == 1


async def test_reconnect_op_resumes(emulator: DiscordEmulator, adapter: DiscordAdapter, host: FakeHost, world: World) -> None:
    await emulator.send_reconnect()
    record = await emulator.slash(world.feed, world.member, "help")  # sent while away: replayed
    await emulator.wait_connected()
    shown = await emulator.wait_shown(record)
    assert shown["content"] == "did help"
    assert (emulator.identifies, emulator.resumes) == (1, 1)


async def test_unreachable_discord_is_transient(host: FakeHost) -> None:
    adapter = DiscordAdapter({"token": "t0k3n-value", "api_url": "http://127.0.0.1:9/api/v10"}, host)
    with pytest.raises(Transient):
        await adapter.check()


async def test_logs_never_show_the_token(
    emulator: DiscordEmulator, host: FakeHost, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    adapter = DiscordAdapter({"token": emulator.token, "api_url": emulator.api_url, "guild_ready_timeout": 0.1}, host)
    await adapter.start()
    try:
        await adapter.ready.wait()
        await adapter.send(make_delivery(world.feed))
    finally:
        await adapter.stop()
    assert caplog.records
    assert emulator.token not in caplog.text


async def test_two_sessions_of_one_bot_both_receive_every_event(
    emulator: DiscordEmulator, adapter: DiscordAdapter, host: FakeHost, world: World
) -> None:
    """As on Discord, a second process identifying with the same token and no sharding gets
    its own session and every event too: two workers must not both hold the gateway, which
    the emulator shows through ``gateway_sessions`` and ``gateway_overlaps``."""
    assert emulator.gateway_sessions == 1 and emulator.gateway_overlaps == 0
    other_host = FakeHost()
    other = DiscordAdapter({"token": emulator.token, "api_url": emulator.api_url, "guild_ready_timeout": 0.1}, other_host)
    await other.start()
    try:
        await other.ready.wait()
        assert emulator.gateway_sessions == 2 and emulator.gateway_overlaps == 1
        await emulator.slash(world.feed, world.admin, "help")
        await host.wait_for(lambda: len(host.events) == 1)
        await other_host.wait_for(lambda: len(other_host.events) == 1)
    finally:
        await other.stop()
    await until(lambda: emulator.gateway_sessions == 1, timeout=10)  # the server saw it close
    assert emulator.max_gateway_sessions == 2
