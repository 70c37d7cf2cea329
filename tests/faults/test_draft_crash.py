"""A draft survives kill -9. The real ``bridge run -c FILE`` (Telegram on its emulator, Mastodon
on its emulator) holds a sender's /post as a draft in a room with approval on and is killed with
SIGKILL; after a restart the approver presses Approve on the draft message shown before the
crash: the post is created on the server exactly once (two presses, and a clean restart after,
add nothing), and the draft message says so."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from tests.emulators.mastodon import MastodonEmulator
from tests.emulators.telegram import TelegramEmulator
from tests.faults.bridge_process import BridgeProcess
from tests.faults.toml_file import write_config


def _drafts(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM drafts ORDER BY id")]


async def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_a_draft_from_before_a_kill_9_is_approved_after_the_restart_and_posted_once(tmp_path: Path) -> None:
    server = MastodonEmulator("team.example")
    await server.start()
    team = server.add_account("team", display_name="The Team")
    token = server.add_token(team, ("read", "write", "follow"), token="draft-crash-mastodon-token")
    procs: list[BridgeProcess] = []
    async with TelegramEmulator(token="123456:draft-crash-telegram-token") as tg:
        try:
            boss, sam, lea = tg.add_user("Boss", "boss"), tg.add_user("Sam", "sam"), tg.add_user("Lea", "lea")
            group = tg.add_group("Sales", admins=[boss])
            db = tmp_path / "bridge.sqlite3"
            config = write_config(
                tmp_path / "config.toml",
                {
                    "database": {"url": f"sqlite://{db}"},
                    "bridge": {
                        "admins": [f"telegram:{boss['id']}"],
                        "senders": [f"telegram:{sam['id']}"],
                        "approvers": [f"telegram:{lea['id']}"],
                        "log_level": "info",
                    },
                    "telegram": {"token": tg.token, "api_url": tg.url, "poll_timeout": 1},
                    "mastodon": {"instance": server.url, "access_token": token, "streaming": False, "poll_interval": 60},
                },
            )

            def said(start: str) -> list[Any]:
                return [m for m in tg.messages(group.id) if m.text.startswith(start)]

            first = BridgeProcess(config, tmp_path / "bridge-1.log")
            procs.append(first)
            await first.wait_log("bridge running", timeout=60)
            tg.send_text(group.id, boss, "/approval on")
            await _wait(lambda: said("Approval on"), 30, "approval switched on")
            tg.send_text(group.id, sam, "/post launch day: our new pricing is live")
            await _wait(lambda: said("Draft #1"), 30, "the draft shown in the room")
            [draft] = said("Draft #1")
            approve = next(b["callback_data"] for b in draft.buttons if b["text"] == "Approve")
            assert server.statuses_by(team) == []

            first.kill()  # SIGKILL: no shutdown, nothing flushed but what was committed
            assert [d["status"] for d in _drafts(db)] == ["waiting"]

            second = BridgeProcess(config, tmp_path / "bridge-2.log")
            procs.append(second)
            await second.wait_log("bridge running", timeout=60)
            # The approver presses Approve under the message shown before the crash, twice.
            tg.press(group.id, lea, draft.message_id, approve)
            tg.press(group.id, lea, draft.message_id, approve)
            await _wait(lambda: len(server.statuses_by(team)) >= 1, 30, "the post on the server")
            await _wait(lambda: "Approved by" in said("Draft #1")[0].text, 30, "the draft message edited")
            await _wait(lambda: len(tg.callback_answers) >= 2, 30, "both presses answered")
            assert await second.terminate(30) == 0

            # A clean restart (pending actions are retried at start) sends nothing more.
            third = BridgeProcess(config, tmp_path / "bridge-3.log")
            procs.append(third)
            await third.wait_log("bridge running", timeout=60)
            await asyncio.sleep(1.0)  # a second create, were there one, would show now
            assert [s.text for s in server.statuses_by(team)] == ["launch day: our new pricing is live"]
            shown = said("Draft #1")[0]
            assert shown.message_id == draft.message_id and shown.buttons == []  # edited in place
            assert "Approved by @lea" in shown.text, shown.text
            [row] = _drafts(db)
            assert row["status"] == "sent" and row["decided_by"] == f"telegram:{lea['id']}"
            assert await third.terminate(30) == 0
        finally:
            for p in procs:
                p.close()
            await server.stop()
