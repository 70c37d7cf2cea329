"""Two real ``bridge run`` processes on one Postgres database with the Telegram emulator: one of
them polls Telegram (the emulator answers overlapping getUpdates with 409, as Telegram does),
the rooms are split between them and each post reaches its room once and in order,
``bridge status`` shows who holds what, a SIGTERM hands the listener over at once, and after a
SIGKILL the survivor takes the listener and the rooms over within a few lease lengths."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.model import Author, ChatTarget, Post, Ref, Source, SourceKind
from bridge.storage.db import close_database, open_database
from bridge.storage.leases import workers_and_leases
from bridge.storage.store import Store
from tests.conftest import fresh_postgres
from tests.emulators.telegram import TelegramEmulator
from tests.faults.bridge_process import BridgeProcess, run_cli
from tests.faults.toml_file import write_config

LEASE = 3  # seconds: the smallest allowed, so takeovers are quick
DEADLINE = 60  # generous: the machine may be loaded


def _post(n: int) -> Post:
    return Post(
        ref=Ref("fakenet", f"p{n}"),
        author=Author("id:alice", "alice.fake", "Alice"),
        text=f"post number {n}",
        created_at=datetime.now(UTC),
        url=f"https://fake.example/p{n}",
    )


async def _relay(store: Store, rooms: list[ChatTarget], numbers: range) -> None:
    """Write deliveries of posts ``numbers`` to every room, as a network's intake would."""
    for n in numbers:
        await store.ingest("fakenet", [(_post(n), [(None, r) for r in rooms])], {})  # type: ignore[list-item]


def _numbers(tg: TelegramEmulator, chat_id: int) -> list[int]:
    return [int(m.text.split("post number ")[1].split()[0]) for m in tg.messages(chat_id) if "post number " in m.text]


async def _status(config: Path) -> dict[str, Any]:
    done = await asyncio.to_thread(run_cli, config, "status", "--json", timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def _answer(tg: TelegramEmulator, chat_id: int, user: dict[str, Any], text: str) -> float:
    """Send a command; seconds until its one answer came."""
    started = time.monotonic()
    update = tg.send_text(chat_id, user, text)
    asked = update["message"]["message_id"]
    await tg.wait_until(lambda: any(m.reply_to == asked for m in tg.messages(chat_id)), timeout=DEADLINE)
    took = time.monotonic() - started
    await asyncio.sleep(0.5)
    assert sum(m.reply_to == asked for m in tg.messages(chat_id)) == 1, "answered twice"
    return took


async def test_two_workers_share_rooms_and_one_listener_and_take_over_from_each_other(tmp_path: Path) -> None:
    async with TelegramEmulator() as tg, fresh_postgres() as url:
        boss = tg.add_user("Boss", "boss")
        chat = tg.private_chat(boss)
        groups = [tg.add_group(f"room {n}", admins=[boss]) for n in range(4)]
        rooms = [ChatTarget("telegram", str(g.id)) for g in groups]
        config = write_config(
            tmp_path / "c.toml",
            {
                "database": {"url": url},
                "bridge": {"admins": [f"telegram:{boss['id']}"], "lease_seconds": LEASE},
                "telegram": {"token": tg.token, "api_url": tg.url, "poll_timeout": 1},
            },
        )
        await open_database(url)  # this test writes deliveries as another process would
        store = Store()
        for r in rooms:  # rooms with subscriptions are shared even while nothing is waiting for them
            await store.add_subscription(Source("fakenet", SourceKind.FOLLOW, "id:alice"), "alice.fake", r, "test")
        procs = [BridgeProcess(config, tmp_path / f"w{n}.log") for n in range(2)]
        try:
            for p in procs:
                await p.wait_log("bridge running", timeout=DEADLINE)
            await _relay(store, rooms, range(0, 10))
            for g in groups:
                await tg.wait_messages(g.id, 10, timeout=DEADLINE)
            await asyncio.sleep(2 * LEASE)  # both keep running: one poller, the rooms split
            assert not tg.poll_conflicts, "two processes polled getUpdates at once"
            assert await _answer(tg, chat.id, boss, "/help") < DEADLINE

            report = await _status(config)
            workers = {w["pid"]: w for w in report["workers"]}
            assert set(workers) == {p.pid for p in procs}
            [listener] = [pid for pid, w in workers.items() if w["listeners"] == ["telegram:updates"]]
            held = [set(w["rooms"]) for w in workers.values()]
            assert not held[0] & held[1] and held[0] | held[1] == {str(r) for r in rooms}
            assert all(len(h) == 2 for h in held), held  # fair: two rooms each
            assert all(not w["stale"] for w in workers.values())
            table = await asyncio.to_thread(run_cli, config, "status", timeout=DEADLINE)
            assert "2 workers (leases of 3 s):" in table.stdout and "listens to telegram:updates" in table.stdout

            # SIGTERM: in-flight sends finish, then the leases are released at once
            holder = next(p for p in procs if p.pid == listener)
            other = next(p for p in procs if p.pid != listener)
            assert await holder.terminate(DEADLINE) == 0
            assert {w.pid for w in await workers_and_leases()} == {other.pid}  # gone, not left to expire
            took = await _answer(tg, chat.id, boss, "/help")
            assert took < DEADLINE
            await other.wait_log("listener started: this worker holds it listener=telegram:updates", timeout=DEADLINE)

            # a new worker joins; then the listener's holder dies by SIGKILL
            procs.append(BridgeProcess(config, tmp_path / "w2.log"))
            await procs[-1].wait_log("bridge running", timeout=DEADLINE)
            await procs[-1].wait_log("rooms claimed", timeout=DEADLINE)
            other.kill()
            await _relay(store, rooms, range(10, 20))
            took = await _answer(tg, chat.id, boss, "/help")
            assert took < 15, f"a command waited {took:.1f} s after its listener's holder died"
            for g in groups:
                await tg.wait_messages(g.id, 20, timeout=DEADLINE)
            await asyncio.sleep(1)
            for g in groups:
                got = _numbers(tg, g.id)
                # in order; a duplicate only of a post the killed worker may have been sending
                assert sorted(set(got)) == list(range(20)), got
                assert got == sorted(got), got
                assert len(got) - len(set(got)) <= 1, got
            assert len(tg.poll_conflicts) <= 1 and not any(tg.poll_conflicts)  # at most the killed worker's abandoned poll
            assert await procs[-1].terminate(DEADLINE) == 0
        finally:
            for p in procs:
                p.close()
            await close_database()
