"""Several processes on one database, through the real ``bridge`` command: SQLite serves one
``bridge run`` (a second is refused at once with one line, the short commands still work), and
on Postgres processes started together apply the migrations one at a time."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from tests.conftest import fresh_postgres
from tests.emulators.telegram import TelegramEmulator
from tests.faults.bridge_process import BridgeProcess, run_cli
from tests.faults.toml_file import write_config

DEADLINE = 30


def _config(path: Path, db_url: str, tg: TelegramEmulator, **extra: dict[str, object]) -> Path:
    return write_config(
        path,
        {"database": {"url": db_url}, "telegram": {"token": tg.token, "api_url": tg.url, "poll_timeout": 1}, **extra},
    )


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and " INFO " not in line]


async def test_a_second_bridge_run_on_one_sqlite_file_is_refused_and_the_first_keeps_running(tmp_path: Path) -> None:
    db = tmp_path / "bridge.sqlite3"
    async with TelegramEmulator() as tg:
        config = _config(tmp_path / "c.toml", f"sqlite://{db}", tg)
        first = BridgeProcess(config, tmp_path / "first.log")
        try:
            await first.wait_log("bridge running", timeout=DEADLINE)
            second = await asyncio.to_thread(run_cli, config, "run", timeout=DEADLINE)
            assert second.returncode == 1
            [line] = _error_lines(second.stderr)
            assert line.startswith("error: another `bridge run` (pid ") and str(db) in line
            assert "SQLite serves one bridge process" in line and "Postgres" in line and "runs several" in line
            assert "Traceback" not in second.stderr

            # the first one runs on, and the short commands work beside it
            assert first.proc.poll() is None
            paused = await asyncio.to_thread(run_cli, config, "pause", "--to", "telegram:-1001", timeout=DEADLINE)
            assert paused.returncode == 0, paused.stderr
            subs = await asyncio.to_thread(run_cli, config, "subs", timeout=DEADLINE)
            assert subs.returncode == 0, subs.stderr
            assert await first.terminate(DEADLINE) == 0
        finally:
            first.close()

        # once it stopped (even killed: the OS drops the lock), the next one starts
        after = BridgeProcess(config, tmp_path / "after.log")
        try:
            await after.wait_log("bridge running", timeout=DEADLINE)
            after.kill()
        finally:
            after.close()
        again = BridgeProcess(config, tmp_path / "again.log")
        try:
            await again.wait_log("bridge running", timeout=DEADLINE)
        finally:
            again.close()


async def test_three_commands_at_once_on_a_fresh_postgres_database_all_migrate_and_answer(tmp_path: Path) -> None:
    async with TelegramEmulator() as tg, fresh_postgres() as url:
        config = _config(tmp_path / "c.toml", url, tg)

        def subs() -> tuple[int, str]:
            done = run_cli(config, "subs", timeout=DEADLINE * 2)
            return done.returncode, done.stderr

        results = await asyncio.gather(*(asyncio.to_thread(subs) for _ in range(3)))
    for code, stderr in results:
        assert code == 0, stderr
        assert "already exists" not in stderr and "Traceback" not in stderr


async def test_http_port_in_use_is_one_line_with_the_fix(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        async with TelegramEmulator() as tg:
            config = _config(tmp_path / "c.toml", f"sqlite://{tmp_path}/b.sqlite3", tg, http={"listen": f"127.0.0.1:{port}"})
            done = await asyncio.to_thread(run_cli, config, "run", timeout=DEADLINE)
    finally:
        taken.close()
    assert done.returncode == 2
    [line] = _error_lines(done.stderr)
    assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in line
    assert f"set another port in [http] listen in {tmp_path / 'c.toml'}" in line
    assert "Traceback" not in done.stderr
