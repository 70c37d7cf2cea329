"""Graceful shutdown: SIGTERM to the real ``bridge run`` while it has a backlog to relay (Bluesky
posts, reference stack, to 2 Telegram chats paced at one message a second and 2 Discord
channels) exits 0 within ``shutdown_timeout``; afterwards every ledger row agrees with the
rooms (sent ⟺ shown, nothing half-done), and the next start delivers the rest exactly once."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

from tests.atproto.harness import AtprotoStack
from tests.faults.bridge_process import BridgeProcess
from tests.faults.chat_world import ChatWorld
from tests.faults.crash import FIREHOSE_LINE, MARK, SUBSCRIBED_LINE, BlueskySource, crash_config

SHUTDOWN_TIMEOUT = 3.0
POSTS = 14


def ledger(db: Path) -> dict[tuple[str, int], str]:
    """(destination, post number) → delivery status, as the bridge left it."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT d.destination, d.status, p.payload FROM deliveries d JOIN posts p ON p.id = d.post_id")
        return {(dest, int(MARK.search(json.loads(payload)["text"]).group(1))): status for dest, status, payload in rows}


async def test_sigterm_during_heavy_relaying_exits_in_time_with_nothing_half_done(
    atproto: AtprotoStack, chat_world: ChatWorld, tmp_path: Path
) -> None:
    source = BlueskySource(atproto)
    await source.start()
    author = source.author
    config = crash_config(
        tmp_path / "config.toml", f"sqlite://{tmp_path}/bridge.sqlite3", chat_world, source.name, source.section(), source.follow
    )
    text = config.read_text().replace("shutdown_timeout = 5", f"shutdown_timeout = {SHUTDOWN_TIMEOUT}")
    config.write_text(text)
    first = BridgeProcess(config, tmp_path / "bridge-1.log")
    second: BridgeProcess | None = None
    try:
        await first.wait_log(SUBSCRIBED_LINE, timeout=60, count=len(chat_world.destinations))
        await first.wait_log(FIREHOSE_LINE, timeout=30)
        for n in range(POSTS):
            await atproto.post(author, f"crash-run post #{n} of {POSTS}: renewal due")
        tg_room = chat_world.destinations[0]
        await chat_world.tg.wait_until(lambda: len(chat_world.counts(MARK)[tg_room]) >= 3, timeout=20)

        asked = time.monotonic()
        code = await first.terminate(timeout=SHUTDOWN_TIMEOUT + 10)
        took = time.monotonic() - asked
        assert code == 0, first.log_text()[-2000:]
        assert took < SHUTDOWN_TIMEOUT + 3, f"took {took:.1f}s"

        counts = chat_world.counts(MARK)
        rows = ledger(tmp_path / "bridge.sqlite3")
        assert len(rows) == POSTS * len(chat_world.destinations)
        left = [key for key, status in rows.items() if status != "sent"]
        assert left, "the backlog was gone before SIGTERM: the test did not stop heavy relaying"
        for (dest, n), status in rows.items():
            assert counts[dest][n] == (1 if status == "sent" else 0), (dest, n, status, counts[dest][n])

        second = BridgeProcess(config, tmp_path / "bridge-2.log")
        deadline = time.monotonic() + 60
        while any(len(c) < POSTS for c in chat_world.counts(MARK).values()):
            assert time.monotonic() < deadline, chat_world.counts(MARK)
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        assert await second.terminate(timeout=SHUTDOWN_TIMEOUT + 10) == 0
    finally:
        first.close()
        if second is not None:
            second.close()
    for dest, c in chat_world.counts(MARK).items():
        assert sorted(c) == list(range(POSTS)), dest
        assert set(c.values()) == {1}, (dest, c)
