"""How often a network adapter may read: a rolling request budget, and when each feed is due.

A network limits reads per account or per address (Bluesky's PDS: 3000 requests per 5 minutes
per IP; Mastodon: 300 per 5 minutes per account; X charges per post read). An adapter gives its
intake a ``RequestBudget`` below that limit, shared by all its feeds, and a ``Schedule`` that
polls each feed every ``every`` seconds, and again at once while a feed is behind (a walk back
to its watermark is unfinished: paging.py), as far as the budget allows.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from bridge.errors import AuthFailed, BridgeError, RateLimited

if TYPE_CHECKING:
    from bridge.intake.paging import Turn

Job = tuple[str, Callable[[], Awaitable["Turn"]]]


class RequestBudget:
    """At most ``requests`` requests in any ``per`` seconds (a rolling window).

    ``take`` asks for one request before it is made; ``spend`` records requests already made
    beyond it (a hydration a page needed). Never blocks: a caller that gets False stops and
    comes back after ``wait()`` seconds.
    """

    def __init__(self, requests: int, per: float, clock: Callable[[], float] = time.monotonic) -> None:
        if requests < 1 or per <= 0:
            raise ValueError("a request budget needs at least one request in a positive window")
        self.requests = requests
        self.per = per
        self._clock = clock
        self._made: deque[float] = deque()

    def _expire(self) -> float:
        now = self._clock()
        while self._made and self._made[0] <= now - self.per:
            self._made.popleft()
        return now

    def left(self) -> int:
        """Requests that may be made now."""
        self._expire()
        return max(0, self.requests - len(self._made))

    def take(self) -> bool:
        """Record one request if the window allows it; False (nothing recorded) if not."""
        now = self._expire()
        if len(self._made) >= self.requests:
            return False
        self._made.append(now)
        return True

    def spend(self, n: int) -> None:
        """Record ``n`` requests already made (they may overdraw the window: the next ``take``
        waits for them to age out)."""
        now = self._expire()
        self._made.extend([now] * max(0, n))

    def wait(self) -> float:
        """Seconds until ``take`` can succeed (0 when it can now)."""
        now = self._expire()
        over = len(self._made) - self.requests
        if over < 0:
            return 0.0
        return max(0.0, self._made[over] + self.per - now)


class Schedule:
    """When each feed (by key) is next due.

    A feed never polled is due. After a turn it is due again ``every`` seconds later, or at
    once when the turn left it behind. ``due_all`` makes every feed due now (subscriptions
    changed, or a caller asked for a full cycle).
    """

    def __init__(self, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self._clock = clock
        self._next: dict[str, float] = {}

    def due(self, keys: Iterable[str]) -> list[str]:
        """The ``keys`` due now, in the order given."""
        now = self._clock()
        return [k for k in keys if self._next.get(k, now) <= now]

    def done(self, key: str, *, behind: bool) -> None:
        """``key`` had its turn; ``behind``: it has more to fetch right away."""
        now = self._clock()
        self._next[key] = now if behind else now + self.every

    def due_all(self) -> None:
        self._next.clear()

    def next_in(self, keys: Iterable[str]) -> float:
        """Seconds until the first of ``keys`` is due (0 when one is; ``every`` for none)."""
        now = self._clock()
        times = [self._next.get(k, now) for k in keys]
        return max(0.0, min(times) - now) if times else self.every

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the feeds not in ``keep`` (their sources went away)."""
        wanted = set(keep)
        for key in [k for k in self._next if k not in wanted]:
            del self._next[key]

    async def take_turns(self, jobs: Sequence[Job], due: Iterable[str], log: logging.Logger) -> int:
        """Give each job in ``due`` its turn, in the order of ``jobs``, and note when each is due
        next; return how many items were handed over.

        One failing feed must not hold up the others: its failure is logged and it is tried
        again at its next time. A rate limit or refused credentials stop the round (they are
        raised). When the only feed that ran failed, its failure is raised too, so the caller
        backs off."""
        wanted = set(due)
        handed = ran = 0
        failed: BridgeError | None = None
        for key, job in jobs:
            if key not in wanted:
                continue
            ran += 1
            try:
                turn = await job()
            except (RateLimited, AuthFailed):
                raise
            except BridgeError as exc:
                log.warning("poll of %s failed reason=%r", key, str(exc))
                self.done(key, behind=False)
                failed = failed or exc
                continue
            handed += turn.handed
            self.done(key, behind=turn.behind)
        if failed is not None and handed == 0 and ran == 1:
            raise failed
        return handed
