"""The Discord client's pacing to the bot's overall rate (50 requests a second), alone and when
several processes send for the bot."""

from __future__ import annotations

from adapters.discord.client import BURST, GLOBAL_PER_SECOND, SharedPace


def _sent_at(waits: list[float], now: float) -> list[float]:
    return [now + w for w in waits]


def most_in_one_second(times: list[float]) -> int:
    times = sorted(times)
    return max(sum(1 for u in times if t <= u < t + 1.0) for t in times)


def test_alone_a_burst_goes_out_at_once_and_a_flood_stays_under_50_a_second() -> None:
    now = [100.0]
    pace = SharedPace(lambda: 1, clock=lambda: now[0])
    waits = [pace.delay() for _ in range(200)]  # 200 requests at once from one process
    assert waits[: int(BURST)] == [0.0] * int(BURST)  # a few go out at once: a reply is not slowed
    assert waits[int(BURST)] > 0
    assert most_in_one_second(_sent_at(waits, now[0])) < 50
    assert abs(waits[-1] - (200 - BURST) / GLOBAL_PER_SECOND) < 1e-9  # and at the whole rate
    now[0] += 60.0  # idle for a while: the burst is back, not more
    assert [pace.delay() for _ in range(int(BURST))] == [0.0] * int(BURST)
    assert pace.delay() > 0


def test_a_request_now_and_then_is_never_delayed() -> None:
    now = [100.0]
    pace = SharedPace(lambda: 1, clock=lambda: now[0])
    for _ in range(100):
        assert pace.delay() == 0.0
        now[0] += 1 / 40  # 40 a second, under the rate


def test_several_processes_divide_the_bots_rate() -> None:
    now = [100.0]
    live = [2]
    pace = SharedPace(lambda: live[0], clock=lambda: now[0])
    waits = [pace.delay() for _ in range(100)]
    # two processes: each makes at most half of the rate, so together they stay under 50
    assert most_in_one_second(_sent_at(waits, now[0])) * 2 < 50
    assert abs(waits[-1] - (100 - BURST / 2) * 2 / GLOBAL_PER_SECOND) < 1e-9
    live[0] = 3
    now[0] += 60.0
    waits = [pace.delay() for _ in range(100)]
    assert most_in_one_second(_sent_at(waits, now[0])) * 3 < 50
