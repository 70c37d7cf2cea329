"""``[bridge] log_format = "json"`` through the real ``bridge run``: every line on stderr is one
JSON object with time, level, logger, event and the line's fields, and no config secret."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from bridge.logs import parse_fields
from tests.emulators.telegram import TelegramEmulator
from tests.tcp_proxy import free_port

TOKEN = "987654:JSON-logs-token-never-shown"
SECRET = "webhook-secret-never-shown-42"


async def test_json_log_lines_carry_fields_and_no_secret(tmp_path: Path) -> None:
    async with TelegramEmulator(token=TOKEN) as tg:
        port = free_port()
        cfg = tmp_path / "config.toml"
        cfg.write_text(
            f"""
[database]
url = "sqlite://{tmp_path}/b.sqlite3"
[bridge]
log_format = "json"
log_level = "debug"
[http]
listen = "127.0.0.1:{port}"
[telegram]
token = "{TOKEN}"
api_url = "{tg.url}"
webhook_url = "http://127.0.0.1:{port}/hook"
webhook_secret = "{SECRET}"
"""
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "-c", str(cfg), "run", stderr=asyncio.subprocess.PIPE, cwd=tmp_path
        )
        assert proc.stderr is not None
        lines: list[str] = []
        try:
            async with asyncio.timeout(60):
                while not any('"bridge running"' in line for line in lines):
                    line = (await proc.stderr.readline()).decode()
                    assert line, "bridge run exited: " + "".join(lines)
                    lines.append(line)
            boss = tg.add_user("Boss", "boss")
            chat = tg.private_chat(boss)
            tg.send_text(chat.id, boss, "/subs")
            await tg.wait_messages(chat.id, 1, timeout=20)
        finally:
            proc.send_signal(signal.SIGTERM)
            rest = await asyncio.wait_for(proc.stderr.read(), 30)
            await proc.wait()
        lines += rest.decode().splitlines(keepends=True)
    records = [json.loads(line) for line in lines if line.strip()]  # every line is one JSON object
    assert all({"time", "level", "logger", "event"} <= set(r) for r in records)
    started = next(r for r in records if r["event"] == "telegram.started")
    assert started["mode"] == "webhook" and started["bot"] == "@bridge_test_bot" and started["level"] == "info"
    event = next(r for r in records if r["event"] == "telegram.event")
    assert event["command"] == "subs" and event["target"] == f"telegram:{chat.id}"
    text = "".join(lines)
    assert TOKEN not in text and SECRET not in text and TOKEN.split(":")[1] not in text
    assert '"bridge stopped"' in text


def test_fields_are_parsed_with_quoted_values() -> None:
    event, fields = parse_fields("delivery retry delivery=7 destination=telegram:-100/3 in=2.0s reason='no answer: 5 s'")
    assert event == "delivery retry"
    assert fields == {"delivery": "7", "destination": "telegram:-100/3", "in": "2.0s", "reason": "no answer: 5 s"}
