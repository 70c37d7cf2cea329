"""bench.pipeline with a tiny N: both sides deliver every message and the table is printed."""

from __future__ import annotations

import pytest

from bench import pipeline
from bench.emulator import start_emulator


async def test_both_sides_send_every_message_to_the_same_emulator() -> None:
    emu = await start_emulator(private=1, groups=1)
    try:
        bare, sequential, same, bridge = await pipeline.compare(emu, "sqlite", posts=3, runs=1)
    finally:
        await emu.stop()
    assert emu.process.returncode is not None  # the emulator process is gone
    # compare() asserts internally that every message arrived; the rates are real figures.
    assert bare.rates[0] > 0 and sequential.rates[0] > 0 and same.rates[0] > 0 and bridge.rates[0] > 0
    assert bare.cpu_ms[0] > 0 and bridge.cpu_ms[0] > 0
    row = pipeline.lines_for("sqlite", 3, 2, bare, sequential, same, bridge)[0]
    assert row.startswith("| sqlite | 3 × 2 |") and "msg/s" in row


def test_command_prints_the_comparison(capsys: pytest.CaptureFixture[str]) -> None:
    pipeline.main(["--posts", "2", "--chats", "2", "--runs", "1", "--db", "sqlite", "--no-save"])
    out = capsys.readouterr().out
    assert "Pipeline overhead" in out
    assert "| sqlite | 2 × 2 |" in out and "bridge / sequential" in out and "bare PTB on the bridge's transport" in out
