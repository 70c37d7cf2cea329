"""bench.latency with a tiny N on the local AT Protocol stack: posts created there arrive in
the Telegram emulator and the percentiles are printed."""

from __future__ import annotations

import pytest

from bench import latency


def test_command_relays_posts_from_the_stack_and_prints_percentiles(capsys: pytest.CaptureFixture[str]) -> None:
    latency.main(["--rates", "5", "--seconds", "1", "--authors", "1", "--no-save"])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| 5 ("))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "5"  # five posts made
    assert cells[7] == "0"  # all of them arrived in the chat
    p50, p99 = float(cells[3].removesuffix(" s")), float(cells[5].removesuffix(" s"))
    assert 0 < p50 <= p99 < 30
