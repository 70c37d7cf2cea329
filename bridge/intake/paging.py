"""Walking a network's newest-first feed back to the last position handed to the core.

Networks page their feeds newest first (Bluesky's getTimeline, searchPosts and
listNotifications; Mastodon's timelines; X's recent search). After an outage, or a burst larger
than a page, more than one page lies between the top of a feed and its watermark (the newest
time already handed over). The ``Pager`` walks back page by page until a page reaches back past
the watermark, then hands everything found after it to the core at once, oldest first, with the
new watermark in the same batch: every post arrives, in order, and the cursor moves only with
the posts it covers.

A walk may take several turns. One turn fetches at most ``pages_per_turn`` pages, and only
while the adapter's ``RequestBudget`` allows. Between turns the walk's progress (where to
continue, how far back and how high it reached) is committed as the cursor, so the next turn,
in this process or after a restart, continues from there. What the walk found so far is kept
in memory and handed over when the walk ends; after a restart that memory is gone, so the walk
hands over what it finds below the point it reached and sets the watermark just under that
point: the next walk fetches the part above again. Nothing is skipped; a post fetched twice is
delivered once, since the core's ledger is idempotent per (post, room).

When the walk cannot reach the watermark (the network pages no further although older entries
exist, such as a search API's depth limit, or the walk used up ``max_pages``), the entries
between the watermark and the oldest one reached are a gap. The pager hands over what it found
together with one ``Gap`` per source, with an estimate of how many entries are missing from
the rate at which the walk found them; the core tells each room of the source once.

A network adapter supplies only ``fetch(cursor) -> Page``: one page older than ``cursor``
(``None``: the newest page), and how far back it reaches. When ``fetch`` raises in the middle of
a walk (a 429, a spending cap reached), the pages that turn already fetched are kept as the
walk's progress before the error goes up, so they are not fetched (and paid for) again.

Some feeds take in entries below the watermark after it moved: on Mastodon, a status federated
late from another server is sorted by its remote creation time. ``overlap`` makes every walk
read that much below the watermark again and hand those entries over again; the core's ledger
delivers each once, so a late entry within ``overlap`` arrives and none arrives twice. The
re-read costs at most one page more than reaching the watermark does (on a quiet feed, none:
the page that reaches the watermark reaches far below it), and that page at most once per
tenth of ``overlap`` (a busy feed polled often does not pay it every turn); on a feed busier
than a page per ``overlap`` it covers less than ``overlap``. An entry that comes in later is
still missed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from bridge.intake.schedule import RequestBudget
from bridge.model import Gap, Source

T = TypeVar("T")

# A feed that starts from now and shows nothing yet takes our clock for the network's, a little
# early: the network's times have millisecond precision and its clock may be behind ours.
NOW_SLACK = timedelta(seconds=2)
# The watermark set under the point a walk reached when what it found above was lost (a restart).
_JUST_UNDER = timedelta(microseconds=1)
# How far a gap's estimate may extrapolate the rate a walk found posts at.
EXTRAPOLATE = 10


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time (``Z`` or an offset) as an aware datetime; None when it is not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Entry(Generic[T]):
    """One entry of a page.

    ``at``: when the entry reached the feed; only entries after the watermark are handed over,
    and the newest ``at`` a walk saw becomes the next watermark. ``value``: what the adapter
    makes an Item of, or None for an entry no source wants (it still moves the watermark).
    ``source``: the source it belongs to, for a gap's estimate of what is missing per source.
    """

    at: datetime
    value: T | None = None
    source: Source | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a newest-first feed, as the network adapter fetched it.

    * ``entries``: the page's entries, in any order.
    * ``next``: the cursor of the next, older page; None when the network pages no further.
    * ``oldest``: how far back the page reaches in the feed's own order (the oldest sort time
      on it; None for an empty page). The walk ends once a page reaches back before the
      watermark, so it must not be later than any entry the next page could hold.
    * ``complete``: with ``next`` None, True when nothing older exists (the feed's beginning: a
      walk that ends there leaves no gap); False when the network stops paging although older
      entries exist (a depth limit of a search API).
    * ``requests``: the requests the page cost (the fetch itself and any hydration), charged to
      the budget.
    """

    entries: Sequence[Entry[T]]
    next: str | None
    oldest: datetime | None
    complete: bool = True
    requests: int = 1


@dataclass(frozen=True, slots=True)
class Walk:
    """An unfinished walk back: ``next`` is the network cursor where it continues, ``top`` the
    newest ``at`` it saw, ``bottom`` how far back it reached, ``pages`` how many pages it
    fetched, ``seen`` how many entries newer than the watermark it found per source key."""

    top: datetime | None
    next: str
    bottom: datetime | None
    pages: int
    seen: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Position:
    """A feed's committed cursor: ``mark``, the watermark (every entry that reached the feed at
    or before it was handed over; None: the feed starts from now at its next turn), the walk
    under way, if any, and ``floor``, where the feed started from now (an overlap never reads
    below it: what was there came before the feed was wanted)."""

    mark: datetime | None
    walk: Walk | None = None
    floor: datetime | None = None

    def dump(self) -> str:
        data: dict[str, Any] = {"mark": iso(self.mark) if self.mark else None}
        if self.floor is not None:
            data["floor"] = iso(self.floor)
        if self.walk is not None:
            w = self.walk
            data["walk"] = {
                "top": iso(w.top) if w.top else None,
                "next": w.next,
                "bottom": iso(w.bottom) if w.bottom else None,
                "pages": w.pages,
                "seen": w.seen,
            }
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def load(cls, value: str | None) -> Position:
        """Read a committed cursor. A bare ISO time (how cursors were kept before walks) is a
        watermark; anything unreadable starts the feed from now."""
        if not value:
            return cls(None)
        bare = parse_time(value)
        if bare is not None:
            return cls(bare)
        try:
            data = json.loads(value)
        except ValueError:
            return cls(None)
        if not isinstance(data, dict):
            return cls(None)
        mark = parse_time(data.get("mark"))
        w = data.get("walk")
        walk = None
        if mark is not None and isinstance(w, dict) and isinstance(w.get("next"), str) and w["next"]:
            seen = w.get("seen") if isinstance(w.get("seen"), dict) else {}
            walk = Walk(
                top=parse_time(w.get("top")),
                next=w["next"],
                bottom=parse_time(w.get("bottom")),
                pages=int(w["pages"]) if isinstance(w.get("pages"), int) else 0,
                seen={str(k): int(v) for k, v in seen.items() if isinstance(v, int)},
            )
        return cls(mark, walk, parse_time(data.get("floor")) if mark is not None else None)


@dataclass(frozen=True, slots=True)
class Turn:
    """What one turn did: ``handed`` values handed over, ``requests`` charged, ``behind`` when
    the feed has more to fetch right away (its walk is unfinished, or the budget ran out), and
    ``gaps`` told."""

    handed: int = 0
    requests: int = 0
    behind: bool = False
    gaps: tuple[Gap, ...] = ()


Commit = Callable[[list[T], str, tuple[Gap, ...]], Awaitable[None]]


class Pager(Generic[T]):
    """The walk of one feed (one per feed, kept for the adapter's lifetime).

    ``fetch(cursor)`` returns the page older than ``cursor`` (None: the newest). Each ``turn``
    loads nothing itself: the caller passes the committed cursor and a ``commit(values,
    cursor, gaps)`` that must hand ``values`` (oldest first), the new cursor and the gaps to
    the core in one transaction (``host.ingest``) and raise if it did not. The pager's memory
    changes only after ``commit`` returned.

    ``start``: when the feed was first wanted (the subscription was made then). A feed without
    a committed cursor hands over what reached it after that time, however late its first page
    could be fetched (a rate limit, a busy poll loop). Without ``start`` such a feed starts
    from its first page, and everything on that page counts as older than the subscription.
    """

    def __init__(
        self,
        fetch: Callable[[str | None], Awaitable[Page[T]]],
        *,
        budget: RequestBudget | None = None,
        pages_per_turn: int = 10,
        max_pages: int = 50,
        where: Callable[[Source], str] = lambda _source: "",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        start: datetime | None = None,
        overlap: timedelta = timedelta(0),
    ) -> None:
        if pages_per_turn < 1 or max_pages < 1:
            raise ValueError("a pager needs at least one page per turn and per walk")
        if overlap < timedelta(0):
            raise ValueError("a pager's overlap cannot be negative")
        self.overlap = overlap
        self._overlap_read: datetime | None = None  # when the last page fetched only for the overlap was
        self._fetch = fetch
        self.budget = budget
        self.pages_per_turn = pages_per_turn
        self.max_pages = max_pages
        self._where = where
        self._clock = clock
        self.start = start
        # The unfinished walk as this process knows it: the walk, what it found so far, and,
        # when the walk began before a restart, how far back it had reached then (what it had
        # found above that point is gone).
        self._memory: tuple[Walk, list[Entry[T]], datetime | None] | None = None

    def _take(self) -> bool:
        return self.budget.take() if self.budget is not None else True

    def _spend(self, n: int) -> None:
        if self.budget is not None and n > 0:
            self.budget.spend(n)

    async def turn(self, saved: str | None, sources: Collection[Source], commit: Commit[T]) -> Turn:
        """One turn of the feed whose committed cursor is ``saved``; ``sources`` are the
        sources the feed serves now (a gap is told to each)."""
        pos = Position.load(saved)
        if pos.mark is None:
            if self.start is None:
                return await self._start(commit)
            # The feed was wanted from ``start``: what reached it since then is walked back to
            # and handed over, however late the first page could be fetched.
            begin = self.start - NOW_SLACK
            pos = Position(begin, floor=begin if self.overlap else None)
        mark = pos.mark
        low = mark - self.overlap  # entries above are handed over (again, within the overlap)
        floor = pos.floor if pos.floor is not None and pos.floor > low else None
        low = max(low, floor) if floor is not None else low
        walk = pos.walk
        held: list[Entry[T]] = []
        lost_above: datetime | None = None
        if walk is not None:
            if self._memory is not None and self._memory[0] == walk:
                held, lost_above = list(self._memory[1]), self._memory[2]
            else:  # the walk began before a restart
                lost_above = walk.bottom if walk.bottom is not None else mark
        cursor = walk.next if walk else None
        top = walk.top if walk else None
        bottom = walk.bottom if walk else None
        pages = walk.pages if walk else 0
        seen: Counter[str] = Counter(walk.seen if walk else {})
        fresh: list[Entry[T]] = []
        requests = 0
        ended = short = False
        overlap_page = False  # the one page fetched only for the overlap
        for _ in range(self.pages_per_turn):
            if pages >= self.max_pages:
                short = True
                break
            if not self._take():
                break
            try:
                page = await self._fetch(cursor)
            except Exception:
                if pages > (walk.pages if walk else 0):
                    # Pages this turn already fetched (and a paid API already billed) are kept:
                    # the walk so far is committed, so the next turn continues below them
                    # instead of reading them again.
                    step = Walk(top, cursor or "", bottom, pages, dict(seen))
                    if step.next:
                        await commit([], Position(mark, step, floor).dump(), ())
                        self._memory = (step, held + fresh, lost_above)
                raise
            requests += max(1, page.requests)
            self._spend(page.requests - 1)
            pages += 1
            for e in page.entries:
                top = e.at if top is None or e.at > top else top
                if e.at > low:
                    fresh.append(e)
                if e.at > mark:
                    seen[e.source.key if e.source else ""] += 1
            if page.oldest is not None:
                bottom = page.oldest if bottom is None or page.oldest < bottom else bottom
                if page.oldest < low or (page.oldest < mark and (overlap_page or not self._overlap_due())):
                    ended = True
                    break
                overlap_page = page.oldest < mark
                if overlap_page:
                    self._overlap_read = self._clock()
            if page.next is None:
                ended, short = page.complete, not page.complete
                break
            cursor = page.next
        else:
            short = pages >= self.max_pages and not ended
        if not ended and not short:  # the turn's pages or the budget ran out: continue later
            if cursor is None:  # not one page this turn: nothing changed
                return Turn(requests=requests, behind=True)
            step = Walk(top, cursor, bottom, pages, dict(seen))
            await commit([], Position(mark, step, floor).dump(), ())
            self._memory = (step, held + fresh, lost_above)
            return Turn(requests=requests, behind=True)
        # A walk that reached the watermark but not the whole overlap below it missed nothing.
        missed = short and (bottom is None or bottom >= mark)
        gaps = self._gaps(mark, bottom, top, seen, sources) if missed else ()
        if lost_above is not None:
            # What the walk found above that point before the restart is gone: the next walk
            # fetches it again, down to just under that point.
            new_mark = max(mark, lost_above - _JUST_UNDER)
        else:
            new_mark = max(mark, top) if top is not None else mark
        entries = sorted(held + fresh, key=lambda e: e.at)
        values = [e.value for e in entries if e.value is not None]
        await commit(values, Position(new_mark, floor=floor).dump(), gaps)
        self._memory = None
        return Turn(handed=len(values), requests=requests, behind=lost_above is not None, gaps=gaps)

    def _overlap_due(self) -> bool:
        last = self._overlap_read
        return last is None or self._clock() - last >= self.overlap / 10

    async def _start(self, commit: Commit[T]) -> Turn:
        """A feed without a watermark starts from now: one page only says where now is."""
        if not self._take():
            return Turn(behind=True)
        page = await self._fetch(None)
        self._spend(page.requests - 1)
        times = [e.at for e in page.entries]
        mark = max(times) if times else self._clock() - NOW_SLACK
        await commit([], Position(mark, floor=mark if self.overlap else None).dump(), ())
        self._memory = None
        return Turn(requests=max(1, page.requests))

    def _gaps(
        self,
        mark: datetime,
        bottom: datetime | None,
        top: datetime | None,
        seen: Counter[str],
        sources: Collection[Source],
    ) -> tuple[Gap, ...]:
        """One gap per source, from the watermark to the oldest point reached. How many are
        missing is estimated per source from the rate the walk found them at; None when the
        walk found none of that source, spans no time, or when the gap is more than
        ``EXTRAPOLATE`` times longer than the walk (a burst after a quiet night says nothing of
        the night)."""
        until = bottom if bottom is not None and bottom > mark else self._clock()
        span = (top - until).total_seconds() if top is not None else 0.0
        missing_span = (until - mark).total_seconds()
        gaps = []
        for source in sorted(sources, key=lambda s: s.key):
            n = seen.get(source.key, 0)
            known = n and span > 0 and missing_span <= EXTRAPOLATE * span
            estimate = max(1, round(n * missing_span / span)) if known else None
            gaps.append(Gap(source, mark, until, estimate, self._where(source)))
        return tuple(gaps)
