"""The X cost governor: what each billable resource costs, what this month has spent, a hard
monthly cap, and a polling plan that keeps within it.

X's API is pay-per-use (https://docs.x.com/x-api/getting-started/pricing): reads are charged
per resource returned (a Post, a User, a DM event, ...), writes per request, and "all
resources are deduplicated within a 24-hour UTC day window" (the same Post read twice on one
UTC day is charged once). Failed requests are not billed ("only successful responses that
return data are billed", https://docs.x.com/x-api/fundamentals/post-cap). The defaults below
are X's published prices; ``[x.prices]`` overrides any of them, since "prices are subject to
change" and the Developer Console has the current table.

Money is kept in integer micro-dollars so that a month of half-cent charges adds up exactly.

* ``Prices``: the table, validated from config.
* ``Ledger``: the month's spend, persisted through a ``StateStore`` (the Host's
  ``load_state``/``save_state``). ``reserve`` refuses, before any request is sent, a read or
  write whose worst-case cost would cross ``monthly_budget_usd``; ``settle`` records what
  the response actually held, charged once per resource per UTC day as X bills.
* ``plan_polls``: spreads the remaining budget over the rest of the month across followed
  accounts: quiet accounts are polled less often, every poll's page is bounded so a burst
  cannot overspend, and the requests stay under the endpoint's rate limit.
"""

from __future__ import annotations

import calendar
import difflib
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from bridge.errors import Permanent

log = logging.getLogger("bridge.adapters.x.cost")

MICRO = 1_000_000

# X's published prices, USD (https://docs.x.com/x-api/getting-started/pricing, read 2026-12;
# owned reads and the summoned-reply price from the changelog entry of 2026-04-16,
# https://docs.x.com/changelog).
DEFAULT_PRICES_USD: dict[str, float] = {
    "post_read": 0.005,  # Posts: Read, per Post returned
    "owned_read": 0.001,  # Owned Reads: the account's own timeline, mentions, ... (since 2026-04-20)
    "user_read": 0.010,  # User: Read, per User returned
    "dm_event_read": 0.010,  # DM Event: Read, per event returned
    "media_read": 0.005,  # Media: Read, per media object returned
    "post_create": 0.015,  # Content: Create, per request
    "post_create_url": 0.200,  # Content: Create (with URL), per request
    "reply_create": 0.010,  # a reply to a post that mentioned or quoted the account ("summoned")
    "dm_create": 0.015,  # DM Interaction: Create, per request
    "interaction_create": 0.015,  # User Interaction: Create (a repost), per request
}
READS = frozenset({"post_read", "owned_read", "user_read", "dm_event_read", "media_read"})

PRICES_HELP = "[x.prices] keys, USD: " + ", ".join(f"{k} = {v}" for k, v in DEFAULT_PRICES_USD.items())


class BudgetExceeded(Permanent):
    """A read or write refused because it could cross ``monthly_budget_usd``. Carries the
    figures, and its message says them and the fix."""

    def __init__(self, message: str, *, spent: int, cap: int, needed: int) -> None:
        super().__init__(message)
        self.spent, self.cap, self.needed = spent, cap, needed


def usd(micro: int | float) -> str:
    """``$1.23`` (cents shown; sub-cent amounts keep three decimals so a $0.005 read shows)."""
    value = micro / MICRO
    return f"${value:,.3f}" if value and abs(value) < 0.1 else f"${value:,.2f}"


@dataclass(frozen=True)
class Prices:
    """Micro-dollars per billable resource or write."""

    micro: Mapping[str, int]

    @classmethod
    def from_config(cls, overrides: Mapping[str, Any] | None = None) -> Prices:
        """X's defaults with ``[x.prices]`` overrides. Raises ValueError naming the key and
        the fix for an unknown key or a value that is not a non-negative number."""
        table = dict(DEFAULT_PRICES_USD)
        for key, value in (overrides or {}).items():
            if key not in table:
                close = difflib.get_close_matches(key, table, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"[x.prices] has no key {key!r}{hint}; the keys are: {', '.join(table)}")
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or not math.isfinite(value):
                raise ValueError(f"[x.prices] {key} must be a price in USD, 0 or more (e.g. {key} = {table[key]}), not {value!r}")
            table[key] = float(value)
        return cls({k: round(v * MICRO) for k, v in table.items()})

    def __getitem__(self, kind: str) -> int:
        return self.micro[kind]


class StateStore(Protocol):
    """Where the ledger keeps its state: the Host's ``load_state``/``save_state``."""

    async def load_state(self, key: str) -> str | None: ...

    async def save_state(self, key: str, value: str | None) -> None: ...


class SharedStateStore(StateStore, Protocol):
    """A store several processes share (Host.replace_state: compare-and-set)."""

    async def replace_state(self, key: str, expected: str | None, value: str) -> bool: ...


@dataclass(frozen=True)
class Reservation:
    """Room held in the budget for one request in flight (its worst-case cost)."""

    id: int
    micro: int
    what: str


@dataclass(frozen=True)
class Spend:
    """What ``/status`` and ``bridge status`` show."""

    month: str  # "2026-12"
    spent: int  # micro-dollars this month
    cap: int
    forecast: int  # spent + planned daily cost for the rest of the month
    today: Mapping[str, int]  # billable resources charged today, by kind

    def line(self) -> str:
        return f"X API spend {self.month}: {usd(self.spent)} of {usd(self.cap)} cap; forecast {usd(self.forecast)} by month end"


def _month(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m")


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def days_left(ts: float) -> float:
    """Days from ``ts`` to the end of its UTC month (a fraction of today included)."""
    now = datetime.fromtimestamp(ts, UTC)
    last = calendar.monthrange(now.year, now.month)[1]
    end = datetime(now.year, now.month, last, tzinfo=UTC).timestamp() + 86400
    return max(0.0, (end - ts) / 86400)


def next_month(ts: float) -> str:
    now = datetime.fromtimestamp(ts, UTC)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return f"{year:04d}-{month:02d}-01"


class Ledger:
    """The month's X spend against ``monthly_budget_usd``, persisted under ``key``.

    Contract: ``await load()`` once before use. Every request reserves its worst-case cost
    first (``reserve``, which raises ``BudgetExceeded`` and sends nothing when that could cross
    the cap), then either ``settle``s with what the response held or ``release``s when the
    request failed (X bills only successful responses). Reads are charged once per resource
    id per UTC day; writes every time. The month and the day roll over by the clock (UTC).
    """

    def __init__(
        self,
        prices: Prices,
        monthly_budget_usd: float,
        store: StateStore | None = None,
        *,
        key: str = "x.cost",
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if monthly_budget_usd is None or monthly_budget_usd < 0:
            raise ValueError("[x] monthly_budget_usd must be 0 or more (e.g. monthly_budget_usd = 25)")
        self.prices = prices
        self.cap = round(monthly_budget_usd * MICRO)
        self.store = store
        self.key = key
        self.clock = clock
        self.on_change = on_change  # told after the month's figures were loaded or billed (for /metrics)
        self.month = _month(clock())
        self.day = _day(clock())
        self.spent = 0
        self.seen: set[str] = set()  # "post_read:123" charged today
        self.today: dict[str, int] = {}
        self.planned_daily = 0  # the polling plan's expected cost per day, for the forecast
        self._reserved: dict[int, Reservation] = {}
        self._next = 0
        self._rolled = False
        # Several processes may spend on one account (several workers on one database): the
        # record is merged on save (theirs plus what this process charged since its last save),
        # written only over the version read, so no process's spend is ever overwritten.
        self._raw: str | None = None  # the record as this process last read or wrote it
        self._unsaved = 0  # micro-dollars charged since the last save
        self._unsaved_today: dict[str, int] = {}

    async def load(self) -> None:
        """Read the persisted month (a corrupt or missing record starts from zero, logged)."""
        try:
            await self._load()
        finally:
            self._changed()

    async def _load(self) -> None:
        if self.store is None:
            return
        raw = await self.store.load_state(self.key)
        self._raw = raw
        if not raw:
            return
        self._take(raw)
        self._roll()

    def _take(self, raw: str) -> bool:
        """Adopt a persisted record; False (nothing changed) when it is unreadable."""
        try:
            state = json.loads(raw)
            month, day, spent = str(state["month"]), str(state["day"]), int(state["spent"])
            seen = {str(s) for s in state.get("seen", [])}
            today = {str(k): int(v) for k, v in dict(state.get("today", {})).items()}
        except (ValueError, KeyError, TypeError) as e:
            log.warning("unreadable X cost record, counting this month from zero key=%s error=%s", self.key, e)
            return False
        self.month, self.day, self.spent, self.seen, self.today = month, day, spent, seen, today
        return True

    async def save(self) -> None:
        self._changed()
        if self.store is None:
            return
        replace = getattr(self.store, "replace_state", None)
        for _ in range(10 if replace is not None else 0):
            raw = await self.store.load_state(self.key)
            if raw != self._raw and raw:
                # Another process saved meanwhile: its record plus what we charged since ours.
                mine = (self.month, self.day, self.seen)
                if self._take(raw):
                    if self.month == mine[0]:  # else a month rolled over between: theirs is kept
                        self.spent += self._unsaved
                    if self.day == mine[1]:
                        self.seen |= mine[2]
                        for kind, n in self._unsaved_today.items():
                            self.today[kind] = self.today.get(kind, 0) + n
                    self._roll()
            value = self._record()
            if await replace(self.key, raw, value):
                self._raw, self._unsaved, self._unsaved_today = value, 0, {}
                return
        value = self._record()
        await self.store.save_state(self.key, value)
        self._raw, self._unsaved, self._unsaved_today = value, 0, {}

    def _record(self) -> str:
        state = {"month": self.month, "day": self.day, "spent": self.spent, "seen": sorted(self.seen), "today": self.today}
        return json.dumps(state, separators=(",", ":"))

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:  # a metrics hook must never fail a billed request's bookkeeping
                log.exception("X cost listener failed")

    def _roll(self) -> None:
        now = self.clock()
        month, day = _month(now), _day(now)
        if month != self.month:
            log.info("X cost month rolled over from=%s to=%s spent=%s", self.month, month, usd(self.spent))
            self.month, self.spent, self._unsaved = month, 0, 0
            self._rolled = True
        if day != self.day:
            self.day, self.seen, self.today, self._unsaved_today = day, set(), {}, {}
            self._rolled = True

    @property
    def reserved(self) -> int:
        return sum(r.micro for r in self._reserved.values())

    @property
    def remaining(self) -> int:
        self._roll()
        return max(0, self.cap - self.spent - self.reserved)

    def reserve(self, micro: int, what: str) -> Reservation:
        """Hold ``micro`` (the request's worst case) or raise BudgetExceeded with the figures."""
        self._roll()
        committed = self.spent + self.reserved
        if committed + micro > self.cap:
            message = (
                f"X monthly budget reached: {usd(self.spent)} of {usd(self.cap)} spent in {self.month}"
                f"{f' ({usd(self.reserved)} more in flight)' if self.reserved else ''}; {what} could cost up to {usd(micro)}. "
                f"Nothing that could cross the cap is read or written on X until {next_month(self.clock())} (UTC) "
                "unless [x] monthly_budget_usd is raised."
            )
            raise BudgetExceeded(message, spent=self.spent, cap=self.cap, needed=micro)
        self._next += 1
        reservation = Reservation(self._next, micro, what)
        self._reserved[reservation.id] = reservation
        return reservation

    def release(self, reservation: Reservation) -> None:
        """The request failed or was not sent: nothing was billed."""
        self._reserved.pop(reservation.id, None)

    async def settle(self, reservation: Reservation, charges: Iterable[tuple[str, str | None]]) -> int:
        """Record what a successful response was billed: ``(kind, id)`` per resource read
        (charged once per id per UTC day) and ``(kind, None)`` per write. Returns the
        micro-dollars charged and persists the month."""
        self._reserved.pop(reservation.id, None)
        self._roll()
        charged = 0
        for kind, rid in charges:
            if rid is not None:
                mark = f"{kind}:{rid}"
                if mark in self.seen:
                    continue
                self.seen.add(mark)
            charged += self.prices[kind]
            self.today[kind] = self.today.get(kind, 0) + 1
            self._unsaved_today[kind] = self._unsaved_today.get(kind, 0) + 1
        self.spent += charged
        self._unsaved += charged
        if charged or self._rolled:
            await self.save()  # nothing new billed (an empty poll): nothing to write
            self._rolled = False
        return charged

    def status(self) -> Spend:
        self._roll()
        forecast = self.spent + round(self.planned_daily * days_left(self.clock()))
        return Spend(self.month, self.spent, self.cap, forecast, dict(self.today))


# --- the polling plan --------------------------------------------------------------------

# The expansions the adapter asks for, and how many extra billable objects each can add per
# Post at most (a Post has one author, replies to and/or quotes at most two Posts, holds at
# most four media). Anything else is counted as ten Users per Post.
EXPANSION_BOUND: dict[str, tuple[str, int]] = {
    "author_id": ("user_read", 1),
    "in_reply_to_user_id": ("user_read", 1),
    "referenced_tweets.id": ("post_read", 2),
    "referenced_tweets.id.author_id": ("user_read", 2),
    "attachments.media_keys": ("media_read", 4),
}


def worst_case(prices: Prices, primary: str, count: int, expansions: str = "") -> int:
    """The most a read of ``count`` resources of kind ``primary`` can cost with the given
    comma-separated expansions, before dedupe (the figure a reservation holds)."""
    per = prices[primary]
    for name in filter(None, (e.strip() for e in expansions.split(","))):
        kind, n = EXPANSION_BOUND.get(name, ("user_read", 10))
        per += prices[kind] * n
    return per * count


@dataclass(frozen=True)
class Account:
    """A followed source for the planner: its key and how many posts a day it has been seen
    to publish (a new account: ``DEFAULT_RATE``)."""

    key: str
    posts_per_day: float


@dataclass(frozen=True)
class Poll:
    interval: float  # seconds between polls
    max_results: int  # page size (X: 5..100 for a user timeline)
    expected: int  # micro-dollars per day at the observed rate
    worst: int  # micro-dollars per day if every poll returned a full page


@dataclass(frozen=True)
class Plan:
    polls: Mapping[str, Poll] = field(default_factory=dict)
    expected: int = 0  # micro-dollars per day
    worst: int = 0
    requests_per_window: float = 0.0  # requests per rate-limit window
    budget_per_day: int = 0
    limited: bool = False  # True when the budget, not the activity, set the pace

    def line(self) -> str:
        n = len(self.polls)
        pace = "budget-limited" if self.limited else "activity-paced"
        return (
            f"X polling plan: {n} account{'s' * (n != 1)}, {usd(self.expected)}/day expected "
            f"(at most {usd(self.worst)}/day), {self.requests_per_window:.0f} requests per 15 min, {pace}"
        )


DEFAULT_RATE = 5.0  # posts a day assumed for an account not yet observed
MIN_PAGE, MAX_PAGE = 5, 100  # GET /2/users/:id/tweets max_results bounds


def plan_polls(
    accounts: Iterable[Account],
    *,
    remaining: int,
    days: float,
    unit: int,
    worst_unit: int | None = None,
    base_interval: float = 300.0,
    max_interval: float = 3600.0,
    limit: int = 10_000,
    window: float = 900.0,
    headroom: float = 0.8,
) -> Plan:
    """How often to poll each account, and with what page size, so that the month's
    ``remaining`` micro-dollars last the ``days`` left.

    ``unit`` is the expected cost of one new Post read (its author and media mostly already
    charged that day), ``worst_unit`` the most it can cost with its expansions (default:
    ``unit``); expected figures use the first, worst cases and the budget guarantee the
    second. An account is polled
    about four times per expected post, never more often than ``base_interval`` nor less often
    than ``max_interval``; the page is three times the expected posts per poll (5..100). All
    polls together stay under ``headroom`` times ``limit`` requests per ``window`` (X: user timeline
    10,000/15 min per app). When the expected cost is above ``remaining / days``, pages shrink
    to the minimum and polls are spaced so that the worst case of each account fits its share:
    the newest posts are relayed, older ones in a burst are skipped rather than overspending,
    and the plan's ``worst`` is within ``remaining / days``.
    """
    accounts = list(accounts)
    worst_unit = unit if worst_unit is None else worst_unit
    budget_day = int(remaining / days) if days > 0 else remaining
    if not accounts:
        return Plan(budget_per_day=budget_day)
    intervals: dict[str, float] = {}
    for a in accounts:
        rate = max(a.posts_per_day, 0.01)
        intervals[a.key] = min(max_interval, max(base_interval, 86400 / (rate * 4)))
    # Rate limit: scale every interval up together when the sum of polls is too many.
    per_window = sum(window / i for i in intervals.values())
    allowed = limit * headroom
    if per_window > allowed:
        factor = per_window / allowed
        intervals = {k: v * factor for k, v in intervals.items()}
    polls: dict[str, Poll] = {}
    for a in accounts:
        interval = intervals[a.key]
        per_poll = a.posts_per_day * interval / 86400
        page = min(MAX_PAGE, max(MIN_PAGE, math.ceil(per_poll * 3)))
        polls_day = 86400 / interval
        expected = round(min(a.posts_per_day, polls_day * page) * unit)
        polls[a.key] = Poll(interval, page, expected, round(polls_day * page * worst_unit))
    expected_total = sum(p.expected for p in polls.values())
    limited = expected_total > budget_day
    if limited:
        share = budget_day / expected_total if expected_total else 0.0
        for a in accounts:
            allowance = polls[a.key].expected * share
            polls_day = allowance / (MIN_PAGE * worst_unit) if worst_unit else 0.0
            interval = 86400 / polls_day if polls_day > 0 else math.inf
            interval = max(interval, intervals[a.key])
            polls_day = 86400 / interval if math.isfinite(interval) else 0.0
            expected = round(min(a.posts_per_day, polls_day * MIN_PAGE) * unit)
            polls[a.key] = Poll(interval, MIN_PAGE, expected, round(polls_day * MIN_PAGE * worst_unit))
    return Plan(
        polls=polls,
        expected=sum(p.expected for p in polls.values()),
        worst=sum(p.worst for p in polls.values()),
        requests_per_window=sum(window / p.interval for p in polls.values() if math.isfinite(p.interval)),
        budget_per_day=budget_day,
        limited=limited,
    )
