"""bench.latency with a tiny N on the local AT Protocol stack: posts created there arrive in
the Telegram emulator and the percentiles are printed."""

from __future__ import annotations

import pytest

from bench import latency


def test_command_relays_posts_from_the_stack_and_prints_percentiles(capsys: pytest.CaptureFixture[str]) -> None:
    latency.main(["--rates", "5", "--seconds", "1", "--authors", "1", "--runs", "1", "--no-save"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 1 | 5 (")]
    assert len(rows) == 2  # the default layouts: one room per author (here one), then one room
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[2] == "5 × 1"  # five posts made, in one run
    assert cells[9] == "0"  # all of them arrived in the chat
    p50, p99, from_ask = (float(cells[i].split(" s")[0]) for i in (4, 6, 8))
    assert p50 <= p99 < 30 and 0 < from_ask < 30
