"""bench.ratelimit with a tiny N against the emulator enforcing Telegram's limits."""

from __future__ import annotations

import pytest

from bench import ratelimit


@pytest.mark.parametrize(
    ("private", "groups", "best"),
    [
        ([1] * 30, [], 29 / 30),  # 30 messages: the overall limit alone
        ([3], [], 2.0),  # one private chat: 1 per second
        ([], [21], 60.0),  # the 21st message in a group waits for the next minute
        ([20] * 30, [20] * 20, 999 / 30),  # the benchmark's default mix: the overall limit binds
    ],
)
def test_best_schedule_is_the_tightest_limit(private: list[int], groups: list[int], best: float) -> None:
    assert ratelimit.best_schedule(private, groups) == pytest.approx(best)


def test_command_relays_without_a_single_429(capsys: pytest.CaptureFixture[str]) -> None:
    ratelimit.main(["--posts", "2", "--private", "2", "--groups", "1", "--no-save"])
    out = capsys.readouterr().out
    assert "| 6 | 2 + 1 |" in out  # 2 posts x 3 chats all accepted
    row = next(line for line in out.splitlines() if line.startswith("| 6 |"))
    assert row.split("|")[6].strip() == "0"  # no 429
