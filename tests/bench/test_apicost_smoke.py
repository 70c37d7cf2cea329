"""bench.apicost with few accounts: the real poll cycle is counted and relays the posts."""

from __future__ import annotations

import pytest

from bench import apicost


async def test_an_hour_of_polling_costs_one_timeline_request_per_cycle() -> None:
    row = await apicost.one_hour(accounts=5, posts_per_day=200, interval=60)
    assert row["per_hour"] == row["timeline"] == 60  # one getTimeline per cycle, nothing else
    assert row["one_time"] == 5 + 1  # one createRecord per account, one getRelationships for all
    assert row["posts"] > 0  # 5 x 200/day ≈ 40 posts in the hour reach the core


async def test_a_burst_over_a_page_costs_a_second_page() -> None:
    row = await apicost.one_hour(accounts=100, posts_per_day=100 * 24 * 2, interval=60)  # ~330 posts per cycle
    assert row["timeline"] > 60
    assert row["posts"] > 10_000


def test_command_prints_requests_per_hour(capsys: pytest.CaptureFixture[str]) -> None:
    apicost.main(["--accounts", "2,20", "--no-save"])
    out = capsys.readouterr().out
    assert "| 2 | 120 |" in out and "| 20 | 120 |" in out
