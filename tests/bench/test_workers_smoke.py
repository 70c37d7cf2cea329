"""bench.workers with a tiny N: 2 real ``bridge run`` processes on Postgres relay posts from
the local AT Protocol stack into the emulators; the tables show every delivery, the per-bot
limits kept, the statements counted and one listener failover."""

from __future__ import annotations

import pytest

from bench import workers


def test_command_prints_throughput_failover_and_statements(capsys: pytest.CaptureFixture[str]) -> None:
    args = "--workers 2 --posts 3 --tg-rooms 3 --discord-rooms 2 --kills 1 --lease-seconds 3 --idle-seconds 1 --no-save"
    workers.main(args.split())
    out = capsys.readouterr().out
    throughput_part, _, failover_part = out.partition("Failover after SIGKILL")

    def rows(text: str) -> list[list[str]]:
        return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| ")]

    throughput = [r for r in rows(throughput_part) if r[0] in ("2",)]
    assert [r[0] for r in throughput] == ["2"], out
    for r in throughput:
        assert r[1] == "15"  # 3 posts to 5 rooms, all delivered
        assert int(r[3]) <= workers.TELEGRAM_PER_SECOND and int(r[4]) <= workers.DISCORD_PER_SECOND
        assert r[5] == "0"  # no 429
        assert float(r[6]) > 0  # the statements were counted
    header, *_ = rows(failover_part)
    assert any(c.startswith("`listen:telegram") for c in header), out
    failover = [r for r in rows(failover_part) if r[0] in ("2",)]
    assert [r[0] for r in failover] == ["2"], out
    assert all(any(c.endswith("(1)") for c in r[2:]) for r in failover), out  # one kill measured
