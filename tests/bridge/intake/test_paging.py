"""The core's pager on a fake newest-first feed: the walk back to the watermark, turns within a
budget, a restart in the middle of a walk, and the gaps it tells instead of skipping silently."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.intake.paging import NOW_SLACK, Entry, Page, Pager, Position, Turn
from bridge.intake.schedule import RequestBudget, Schedule
from bridge.model import Gap, Source, SourceKind

T0 = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)


SOURCE = Source("fakenet", SourceKind.FOLLOW, "id:alice")


def clock() -> datetime:
    """The pager's now: the feeds' posts are at T0 and later, whatever the day the tests run."""
    return T0


class Feed:
    """A newest-first feed of posts ``p0``, ``p1`` … one second apart, paged ``size`` at a time;
    the cursor is the index of the next (older) entry. ``depth``: how many entries the network
    pages through before it stops (a search API's limit)."""

    def __init__(self, size: int = 10, depth: int | None = None) -> None:
        self.size = size
        self.depth = depth
        self.count = 0
        self.fetches: list[str | None] = []

    def post(self, n: int = 1) -> None:
        self.count += n

    def at(self, i: int) -> datetime:
        return T0 + timedelta(seconds=i)

    async def fetch(self, cursor: str | None) -> Page[str]:
        self.fetches.append(cursor)
        newest_first = list(range(self.count - 1, -1, -1))
        start = int(cursor) if cursor else 0
        chunk = newest_first[start : start + self.size]
        end = start + len(chunk)
        more = end < len(newest_first)
        stopped = self.depth is not None and end >= self.depth and more
        entries = [Entry(self.at(i), f"p{i}", SOURCE) for i in chunk]
        return Page(
            entries,
            str(end) if more and not stopped else None,
            self.at(chunk[-1]) if chunk else None,
            complete=not stopped,
        )


class Core:
    """What the core keeps: the committed cursor, what was handed over, and the gaps told."""

    def __init__(self) -> None:
        self.cursor: str | None = None
        self.batches: list[list[str]] = []
        self.gaps: list[Gap] = []

    async def commit(self, values: list[str], cursor: str, gaps: tuple[Gap, ...]) -> None:
        if values:
            self.batches.append(values)
        self.gaps.extend(gaps)
        self.cursor = cursor

    @property
    def handed(self) -> list[str]:
        return [v for batch in self.batches for v in batch]


def numbers(values: list[str]) -> list[int]:
    return [int(v[1:]) for v in values]


async def turn(pager: Pager[str], core: Core) -> Turn:
    return await pager.turn(core.cursor, {SOURCE}, core.commit)


async def test_a_new_feed_starts_from_now() -> None:
    feed, core = Feed(), Core()
    feed.post(25)
    pager = Pager(feed.fetch, clock=clock)
    await turn(pager, core)
    assert core.handed == [] and Position.load(core.cursor).mark == feed.at(24)


async def test_a_feed_wanted_before_its_first_page_hands_over_all_that_came_since() -> None:
    # The subscription was made at ``start``; the first page could be fetched only 12 posts
    # later (a rate limit): those are handed over, older ones are not, and the walk goes back
    # further than one page to reach them.
    feed, core = Feed(size=5), Core()
    feed.post(10)
    pager = Pager(feed.fetch, clock=clock, start=feed.at(9) + NOW_SLACK + timedelta(milliseconds=500))
    feed.post(12)
    result = await turn(pager, core)
    assert numbers(core.handed) == list(range(10, 22)) and result.gaps == ()
    assert Position.load(core.cursor).mark == feed.at(21) and len(feed.fetches) == 3


async def test_700_posts_after_an_outage_arrive_once_oldest_first() -> None:
    feed, core = Feed(size=100), Core()
    pager = Pager(feed.fetch, clock=clock, pages_per_turn=10, max_pages=50)
    feed.post(3)
    await turn(pager, core)
    feed.post(700)
    t = await turn(pager, core)
    assert numbers(core.handed) == list(range(3, 703)), "every post, once, oldest first"
    assert [len(b) for b in core.batches] == [700], "in one batch, with the cursor"
    assert not t.behind and not core.gaps and t.requests == 8
    await turn(pager, core)
    assert len(core.handed) == 700, "nothing twice"


async def test_a_walk_longer_than_a_turn_continues_where_it_stopped() -> None:
    feed, core = Feed(size=10), Core()
    pager = Pager(feed.fetch, clock=clock, pages_per_turn=2, max_pages=50)
    await turn(pager, core)
    feed.post(55)
    first = await turn(pager, core)
    assert first.behind and core.handed == [], "nothing handed over before the walk reaches the watermark"
    walk = Position.load(core.cursor).walk
    assert walk is not None and walk.next == "20" and walk.pages == 2, "the cursor records how far back it got"
    while (await turn(pager, core)).behind:
        pass
    assert numbers(core.handed) == list(range(55)) and not core.gaps
    assert feed.fetches.count("20") == 1, "each page fetched once"


async def test_a_fetch_that_fails_mid_walk_keeps_the_pages_already_fetched() -> None:
    feed, core = Feed(size=10), Core()
    pager = Pager(feed.fetch, clock=clock, pages_per_turn=5, max_pages=50)
    await turn(pager, core)
    feed.post(45)
    real = feed.fetch
    calls = 0

    async def refused_at_the_third(cursor: str | None) -> Page[str]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("spending cap reached")  # as an API path refuses before sending
        return await real(cursor)

    pager._fetch = refused_at_the_third
    with pytest.raises(RuntimeError):
        await turn(pager, core)
    walk = Position.load(core.cursor).walk
    assert walk is not None and walk.next == "20" and walk.pages == 2, "the two pages fetched are kept"
    pager._fetch = real
    while (await turn(pager, core)).behind:
        pass
    assert numbers(core.handed) == list(range(45)) and not core.gaps
    assert feed.fetches.count(None) == 2 and feed.fetches.count("10") == 1, "no page fetched twice"


async def test_a_restart_in_the_middle_of_a_walk_loses_nothing() -> None:
    feed, core = Feed(size=10), Core()
    await turn(Pager(feed.fetch, clock=clock, pages_per_turn=2), core)
    feed.post(55)
    await turn(Pager(feed.fetch, clock=clock, pages_per_turn=2), core)  # finds p54..p35, then the process dies
    pager = Pager(feed.fetch, clock=clock, pages_per_turn=2)  # a new process, with the committed cursor
    turns = 0
    while (await turn(pager, core)).behind:
        turns += 1
        assert turns < 20
    assert sorted(numbers(core.handed)) == list(range(55)), "nothing skipped"
    assert not core.gaps
    below, above = core.batches[0], core.batches[-1]
    assert numbers(below) == list(range(35)), "what lay below the point reached is handed over first"
    assert numbers(above)[-1] == 54 and numbers(above) == sorted(numbers(above))


async def test_a_walk_that_cannot_reach_the_watermark_tells_the_gap_per_source() -> None:
    feed, core = Feed(size=100), Core()
    pager = Pager(feed.fetch, clock=clock, pages_per_turn=10, max_pages=2, where=lambda s: f"https://fake.example/{s.value}")
    core.cursor = Position(T0 - timedelta(seconds=1)).dump()
    feed.post(700)
    t = await turn(pager, core)
    assert numbers(core.handed) == list(range(500, 700)), "the newest it could reach, oldest first"
    [gap] = t.gaps
    assert gap.source == SOURCE and gap.url == "https://fake.example/id:alice"
    assert gap.since == T0 - timedelta(seconds=1) and gap.until == feed.at(500)
    assert gap.missing is not None and 450 <= gap.missing <= 560
    assert Position.load(core.cursor) == Position(feed.at(699)), "the cursor moves past the gap, with it"
    core.cursor = Position(T0 - timedelta(days=1)).dump()
    feed.post(700)
    [gap] = (await turn(pager, core)).gaps
    assert gap.missing is None, "a day before a burst of minutes: no estimate"


@pytest.mark.parametrize(
    ("depth", "gap"),
    [(300, True), (None, False)],
    ids=["the network stops paging", "the feed's beginning"],
)
async def test_the_end_of_what_the_network_pages_is_a_gap_only_when_older_posts_exist(depth: int | None, gap: bool) -> None:
    feed, core = Feed(size=100, depth=depth), Core()
    core.cursor = Position(T0 - timedelta(hours=1)).dump()  # a watermark from before the feed began
    feed.post(350 if depth else 250)
    t = await Pager(feed.fetch, clock=clock, pages_per_turn=10).turn(core.cursor, {SOURCE}, core.commit)
    assert bool(t.gaps) is gap
    assert len(core.handed) == (300 if depth else 250)


async def test_the_request_budget_pauses_a_walk_and_it_resumes_when_the_window_moves() -> None:
    now = [0.0]
    budget = RequestBudget(3, 60, clock=lambda: now[0])
    feed, core = Feed(size=10), Core()
    pager = Pager(feed.fetch, clock=clock, budget=budget, pages_per_turn=10)
    await turn(pager, core)
    feed.post(60)
    t = await turn(pager, core)
    assert t.behind and t.requests == 2 and budget.left() == 0 and core.handed == []
    assert budget.wait() == 60
    t = await turn(pager, core)
    assert t.behind and t.requests == 0, "no request beyond the budget"
    now[0] = 61
    while (await turn(pager, core)).behind:
        now[0] += 61
    assert numbers(core.handed) == list(range(60))


def test_schedule_polls_a_feed_that_is_behind_at_once_and_the_others_every_interval() -> None:
    now = [0.0]
    schedule = Schedule(30, clock=lambda: now[0])
    assert schedule.due(["a", "b"]) == ["a", "b"]
    schedule.done("a", behind=True)
    schedule.done("b", behind=False)
    assert schedule.due(["a", "b"]) == ["a"] and schedule.next_in(["b"]) == 30
    now[0] = 30
    assert schedule.due(["a", "b"]) == ["a", "b"]


def test_a_cursor_kept_as_a_bare_time_is_a_watermark() -> None:
    assert Position.load("2026-12-02T14:00:00.000Z").mark == T0
    assert Position.load("not a cursor").mark is None
    assert Position.load(Position(T0).dump()) == Position(T0)


class LateFeed:
    """A feed sorted by each entry's own time, where an entry can arrive with a time already
    passed (a Mastodon status federated late keeps its remote creation time)."""

    def __init__(self) -> None:
        self.entries: list[tuple[datetime, str]] = []

    def add(self, seconds: float, name: str) -> None:
        self.entries.append((T0 + timedelta(seconds=seconds), name))

    async def fetch(self, cursor: str | None) -> Page[str]:
        newest_first = sorted(self.entries, reverse=True)
        start = int(cursor) if cursor else 0
        chunk = newest_first[start : start + 3]
        end = start + len(chunk)
        return Page(
            [Entry(at, name, SOURCE) for at, name in chunk],
            str(end) if end < len(newest_first) else None,
            chunk[-1][0] if chunk else None,
        )


@pytest.mark.parametrize(("overlap", "arrives"), [(0, []), (60, ["late"])])
async def test_an_entry_that_arrives_below_the_watermark_is_read_within_the_overlap(overlap: int, arrives: list[str]) -> None:
    feed, core = LateFeed(), Core()
    pager = Pager(feed.fetch, pages_per_turn=10, overlap=timedelta(seconds=overlap), clock=lambda: T0)
    await turn(pager, core)  # starts from now
    for i in range(6):
        feed.add(100 + i, f"p{i}")
    await turn(pager, core)
    assert core.handed == [f"p{i}" for i in range(6)]
    feed.add(101.5, "late")  # 4 s below the watermark
    feed.add(100 - 3600, "too late")  # an hour below: beyond any overlap
    feed.add(200, "new")
    core.batches.clear()
    await turn(pager, core)
    # Within the overlap, what was handed before is handed again: the core's ledger delivers it once.
    assert set(core.handed) - {f"p{i}" for i in range(6)} == {*arrives, "new"}
    assert not core.gaps


async def test_an_overlap_deeper_than_the_walk_may_go_is_no_gap() -> None:
    feed, core = LateFeed(), Core()
    pager = Pager(feed.fetch, pages_per_turn=10, max_pages=2, overlap=timedelta(hours=1), clock=lambda: T0)
    await turn(pager, core)
    for i in range(20):
        feed.add(100 + i, f"p{i}")
    await turn(pager, core)  # 20 entries, 6 fetched: a real gap
    assert len(core.gaps) == 1
    feed.add(300, "new")
    await turn(pager, core)  # reaches the watermark but not the hour below it
    assert len(core.gaps) == 1 and core.handed[-1] == "new"


async def test_the_overlap_never_reads_below_where_the_feed_started() -> None:
    feed, core = LateFeed(), Core()
    feed.add(100, "before")
    pager = Pager(feed.fetch, overlap=timedelta(hours=1), clock=lambda: T0)
    await turn(pager, core)  # starts from now: "before" only says where now is
    assert Position.load(core.cursor).floor == T0 + timedelta(seconds=100)
    feed.add(101, "after")
    await turn(pager, core)
    await turn(pager, core)
    assert core.handed == ["after", "after"]  # handed again within the overlap; "before" never


async def test_the_overlap_costs_at_most_one_page_more_than_reaching_the_watermark() -> None:
    feed, core = LateFeed(), Core()
    pager = Pager(feed.fetch, pages_per_turn=20, overlap=timedelta(hours=1), clock=lambda: T0)
    await turn(pager, core)
    for i in range(30):  # ten pages, all within the hour below the watermark
        feed.add(100 + i, f"p{i}")
    await turn(pager, core)
    feed.add(200, "new")
    reached = await turn(pager, core)
    assert reached.requests == 2  # the page that reaches the watermark and one more
    assert "new" in core.handed


async def test_a_busy_feed_pays_the_overlap_page_once_per_tenth_of_the_overlap() -> None:
    now = [T0]
    feed, core = LateFeed(), Core()
    pager = Pager(feed.fetch, pages_per_turn=20, overlap=timedelta(hours=1), clock=lambda: now[0])
    await turn(pager, core)
    for i in range(30):
        feed.add(100 + i, f"p{i}")
    await turn(pager, core)
    costs = []
    for minute in (1, 2, 7):
        now[0] = T0 + timedelta(minutes=minute)
        feed.add(200 + minute, f"new{minute}")
        costs.append((await turn(pager, core)).requests)
    assert costs == [2, 1, 2]  # the overlap page, then again only once 6 minutes have passed
