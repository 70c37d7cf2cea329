"""Several workers on one Postgres database: which rooms and listeners this process serves.

Each room (destination) and each listener (Telegram updates, the Discord gateway, a network's
firehose, stream or poller) is a lease (see ``bridge.storage.leases``). A loop renews what this
worker holds every third of ``[bridge] lease_seconds``, claims what is free, and sheds rooms
above its fair share so that a worker that joins gets work. The share is counted per platform
(``ceil(rooms of that platform / live workers)`` of each): a bot's overall limit is divided
evenly among the live workers, so each must hold about 1/N of that bot's rooms.

Safety: a lease counts as held here only until ``lease_seconds`` minus a margin after the
renewal that last confirmed it (measured from when that renewal was sent). So a worker whose
renewals stop (the database is away, the process stalls) stops sending to a room and stops a
listener before the lease expires in the database and another worker can claim it. A room
being given up is first left by the dispatcher (its in-flight send finishes) and only then
released. A clean stop releases everything at once, after the in-flight sends finished.

On SQLite (one process: ``bridge run`` takes the file's lock) this worker holds everything
without a query: ``solo``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

from bridge.storage.leases import LeaseStore, is_postgres

log = logging.getLogger("bridge.workers")

T = TypeVar("T")
DEST = "dest:"
LISTEN = "listen:"


class Workers:
    """``start`` once the database is open; ``stop`` after the dispatcher drained and the
    adapters stopped, before the database is closed."""

    def __init__(
        self,
        lease_seconds: float,
        *,
        rooms: Callable[[], Awaitable[Collection[str]]] | None = None,
        busy: Callable[[str], bool] = lambda _dest: False,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.seconds = float(lease_seconds)
        # Renewals come three times per lease; one missed renewal never loses a lease.
        self.every = self.seconds / 3
        # A lease counts as held here until this long before it would expire in the database.
        self.margin = max(1.0, self.seconds / 5)
        self._rooms = rooms  # the rooms there is work for (destinations of subscriptions or pending rows)
        self._busy = busy  # whether the dispatcher is sending to a room now
        self._on_change = on_change  # rooms were won or lost: the dispatcher looks again
        self.solo = True
        self.store = LeaseStore(lease_seconds)
        self.live = 1  # live workers, this one included
        self.worker_id: int | None = None
        self._held: dict[str, int] = {}  # lease → token
        self._valid_until = 0.0  # loop time until which ``_held`` may be trusted
        self._leaving: set[str] = set()  # rooms being handed to another worker
        self._listeners: set[str] = set()  # listener leases wanted by running ``listen`` calls
        self._release: set[str] = set()  # listener leases whose listener ended
        self._known_rooms: set[str] = set()  # the rooms with work at the last round
        self._moved = asyncio.Event()
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self.solo = not is_postgres()
        self._stopping = False
        if self.solo:
            return
        self.worker_id = await self.store.register(socket.gethostname(), os.getpid())
        log.info("worker registered worker=%d lease_seconds=%g", self.worker_id, self.seconds)
        await self._round()  # rooms and listeners free now are served from the start
        self._task = asyncio.create_task(self._run(), name="leases")

    async def stop(self) -> None:
        """Release every lease now (another worker takes over at once) and remove this
        worker's row. Call it after in-flight sends finished and listeners stopped."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if self.solo or self.worker_id is None:
            return
        held = len(self._held)
        self._held.clear()
        self._changed()
        try:
            await self.store.leave()
            log.info("worker left; leases released worker=%d leases=%d", self.worker_id, held)
        except Exception as exc:  # the leases expire by themselves
            log.warning("could not release leases; they expire within %g s reason=%r", self.seconds, str(exc))

    # --- what this worker holds --------------------------------------------------------------

    def holds(self, name: str) -> bool:
        if self.solo:
            return True
        return name in self._held and asyncio.get_running_loop().time() < self._valid_until

    def serves(self, destination: str) -> bool:
        """Whether this worker may send to ``destination`` now. No query."""
        if self.solo:
            return True
        name = DEST + destination
        return name not in self._leaving and self.holds(name)

    def rooms(self) -> Collection[str] | None:
        """The rooms this worker serves now; None when it serves every room (SQLite)."""
        if self.solo:
            return None
        if asyncio.get_running_loop().time() >= self._valid_until:
            return ()
        return [n.removeprefix(DEST) for n in self._held if n.startswith(DEST) and n not in self._leaving]

    def held(self) -> dict[str, int]:
        """Lease names held now, by kind ("dest", "listen"), counted: for /metrics."""
        out: dict[str, int] = {"dest": 0, "listen": 0}
        for name in self._held:
            if self.holds(name):
                kind = name.split(":", 1)[0]
                out[kind] = out.get(kind, 0) + 1
        return out

    def new_work(self, destinations: Collection[str]) -> None:
        """Deliveries were written for ``destinations``: a room nobody had work for at the last
        round is claimed now rather than at the next one. No query."""
        if not self.solo and not self._stopping and any(d not in self._known_rooms for d in destinations):
            self._known_rooms.update(destinations)
            self._kick.set()

    # --- listeners ---------------------------------------------------------------------------

    async def listen(self, name: str, run: Callable[[], Awaitable[T]]) -> T:
        """Run ``run()`` while this worker holds the listener lease ``name``: wait for it,
        run, cancel ``run()`` when the lease is lost (before it expires for the others), and
        wait for it again. Returns (or raises) what ``run()`` returns (raises) when it ends by
        itself; the lease is then given back. On SQLite it is just ``run()``."""
        if self.solo:
            return await run()
        lease = LISTEN + name
        self._listeners.add(lease)
        self._kick.set()
        try:
            while True:
                await self._wait(lambda: self.holds(lease))
                log.info("listener started: this worker holds it listener=%s worker=%s", name, self.worker_id)
                task = asyncio.ensure_future(run())
                lost = asyncio.ensure_future(self._wait(lambda: not self.holds(lease)))
                try:
                    await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    lost.cancel()
                    if not task.done():
                        task.cancel()
                        with contextlib.suppress(BaseException):
                            await task
                if task.done() and not task.cancelled() and not lost.done():
                    return task.result()
                log.warning("listener stopped: the lease was lost listener=%s worker=%s", name, self.worker_id)
        finally:
            self._listeners.discard(lease)
            self._release.add(lease)
            self._kick.set()

    async def _wait(self, condition: Callable[[], bool]) -> None:
        """Until ``condition()`` holds: re-checked when leases move and when the held ones
        would go stale."""
        loop = asyncio.get_running_loop()
        while not condition():
            self._moved.clear()
            stale_in = self._valid_until - loop.time()
            timeout = stale_in + 0.01 if stale_in > 0 else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._moved.wait()

    # --- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.every):
                    await self._kick.wait()
            self._kick.clear()
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be away: held leases go stale by themselves
                log.warning("could not renew leases reason=%r", str(exc))
            if asyncio.get_running_loop().time() >= self._valid_until and self._held:
                log.warning("leases not renewed in time; stopped serving them leases=%d", len(self._held))
                self._held.clear()
                self._changed()

    async def _round(self) -> None:
        loop = asyncio.get_running_loop()
        sent = loop.time()
        renewed = await self.store.renew()
        lost = set(self._held) - set(renewed)
        if lost:
            log.warning("leases lost to another worker leases=%s", sorted(lost)[:10])
        # Leases renewed that this process no longer tracks (a listener ended meanwhile) go back.
        self._held = renewed
        self._valid_until = sent + self.seconds - self.margin
        self.live = await self.store.live_workers()
        if self._stopping:
            self._changed()
            return
        extra = [n for n in self._held if n.startswith(LISTEN) and n not in self._listeners]
        extra += [n for n in self._release if n in self._held and n not in self._listeners]
        self._release.clear()
        if extra:
            await self.store.release(extra)
            for n in extra:
                self._held.pop(n, None)
        await self._balance_rooms()
        wanted = [n for n in self._listeners if n not in self._held]
        if wanted:
            self._held.update(await self.store.claim(wanted, len(wanted)))
        self._changed()

    async def _balance_rooms(self) -> None:
        found = set(await self._rooms()) if self._rooms is not None else set()
        self._known_rooms = found
        rooms = {DEST + r for r in found}
        mine = {n for n in self._held if n.startswith(DEST)}
        # Rooms without work any more are given back too: whoever has work for them claims them.
        gone = {n for n in mine - rooms if not self._busy(n.removeprefix(DEST))}
        active = mine - gone
        self._leaving &= active
        # The fair share is counted per platform (the part of a room's name before its first
        # colon, i.e. one bot): each bot's overall limit is divided evenly among the live
        # workers (Host.workers), so each worker must hold about as many of that bot's rooms as
        # the others, or its part of the limit caps it while another's goes unused.
        by_platform = _by_platform(rooms | active)
        share = {p: math.ceil(len(names & rooms) / self.live) if names & rooms else 0 for p, names in by_platform.items()}
        for p, names in by_platform.items():
            held_p = active & names
            leaving_p = self._leaving & held_p
            excess = len(held_p) - share[p]
            if excess > len(leaving_p):
                # Hand the rooms above our share over; a room is released only once its send ended.
                self._leaving.update(sorted(held_p - leaving_p, reverse=True)[: excess - len(leaving_p)])
        gone |= {n for n in self._leaving if not self._busy(n.removeprefix(DEST))}
        if gone:
            await self.store.release(gone)
            for n in gone:
                self._held.pop(n, None)
            if gone & self._leaving:
                log.info("rooms handed over for balance rooms=%d live_workers=%d", len(gone & self._leaving), self.live)
        self._leaving &= set(self._held)
        held = {n for n in self._held if n.startswith(DEST)}
        won: dict[str, int] = {}
        orphans: set[str] = set()
        for p, names in sorted(by_platform.items()):
            want = (names & rooms) - held
            if not want:
                continue
            # One claim per platform with room under its share, only while rooms of it are not
            # held here: a balanced worker sends none.
            room_for = share[p] - len(names & held)
            won_p = await self.store.claim(want, room_for) if room_for > 0 else {}
            won.update(won_p)
            # Rooms nobody claimed for a whole lease (their worker died and the others are full)
            # are taken beyond the share: no room waits for the live count to catch up. When the
            # claim above found fewer free rooms than it could take, there are none.
            if room_for <= 0 or len(won_p) == room_for:
                orphans |= want - set(won_p)
        if orphans:
            won.update(await self.store.claim(orphans, len(orphans), min_age=self.seconds))
        if won:
            log.info("rooms claimed rooms=%d live_workers=%d", len(won), self.live)
        self._held.update(won)

    def _changed(self) -> None:
        self._moved.set()
        self._on_change()


def _by_platform(names: Collection[str]) -> dict[str, set[str]]:
    """Room lease names grouped by platform (``dest:telegram:-100…`` → ``telegram``)."""
    out: dict[str, set[str]] = {}
    for n in names:
        out.setdefault(n.removeprefix(DEST).partition(":")[0], set()).add(n)
    return out


__all__ = ["DEST", "LISTEN", "Workers"]
