"""Database faults: unreachable at start (the real ``bridge run`` says so on one line per try
and waits, no traceback, and starts once the database answers), and Postgres connections cut
mid-run (pg_terminate_backend on the bridge's backends, as a Postgres restart does): the
bridge reconnects by itself and every post arrives once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import urlparse

import asyncpg

from adapters.telegram import TelegramAdapter
from bench.databases import POSTGRES
from bridge.app import Bridge
from bridge.config import config_from_dict
from tests.emulators.telegram import TelegramEmulator
from tests.fakes import FakeNetwork
from tests.faults.bridge_process import BridgeProcess
from tests.faults.chat_world import TELEGRAM_TOKEN
from tests.faults.toml_file import write_config
from tests.tcp_proxy import TcpProxy


async def test_database_unreachable_at_start_is_one_line_per_retry_then_starts(postgres_url: str, tmp_path: Path) -> None:
    pg = urlparse(postgres_url)
    gate = TcpProxy(pg.hostname or "127.0.0.1", pg.port or 5432)  # closed: nothing listens on its port yet
    url = postgres_url.replace(f"{pg.hostname}:{pg.port}", f"127.0.0.1:{gate.port}")
    url = url.replace("postgres@", "postgres:hunter2-db-password@")  # a password, to check it is not printed
    async with TelegramEmulator(token=TELEGRAM_TOKEN) as tg:
        config = write_config(
            tmp_path / "config.toml",
            {"database": {"url": url}, "telegram": {"token": tg.token, "api_url": tg.url, "poll_timeout": 1}},
        )
        proc = BridgeProcess(config, tmp_path / "bridge.log")
        try:
            await proc.wait_log("retrying in 2 s", timeout=20)  # two failed tries, backing off
            await gate.open()
            await proc.wait_log("bridge running", timeout=40)
            assert await proc.terminate(timeout=15) == 0
        finally:
            proc.close()
            await gate.close()
    log = proc.log_text()
    tries = [line for line in log.splitlines() if "cannot reach the database" in line]
    assert len(tries) >= 2
    for line in tries:
        assert line.startswith("error: cannot reach the database at postgres://postgres:***@127.0.0.1:")
        assert line.endswith(f"(check [database] url in {config})")
    assert "Traceback" not in log
    assert "hunter2-db-password" not in log


async def _terminate_backends(database: str) -> int:
    """What a Postgres restart does to the bridge: every connection to its database dies."""
    conn = await asyncpg.connect(POSTGRES.replace("postgres://", "postgresql://", 1))
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await conn.close()
    return len(rows)


async def test_postgres_connections_cut_mid_run_reconnects_and_loses_nothing(postgres_url: str) -> None:
    classes = {"fakenet": FakeNetwork, "telegram": TelegramAdapter}
    async with TelegramEmulator(token=TELEGRAM_TOKEN) as tg:
        boss = tg.add_user("Boss", "boss")
        chat = tg.private_chat(boss)
        config = config_from_dict(
            {
                "database": {"url": postgres_url},
                "bridge": {"admins": [f"telegram:{boss['id']}"], "shutdown_timeout": 2},
                "telegram": {"token": tg.token, "api_url": tg.url, "poll_timeout": 1},
                "fakenet": {},
            },
            adapter_classes=classes,
        )
        bridge = Bridge(config, adapter_classes=classes)
        await bridge.start()
        try:
            net: FakeNetwork = bridge.networks["fakenet"]  # type: ignore[assignment]
            tg.send_text(chat.id, boss, "/follow alice.fake")
            await tg.wait_messages(chat.id, 1)
            await asyncio.sleep(0.1)
            for n in range(3):
                await net.publish("alice.fake", f"before the restart {n}")
            await tg.wait_messages(chat.id, 4)

            # The network side hands a batch over until the core takes it (as the Bluesky
            # adapter does); the core must take it again once it has reconnected.
            refused = 0
            for n in range(3):
                # cut right before the hand-over: the task's next transaction starts on a
                # connection that is already dead
                assert await _terminate_backends(urlparse(postgres_url).path.lstrip("/")) >= 1
                post = net.make_post("alice.fake", f"after the restart {n}")
                deadline = time.monotonic() + 20
                while True:
                    try:
                        await net.deliver(post)
                        break
                    except Exception:
                        refused += 1
                        assert time.monotonic() < deadline, "the core never took the batch again"
                        await asyncio.sleep(0.2)
            await tg.wait_messages(chat.id, 7, timeout=20)
            tg.send_text(chat.id, boss, "/subs")  # the command layer reaches the database too
            await tg.wait_messages(chat.id, 8, timeout=20)
            await asyncio.sleep(1.0)
        finally:
            await bridge.stop()
    texts = [m.text for m in tg.messages(chat.id)]
    relayed = [t for t in texts if "the restart" in t]
    assert len(relayed) == 6
    for n in range(3):
        assert sum(f"before the restart {n}" in t for t in relayed) == 1
        assert sum(f"after the restart {n}" in t for t in relayed) == 1
    assert "alice.fake" in texts[-1]
    assert refused <= 6  # a dead connection costs a batch at most a try or two
