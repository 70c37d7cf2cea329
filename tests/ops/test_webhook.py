"""Telegram webhook mode end to end: the Bot API emulator calls the bridge's webhook route as
Telegram does; calls without the right secret are refused (401) and counted in /metrics."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.telegram import TelegramAdapter
from bridge.app import Bridge
from bridge.config import config_from_dict
from tests.emulators.telegram import TelegramEmulator
from tests.fakes import FakeNetwork
from tests.tcp_proxy import free_port

CLASSES = {"fakenet": FakeNetwork, "telegram": TelegramAdapter}
TOKEN = "123456:TEST-token-do-not-leak"
SECRET = "s3cret-webhook_Token"


def config(tg: TelegramEmulator, db: str, port: int, webhook: bool) -> dict[str, Any]:
    telegram: dict[str, Any] = {"token": tg.token, "api_url": tg.url, "poll_timeout": 1}
    if webhook:
        telegram |= {"webhook_url": f"http://127.0.0.1:{port}/tg/hook", "webhook_secret": SECRET}
    return {
        "database": {"url": db},
        "bridge": {"admins": [], "senders": [], "shutdown_timeout": 2},
        "http": {"listen": f"127.0.0.1:{port}"},
        "telegram": telegram,
        "fakenet": {},
    }


async def start(tg: TelegramEmulator, db: str, port: int, webhook: bool) -> Bridge:
    bridge = Bridge(config_from_dict(config(tg, db, port, webhook), adapter_classes=CLASSES), adapter_classes=CLASSES)
    await bridge.start()
    return bridge


@pytest.fixture
async def tg() -> AsyncIterator[TelegramEmulator]:
    async with TelegramEmulator(token=TOKEN) as emulator:
        yield emulator


async def command(tg: TelegramEmulator, chat_id: int, user: dict[str, Any], text: str) -> str:
    before = len(tg.messages(chat_id))
    update = tg.send_text(chat_id, user, text)
    messages = await tg.wait_messages(chat_id, before + 1)
    return next(m for m in messages[before:] if m.reply_to == update["message"]["message_id"]).text


async def test_updates_come_by_webhook_and_strangers_are_refused(tg: TelegramEmulator, tmp_path: Path) -> None:
    port = free_port()
    bridge = await start(tg, f"sqlite://{tmp_path}/b.sqlite3", port, webhook=True)
    try:
        assert tg.webhook_url == f"http://127.0.0.1:{port}/tg/hook" and tg.webhook_secret == SECRET
        assert not any(method == "getUpdates" for method, _ in tg.requests)
        boss = tg.add_user("Boss", "boss")
        chat = tg.private_chat(boss)
        # the emulator POSTs each update to the webhook with the secret, as Telegram does
        assert "Following @alice.fake" in await command(tg, chat.id, boss, "/follow alice.fake")
        assert "alice.fake" in await command(tg, chat.id, boss, "/subs")
        assert tg.webhook_answers and set(tg.webhook_answers) == {200}
        await bridge.networks["fakenet"].publish("alice.fake", "relayed while on webhook")  # type: ignore[attr-defined]
        messages = await tg.wait_messages(chat.id, 3)
        assert "relayed while on webhook" in messages[-1].text

        # a caller without the secret, or with a wrong one, is refused and nothing happens
        message = {"message_id": 77, "date": int(time.time()), "chat": chat.to_json(), "from": boss}
        forged = {"update_id": 999, "message": {**message, "text": "/unfollow alice.fake"}}
        assert await tg.call_webhook(forged, None) == 401
        assert await tg.call_webhook(forged, "wrong-secret") == 401
        assert await tg.call_webhook(forged, SECRET[:-1]) == 401
        async with aiohttp.ClientSession() as s, s.post(f"http://127.0.0.1:{port}/tg/hook", data=b"{") as r:
            assert r.status == 401  # no header and not even JSON: refused before it is parsed
        await asyncio.sleep(0.3)
        assert "alice.fake" in await command(tg, chat.id, boss, "/subs")  # the forged /unfollow did nothing
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/metrics") as r:
            text = await r.text()
        counts = {
            s.labels["status"]: s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "bridge_webhook_requests_total" and s.labels["adapter"] == "telegram"
        }
        assert counts["401"] == 4 and counts["200"] >= 3
        assert SECRET not in text and TOKEN not in text
    finally:
        await bridge.stop()

    # switching back to polling removes the webhook, and updates come by getUpdates again
    bridge = await start(tg, f"sqlite://{tmp_path}/b.sqlite3", free_port(), webhook=False)
    try:
        assert tg.webhook_url == ""
        assert "Following @bob.fake" in await command(tg, chat.id, boss, "/follow bob.fake")
        assert any(method == "getUpdates" for method, _ in tg.requests)
    finally:
        await bridge.stop()


@pytest.mark.parametrize(
    ("telegram", "http", "expected"),
    [
        (
            {"webhook_url": "https://bridge.example.com/tg", "webhook_secret": SECRET},
            None,
            "[telegram] webhook_url: needs the HTTP endpoint: add [http] listen",
        ),
        ({"webhook_url": "https://bridge.example.com/tg"}, "127.0.0.1:8080", "[telegram] webhook_secret: is missing"),
        (
            {"webhook_url": "https://bridge.example.com/tg", "webhook_secret": "has spaces in it"},
            "127.0.0.1:8080",
            "[telegram] webhook_secret: has characters or a length not allowed; 1 to 256 letters",
        ),
        ({"webhook_url": "bridge.example.com/tg", "webhook_secret": SECRET}, "127.0.0.1:8080", "[telegram] webhook_url:"),
        ({}, "localhost", "[http] listen: 'localhost' is not host:port"),
    ],
)
def test_bad_webhook_config_is_one_line_at_start(
    tmp_path: Path, telegram: dict[str, str], http: str | None, expected: str
) -> None:
    lines = ["[telegram]", 'token = "123456:ABCdefGhIJKlmnoPQRsTUVwxyz"']
    lines += [f'{k} = "{v}"' for k, v in telegram.items()]
    if http:
        lines += ["[http]", f'listen = "{http}"']
    cfg = tmp_path / "config.toml"
    cfg.write_text("\n".join(lines) + "\n")
    run = subprocess.run(
        [sys.executable, "-m", "bridge", "-c", str(cfg), "run"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert run.returncode == 2
    err = run.stderr.strip()
    assert err.count("\n") == 0 and expected in err, err
    assert SECRET not in err
