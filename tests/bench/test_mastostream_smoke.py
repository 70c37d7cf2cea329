"""bench.mastostream with a tiny burst: the emulator process starts and stops, every status of
the burst goes through the real stream, adapter and core into the room, once."""

from __future__ import annotations

import pytest

from bench import mastostream


def test_command_prints_the_stream_intake_rate(capsys: pytest.CaptureFixture[str]) -> None:
    mastostream.main(["--statuses", "60", "--runs", "1", "--authors", "3", "--no-save"])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| 1 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "60" and float(cells[3].replace(",", "")) > 0
    assert int(cells[5]) >= 2  # 60 statuses are at least two pages of 40
    assert "statuses/s" in out
