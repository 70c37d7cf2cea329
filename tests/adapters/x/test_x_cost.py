"""The cost governor (adapters/x/cost.py) with a fake clock: X's prices and their overrides,
once-per-UTC-day charging, the month's spend persisted and rolled over, the hard cap with its
figures, the forecast, and the polling plan within budget and rate limits."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest

from adapters.x.cost import (
    DEFAULT_PRICES_USD,
    MICRO,
    Account,
    BudgetExceeded,
    Ledger,
    Prices,
    days_left,
    plan_polls,
    usd,
    worst_case,
)


class Clock:
    def __init__(self, iso: str) -> None:
        self.now = datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.now

    def at(self, iso: str) -> None:
        self.now = datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()


class Store:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.saves = 0

    async def load_state(self, key: str) -> str | None:
        return self.values.get(key)

    async def save_state(self, key: str, value: str | None) -> None:
        self.saves += 1
        if value is not None:
            self.values[key] = value


def test_defaults_are_xs_published_prices() -> None:
    p = Prices.from_config()
    assert p["post_read"] == 5_000 and p["user_read"] == 10_000 and p["dm_event_read"] == 10_000
    assert p["post_create"] == 15_000 and p["post_create_url"] == 200_000
    assert Prices.from_config({"post_read": 0.004, "post_create_url": 0})["post_read"] == 4_000


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"post_reads": 0.1}, r"\[x.prices\] has no key 'post_reads' \(did you mean 'post_read'\?\)"),
        ({"post_read": -1}, r"\[x.prices\] post_read must be a price in USD, 0 or more \(e.g. post_read = 0.005\), not -1"),
        ({"user_read": "cheap"}, r"user_read must be a price in USD"),
        ({"dm_create": True}, r"dm_create must be a price in USD"),
        ({"dm_create": float("nan")}, r"dm_create must be a price in USD"),
    ],
)
def test_price_overrides_are_checked(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Prices.from_config(overrides)


def test_every_default_has_a_price() -> None:
    assert set(Prices.from_config().micro) == set(DEFAULT_PRICES_USD)


async def test_a_resource_is_charged_once_per_utc_day() -> None:
    clock = Clock("2026-12-02T10:00:00")
    ledger = Ledger(Prices.from_config(), 25, Store(), clock=clock)
    r = ledger.reserve(50_000, "read")
    assert await ledger.settle(r, [("post_read", "1"), ("post_read", "2"), ("user_read", "9")]) == 20_000
    r = ledger.reserve(50_000, "read")
    assert await ledger.settle(r, [("post_read", "1"), ("post_read", "3")]) == 5_000  # "1" already charged today
    clock.at("2026-12-02T23:59:59")
    r = ledger.reserve(50_000, "read")
    assert await ledger.settle(r, [("post_read", "1")]) == 0
    clock.at("2026-12-03T00:00:00")  # a new UTC day: charged again
    r = ledger.reserve(50_000, "read")
    assert await ledger.settle(r, [("post_read", "1")]) == 5_000
    assert ledger.spent == 30_000 and ledger.today == {"post_read": 1}


async def test_an_empty_poll_writes_nothing() -> None:
    store = Store()
    ledger = Ledger(Prices.from_config(), 25, store, clock=Clock("2026-12-02T10:00:00"))
    await ledger.settle(ledger.reserve(5_000, "read"), [("post_read", "1")])
    await ledger.settle(ledger.reserve(5_000, "read"), [])
    await ledger.settle(ledger.reserve(5_000, "read"), [("post_read", "1")])  # already charged today
    assert store.saves == 1


async def test_writes_are_charged_every_time() -> None:
    ledger = Ledger(Prices.from_config(), 25, clock=Clock("2026-12-02T10:00:00"))
    for _ in range(2):
        await ledger.settle(ledger.reserve(15_000, "post"), [("post_create", None)])
    assert ledger.spent == 30_000


async def test_the_cap_refuses_with_the_figures_and_nothing_in_flight_is_forgotten() -> None:
    clock = Clock("2026-12-20T10:00:00")
    ledger = Ledger(Prices.from_config(), 1.00, clock=clock)
    await ledger.settle(ledger.reserve(900_000, "reads"), [("post_read", str(i)) for i in range(180)])
    assert ledger.spent == 900_000
    held = ledger.reserve(50_000, "GET /2/users/:id/tweets")
    with pytest.raises(BudgetExceeded) as refused:
        ledger.reserve(60_000, "POST /2/tweets")  # 0.90 + 0.05 in flight + 0.06 > 1.00
    e = refused.value
    assert (e.spent, e.cap, e.needed) == (900_000, 1_000_000, 60_000)
    assert str(e) == (
        "X monthly budget reached: $0.90 of $1.00 spent in 2026-12 ($0.050 more in flight); POST /2/tweets could cost up to "
        "$0.060. Nothing that could cross the cap is read or written on X until 2027-01-01 (UTC) unless [x] monthly_budget_usd is raised."
    )
    ledger.release(held)  # that read failed: X billed nothing
    ledger.reserve(60_000, "POST /2/tweets")


async def test_the_month_is_persisted_and_rolls_over() -> None:
    clock, store = Clock("2026-12-31T23:00:00"), Store()
    ledger = Ledger(Prices.from_config(), 25, store, clock=clock)
    await ledger.load()
    await ledger.settle(ledger.reserve(10_000, "read"), [("post_read", "7")])
    restarted = Ledger(Prices.from_config(), 25, store, clock=clock)
    await restarted.load()
    assert restarted.spent == 5_000
    assert await restarted.settle(restarted.reserve(10_000, "read"), [("post_read", "7")]) == 0  # dedupe survives
    clock.at("2027-01-01T00:00:01")
    assert restarted.remaining == 25 * MICRO
    assert restarted.status().month == "2027-01"
    assert json.loads(store.values["x.cost"])["month"] == "2026-12"  # saved again at the next settle


async def test_a_corrupt_record_starts_from_zero() -> None:
    store = Store()
    store.values["x.cost"] = "{not json"
    ledger = Ledger(Prices.from_config(), 25, store, clock=Clock("2026-12-02T00:00:00"))
    await ledger.load()
    assert ledger.spent == 0


def test_a_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\[x\] monthly_budget_usd must be 0 or more"):
        Ledger(Prices.from_config(), -5)


async def test_forecast_is_spend_plus_plan_for_the_days_left() -> None:
    clock = Clock("2026-12-22T00:00:00")  # 10 days left in December
    ledger = Ledger(Prices.from_config(), 25, clock=clock)
    await ledger.settle(ledger.reserve(5 * MICRO, "x"), [("post_read", str(i)) for i in range(1000)])
    ledger.planned_daily = MICRO // 2
    status = ledger.status()
    assert days_left(clock()) == 10
    assert status.spent == 5 * MICRO and status.forecast == 10 * MICRO
    assert status.line() == "X API spend 2026-12: $5.00 of $25.00 cap; forecast $10.00 by month end"


@pytest.mark.parametrize(
    ("micro", "text"), [(0, "$0.00"), (5_000, "$0.005"), (15_000, "$0.015"), (250_000, "$0.25"), (1_234_560_000, "$1,234.56")]
)
def test_usd(micro: int, text: str) -> None:
    assert usd(micro) == text


def test_worst_case_counts_every_expansion_per_post() -> None:
    p = Prices.from_config()
    assert worst_case(p, "post_read", 10) == 50_000
    # per post: 1 post + 1 author + 2 referenced posts + 4 media = 0.005 + 0.010 + 0.010 + 0.020
    assert worst_case(p, "post_read", 10, "author_id,referenced_tweets.id,attachments.media_keys") == 450_000
    assert worst_case(p, "post_read", 1, "pinned_tweet_id") == 5_000 + 100_000  # unknown: ten users


POST = Prices.from_config()["post_read"]
UNIT = worst_case(Prices.from_config(), "post_read", 1, "author_id,referenced_tweets.id,attachments.media_keys")


def test_quiet_accounts_are_polled_less_often() -> None:
    plan = plan_polls([Account("busy", 48), Account("quiet", 0.5)], remaining=25 * MICRO, days=30, unit=POST, worst_unit=UNIT)
    busy, quiet = plan.polls["busy"], plan.polls["quiet"]
    assert busy.interval == 450 and quiet.interval == 3600
    assert busy.max_results >= 5 and quiet.max_results == 5
    assert not plan.limited
    assert plan.expected == round(48.5 * POST)


@pytest.mark.parametrize("n", [10, 100, 1000, 5000])
def test_polls_stay_under_the_rate_limit(n: int) -> None:
    plan = plan_polls([Account(f"a{i}", 20) for i in range(n)], remaining=10_000 * MICRO, days=30, unit=UNIT, limit=10_000)
    assert plan.requests_per_window <= 8_000 + 1e-6
    assert all(5 <= p.max_results <= 100 for p in plan.polls.values())


def test_a_short_budget_shrinks_pages_and_spaces_polls_within_it() -> None:
    accounts = [Account(f"a{i}", 30 if i < 10 else 2) for i in range(100)]
    remaining, days = 5 * MICRO, 10.0
    plan = plan_polls(accounts, remaining=remaining, days=days, unit=POST, worst_unit=UNIT)
    assert plan.limited
    assert plan.worst <= remaining / days + len(accounts)  # rounding only
    assert all(p.max_results == 5 for p in plan.polls.values())
    assert plan.polls["a0"].interval < plan.polls["a50"].interval  # busy accounts keep more of the budget
    assert "budget-limited" in plan.line()


def test_no_budget_left_means_no_polls() -> None:
    plan = plan_polls([Account("a", 10)], remaining=0, days=12, unit=UNIT)
    assert math.isinf(plan.polls["a"].interval) and plan.worst == 0 and plan.requests_per_window == 0


def test_an_empty_plan() -> None:
    plan = plan_polls([], remaining=MICRO, days=2, unit=UNIT)
    assert plan.polls == {} and plan.budget_per_day == MICRO // 2


class SharedStore(Store):
    """One record several processes write with compare-and-set (Host.replace_state)."""

    async def replace_state(self, key: str, expected: str | None, value: str) -> bool:
        if self.values.get(key) != expected:
            return False
        self.saves += 1
        self.values[key] = value
        return True


async def test_two_processes_spending_on_one_account_add_up_and_never_overwrite_each_other() -> None:
    store = SharedStore()
    clock = Clock("2026-12-02T10:00:00")
    a = Ledger(Prices.from_config(), 25, store, clock=clock)
    b = Ledger(Prices.from_config(), 25, store, clock=clock)
    await a.load()
    await b.load()
    await a.settle(a.reserve(50_000, "read"), [("post_read", "1"), ("post_read", "2")])  # 10_000
    await b.settle(b.reserve(50_000, "post"), [("post_create", None)])  # 15_000, written over a's record
    await a.settle(a.reserve(50_000, "read"), [("user_read", "9")])  # 10_000, over b's
    saved = json.loads(store.values["x.cost"])
    assert saved["spent"] == 35_000, "no process's spend was lost"
    assert saved["today"] == {"post_read": 2, "post_create": 1, "user_read": 1}
    assert a.spent == 35_000  # a caught up with b at its save
    fresh = Ledger(Prices.from_config(), 25, store, clock=clock)
    await fresh.load()
    assert fresh.spent == 35_000
