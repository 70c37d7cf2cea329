"""bench.mastocost with few accounts: each follow mode is counted through the real poll cycle,
and the list mode stays at one request per cycle while the accounts mode grows with them."""

from __future__ import annotations

from bench import mastocost


async def test_the_list_mode_does_not_grow_with_the_accounts() -> None:
    rows = {
        (mode, n): await mastocost.measure(n, mode, posts_per_day=200, interval=60)
        for mode in ("accounts", "list")
        for n in (3, 12)
    }
    assert rows[("accounts", 3)]["cycle"] == 3 and rows[("accounts", 12)]["cycle"] == 12
    assert rows[("list", 3)]["cycle"] == rows[("list", 12)]["cycle"] == 1
    assert rows[("list", 12)]["setup"] > rows[("list", 3)]["setup"]  # the one-time follows and list adds
