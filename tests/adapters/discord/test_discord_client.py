"""The Discord client's share of the bot's overall rate when several processes send for it."""

from __future__ import annotations

from adapters.discord.client import GLOBAL_PER_SECOND, SharedPace


def test_alone_no_spacing_several_divide_the_bots_rate() -> None:
    now = [100.0]
    live = [1]
    pace = SharedPace(lambda: live[0], clock=lambda: now[0])
    assert [pace.delay() for _ in range(100)] == [0.0] * 100  # alone: discord.py's own limits only
    live[0] = 2
    waits = [pace.delay() for _ in range(46)]
    # two processes: each makes at most half of the 45 per second (the 46th waits two seconds)
    assert waits[0] == 0.0 and abs(waits[45] - 45 * 2 / GLOBAL_PER_SECOND) < 1e-9
