"""Two workers of one bridge (bridge.workers) on one Postgres database, in one process: rooms are
shared fairly, a listener runs in one of them at a time, a worker that stops renewing stops its
listener before the other can start it, and a clean stop hands over at once. On SQLite the one
worker holds everything without a query."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from bridge.storage.db import close_database, open_database
from bridge.workers import Workers

LEASE = 3.0  # the smallest allowed: renewals every second
ROOMS = {f"telegram:{n}" for n in range(5)}


async def _rooms() -> set[str]:
    return ROOMS


async def until(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds it took ``condition()`` to hold; fails after ``timeout``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not condition():
        assert loop.time() - start < timeout, f"not within {timeout} s"
        await asyncio.sleep(0.02)
    return loop.time() - start


def _served(w: Workers) -> set[str]:
    return set(w.rooms() or ())


async def test_rooms_are_shared_fairly_and_never_served_twice(pg: str) -> None:
    a = Workers(LEASE, rooms=_rooms)
    b = Workers(LEASE, rooms=_rooms)
    await a.start()
    try:
        assert _served(a) == ROOMS  # alone, it serves every room from its start
        await b.start()
        try:
            # a sees b join, hands over the rooms above its share, b claims them
            await until(lambda: len(_served(a)) == 3 and len(_served(b)) == 2, timeout=15)
            assert _served(a) | _served(b) == ROOMS
            for _ in range(20):  # and it stays that way, never a room in both
                assert not _served(a) & _served(b)
                await asyncio.sleep(0.1)
            assert a.serves(next(iter(_served(a)))) and not a.serves(next(iter(_served(b))))
        finally:
            await b.stop()
        # b's clean stop released its rooms: a takes them at its next round, not after expiry
        took = await until(lambda: _served(a) == ROOMS, timeout=LEASE)
        assert took < LEASE
    finally:
        await a.stop()


MIXED = {f"telegram:{n}" for n in range(6)} | {f"discord:{n}" for n in range(2)}


async def _mixed() -> set[str]:
    return MIXED


def _platforms(w: Workers) -> dict[str, int]:
    out: dict[str, int] = {}
    for room in _served(w):
        out[room.partition(":")[0]] = out.get(room.partition(":")[0], 0) + 1
    return out


async def test_each_worker_holds_its_part_of_every_platform(pg: str) -> None:
    # Each bot's overall limit is divided evenly among the workers, so each worker must hold
    # half of each platform's rooms: a split by count alone would hand b four Telegram rooms
    # (the names above a's share) and leave a both Discord rooms.
    a = Workers(LEASE, rooms=_mixed)
    b = Workers(LEASE, rooms=_mixed)
    await a.start()
    try:
        assert _served(a) == MIXED
        await b.start()
        try:
            even = {"telegram": 3, "discord": 1}
            await until(lambda: _platforms(a) == even and _platforms(b) == even, timeout=15)
            assert _served(a) | _served(b) == MIXED and not _served(a) & _served(b)
        finally:
            await b.stop()
        await until(lambda: _served(a) == MIXED, timeout=LEASE)
    finally:
        await a.stop()


async def test_a_listener_runs_once_moves_when_its_holder_stops_renewing_and_at_once_on_a_clean_stop(pg: str) -> None:
    running: list[str] = []
    overlaps: list[list[str]] = []

    def listener(who: str) -> Callable[[], object]:
        async def run() -> None:
            running.append(who)
            if len(running) > 1:
                overlaps.append(list(running))
            try:
                await asyncio.Event().wait()
            finally:
                running.remove(who)

        return run

    a, b = Workers(LEASE), Workers(LEASE)
    await a.start()
    await b.start()
    la = asyncio.create_task(a.listen("telegram:updates", listener("a")))
    lb = asyncio.create_task(b.listen("telegram:updates", listener("b")))
    try:
        await until(lambda: len(running) == 1, timeout=10)
        first = running[0]
        holder, other = (a, b) if first == "a" else (b, a)
        await asyncio.sleep(LEASE)  # renewed meanwhile: it stays where it is
        assert running == [first]

        # the holder stops renewing (its process stalls, or its database connection is gone)
        assert holder._task is not None
        holder._task.cancel()
        took = await until(lambda: running == ["b" if first == "a" else "a"], timeout=LEASE * 3)
        assert took > LEASE / 2  # it waited for the lease to expire, not for a release
        assert not overlaps  # the stalled holder stopped its listener before the other started it

        # the stalled worker comes back: the listener stays where it is now
        holder._task = asyncio.create_task(holder._run())
        await asyncio.sleep(LEASE)
        assert running == ["b" if first == "a" else "a"]

        # a clean stop of the new holder hands the listener back at once, not after expiry
        (lb if other is b else la).cancel()
        await other.stop()
        took = await until(lambda: running == [first], timeout=LEASE * 3)
        assert took < LEASE - 1
        assert not overlaps
    finally:
        for t in (la, lb):
            t.cancel()
        await asyncio.gather(la, lb, return_exceptions=True)
        await a.stop()
        await b.stop()


async def test_the_stalled_worker_resumes_renewing(pg: str) -> None:
    """Complement of the takeover above: a worker whose loop runs again claims what is free."""
    a = Workers(LEASE, rooms=_rooms)
    await a.start()
    try:
        assert a._task is not None
        a._task.cancel()
        await until(lambda: not _served(a), timeout=LEASE * 2)  # stale: serves nothing
        a._task = asyncio.create_task(a._run())
        await until(lambda: _served(a) == ROOMS, timeout=LEASE * 3)
    finally:
        await a.stop()


async def test_on_sqlite_the_one_worker_holds_everything_without_a_query(tmp_path: Path) -> None:
    await open_database(f"sqlite://{tmp_path}/b.sqlite3")
    try:
        w = Workers(LEASE, rooms=_rooms)
        await w.start()
        assert w.solo and w.rooms() is None and w.serves("telegram:1") and w.live == 1
        assert await w.listen("telegram:updates", lambda: asyncio.sleep(0, result="ran")) == "ran"
        await w.stop()
    finally:
        await close_database()
