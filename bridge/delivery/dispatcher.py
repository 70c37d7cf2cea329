"""Sends pending deliveries to the chat adapters.

One worker per destination at a time (posts reach a room in order), at most
``concurrency`` destinations at once. A 429 holds back only the destination it names;
transient failures back off with jitter; permanent ones are recorded and skipped, so a
poison row never blocks the rows behind it; a destination that is gone is paused.

A post sent as several chat messages is recorded part by part as the adapter reports them, so
a retry resumes at the next part; a send the platform accepted is recorded however long the
database takes to answer (it is never sent again because its record failed). While rooms wait
(429, pacing, backoff) the loop sleeps until the first row it may actually send is due.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta

from bridge.delivery.buttons import buttons_for
from bridge.errors import AuthFailed, DestinationMoved, DestinationUnavailable, Permanent, RateLimited
from bridge.model import Button, ChatTarget, Delivery, Post, Source
from bridge.ops.metrics import Metrics
from bridge.protocols import ChatAdapter
from bridge.storage.store import Confirmed, PendingDelivery, Store, utcnow

log = logging.getLogger("bridge.delivery.dispatcher")

# Failed attempts before a delivery is given up. With the backoff below, attempts 1-15 wait
# 2, 4, ... 512 s, then 600 s each (jitter takes up to half off each): 39 to 77 minutes of
# trying, about an hour. 429s and pacing waits are not counted.
MAX_ATTEMPTS = 16
# A chat platform that refuses our token cannot send anywhere until a person fixes it: its rooms
# are tried again this often, without spending their rows' attempts (they must not be given up).
AUTH_HOLD = 30.0
BATCH = 50
NOTICE_EVERY = timedelta(minutes=10)
# The longest the loop sleeps without a wake-up: rows another process adds are seen this late.
IDLE = 5.0
# Recording a send that went out is retried with this backoff (seconds) until it holds.
RECORD_RETRY_FIRST = 0.1
RECORD_RETRY_MAX = 5.0


def backoff(attempts: int) -> float:
    """Seconds before retry number ``attempts``: exponential, capped at 10 minutes, with jitter
    (between half and all of it) so that many rows failing together do not retry together."""
    ceiling = min(600.0, 2.0 ** min(attempts, 12))
    return random.uniform(ceiling / 2, ceiling)


class Dispatcher:
    def __init__(
        self,
        store: Store,
        chats: Mapping[str, ChatAdapter],
        *,
        concurrency: int = 16,
        send_timeout: float = 30.0,
        open_thread: Callable[[int | None], bool] = lambda _sub: False,
        on_paused: Callable[[ChatTarget, str], None] = lambda _t, _r: None,
        on_moved: Callable[[ChatTarget, ChatTarget], Awaitable[None]] | None = None,
        buttons: Callable[[Post, int], tuple[Button, ...]] = buttons_for,
        metrics: Metrics | None = None,
        paused: Callable[[str], bool] = lambda _dest: False,
        topic_of: Callable[[int | None], tuple[Source, str] | None] = lambda _sub: None,
        compact: Callable[[str], bool] = lambda _dest: False,
        serves: Callable[[str], bool] | None = None,
        rooms: Callable[[], Collection[str] | None] = lambda: None,
    ) -> None:
        self.metrics = metrics or Metrics()
        # Whether a room is paused now (by /pause, `bridge pause` from another process, or a
        # failure): a worker stops before its next send, not after the batch it holds.
        self._paused = paused
        # Several workers (bridge.workers): the rooms this one holds the lease of (None: all), and
        # whether it still holds one, checked before every send, so a room whose lease is lost
        # or handed over gets nothing more from here. Both are answered from memory.
        self._serves = serves
        self._rooms = rooms
        self._store = store
        self._chats = chats
        self._concurrency = concurrency
        self._send_timeout = send_timeout
        self._open_thread = open_thread
        # (feed, topic name) of a subscription that relays into a topic or thread of its own.
        self._topic_of = topic_of
        self._compact = compact  # whether a chat (platform:chat_id) wants the compact format
        self._on_paused = on_paused
        self._on_moved = on_moved
        self._buttons = buttons  # the buttons a post's network allows (bridge.delivery.buttons)
        self._wake = asyncio.Event()
        self._active: dict[str, asyncio.Task[None]] = {}
        self._blocked_until: dict[str, datetime] = {}
        self._stopping = False
        # Group commit: sends confirmed while the ledger is busy are recorded together.
        self._confirmed: list[tuple[Confirmed, asyncio.Future[None]]] = []
        self._recorder: asyncio.Task[None] | None = None
        self._part_records: set[asyncio.Task[None]] = set()
        self.sent = 0  # counters for status and benchmarks
        self.failed = 0

    def busy(self, destination: str) -> bool:
        """Whether a send to ``destination`` is under way (or its records are being written)."""
        return destination in self._active

    def wake(self) -> None:
        """New deliveries may be due."""
        self._wake.set()

    def release(self, platform: str) -> None:
        """``platform`` works again: its rooms held back in this process go at once."""
        prefix = platform + ":"
        self._blocked_until = {d: t for d, t in self._blocked_until.items() if not d.startswith(prefix)}
        self._wake.set()

    async def run(self) -> None:
        """Schedule workers until ``drain`` is called. Survives database hiccups."""
        while not self._stopping:
            self._wake.clear()
            try:
                await self._schedule()
                timeout = await self._idle_timeout()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatcher loop error; retrying in 1s")
                timeout = 1.0
            if self._stopping:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _schedule(self) -> None:
        now = utcnow()
        self._blocked_until = {d: t for d, t in self._blocked_until.items() if t > now}
        busy = set(self._active) | set(self._blocked_until)
        for dest in await self._store.due_destinations(now, exclude=busy, only=self._rooms()):
            if len(self._active) >= self._concurrency or self._stopping:
                break
            self._active[dest] = asyncio.create_task(self._work(dest), name=f"deliver {dest}")

    async def _idle_timeout(self) -> float:
        """Seconds until a row the loop may send is due: rooms with a worker wake the loop when
        it ends, and a room held back (429, pacing, backoff) counts only from when it is free,
        however many of its rows are past due meanwhile."""
        if len(self._active) >= self._concurrency:
            return IDLE  # a worker finishing wakes us
        nxt = await self._store.next_due(exclude=set(self._active) | set(self._blocked_until), only=self._rooms())
        times = [t for t in (nxt, *self._blocked_until.values()) if t is not None]
        if not times:
            return IDLE
        return max(0.01, min(IDLE, (min(times) - utcnow()).total_seconds()))

    async def _work(self, dest: str) -> None:
        try:
            while not self._stopping:
                batch = await self._store.pending_for(dest, utcnow(), BATCH)
                if not batch:
                    return
                for pending in batch:
                    if self._stopping or self._paused(dest) or not self._holds(dest) or not await self._send(pending):
                        return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery worker failed destination=%s", dest)
        finally:
            self._active.pop(dest, None)
            self._wake.set()

    def _holds(self, dest: str) -> bool:
        return self._serves is None or self._serves(dest)

    async def _send(self, pending: PendingDelivery) -> bool:
        """Send one delivery; False when the destination must wait (or is paused)."""
        target = pending.destination
        dest = str(target)
        chat = self._chats.get(target.platform)
        if chat is None:
            await self._store.mark_failed(pending.id, f"no [{target.platform}] section is configured")
            return True
        topic = self._topic_of(pending.subscription_id)
        known = ""
        if topic is not None:
            # Read each time, not cached: another worker may have created the topic since.
            known = await self._store.topic_id(target.room, topic[0])
        delivery = Delivery(
            id=pending.id,
            key=pending.key,
            post=pending.post,
            target=target if topic is None else ChatTarget(target.platform, target.chat_id, known),
            buttons=self._buttons(pending.post, pending.id),
            open_thread=self._open_thread(pending.subscription_id),
            parts_done=pending.parts,
            topic=topic[1] if topic is not None else "",
            compact=self._compact(str(target.room)),
        )
        loop = asyncio.get_running_loop()
        parts = list(pending.parts)
        deadline: asyncio.Timeout | None = None

        async def progress(index: int, message_ids: tuple[str, ...]) -> None:
            if index != len(parts):
                raise RuntimeError(f"part {index} reported after {len(parts)} parts (delivery {pending.id})")
            parts.append(tuple(message_ids))
            if deadline is not None:
                deadline.reschedule(None)  # the part is out: wait for its record however long it takes
            await self._record_part(pending, tuple(parts))
            if deadline is not None:
                deadline.reschedule(loop.time() + self._send_timeout)

        try:
            # A platform that stops answering must not hold its rooms forever (client libraries
            # default to minutes): give up on this attempt and retry it with backoff. The deadline
            # restarts at each recorded part, so it bounds one request, not the whole post; the
            # adapter hands back its pacing waits as RateLimited instead of sleeping through it.
            # asyncio.timeout rather than wait_for: wait_for runs the send in a task of its own,
            # which cost about a third of a millisecond of CPU per send in bench.pipeline.
            async with asyncio.timeout(self._send_timeout) as deadline:
                sent = await chat.send(delivery, progress)
        except TimeoutError:
            return await self._retry(pending, f"no answer within {self._send_timeout:g} s", len(parts))
        except DestinationMoved as exc:
            # Nothing was sent: the chat's rows (this one included) move to the new chat, whose
            # own worker sends them.
            if self._on_moved is not None:
                await self._on_moved(exc.old, exc.new)
            else:
                await self._store.move_destination(exc.old, exc.new)
            log.info("destination moved from=%s to=%s delivery=%s", exc.old, exc.new, pending.id)
            self._wake.set()
            return False
        except RateLimited as exc:
            until = utcnow() + timedelta(seconds=max(exc.retry_after, 0.05))
            self._blocked_until[dest] = until
            await self._store.mark_retry(pending.id, until, str(exc), count_attempt=False)
            self.metrics.delivery(target.platform, pending.post.ref.network, "rate_limited")
            log.info("rate limited destination=%s retry_after=%.2f delivery=%s", dest, exc.retry_after, pending.id)
            return False
        except AuthFailed:
            # Held in memory only: no attempt spent, nothing written while the platform is down;
            # ``release`` lets the room go as soon as the adapter reports the login works again.
            self._blocked_until[dest] = utcnow() + timedelta(seconds=AUTH_HOLD)
            self.metrics.delivery(target.platform, pending.post.ref.network, "retry")
            log.info("held: the platform refuses our token destination=%s delivery=%s", dest, pending.id)
            return False
        except DestinationUnavailable as exc:
            n = await self._store.pause_destination(target, str(exc))
            log.warning("destination paused destination=%s reason=%r failed_pending=%d", dest, str(exc), n)
            self._on_paused(target, str(exc))
            self.metrics.delivery(target.platform, pending.post.ref.network, "paused")
            self.failed += 1
            return False
        except Permanent as exc:
            await self._store.mark_failed(pending.id, str(exc))
            self.failed += 1
            self.metrics.delivery(target.platform, pending.post.ref.network, "failed")
            log.warning(
                "delivery failed permanently delivery=%s destination=%s post=%s reason=%r",
                pending.id,
                dest,
                pending.post.ref,
                str(exc),
            )
            await self._tell_room(
                target, f"Could not deliver a post by @{pending.post.author.handle} here: {exc}. {pending.post.url}".strip()
            )
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Transient, or an adapter bug: both are retried, then given up
            return await self._retry(pending, str(exc) or type(exc).__name__, len(parts))
        if topic is not None and sent.topic_id and sent.topic_id != known:
            # The adapter created the topic (or created it again after it was deleted): the
            # next posts of this feed go there. A crash before this line leaves that topic
            # unused, and the retry creates another.
            log.info("topic created destination=%s topic=%r id=%s was=%s", dest, topic[1], sent.topic_id, known or "none")
            await self._until_recorded(
                lambda: self._store.set_topic(target.room, topic[0], topic[1], sent.topic_id), f"topic of delivery {pending.id}"
            )
        await self._record_sent(Confirmed(pending, sent.message_ids, sent.thread_id))
        self.sent += 1
        self.metrics.delivery(target.platform, pending.post.ref.network, "sent", self.metrics.since(pending.post.created_at))
        log.info(
            "delivered delivery=%s post=%s destination=%s message=%s", pending.id, pending.post.ref, dest, sent.message_ids[:1]
        )
        return True

    async def _retry(self, pending: PendingDelivery, reason: str, parts_done: int = 0) -> bool:
        """Schedule another attempt with backoff, or give up after MAX_ATTEMPTS. False: the
        destination waits."""
        dest = str(pending.destination)
        attempts = pending.attempts + 1
        if attempts >= MAX_ATTEMPTS:
            await self._store.mark_failed(pending.id, f"gave up after {attempts} attempts: {reason}")
            self.failed += 1
            self.metrics.delivery(pending.destination.platform, pending.post.ref.network, "given_up")
            log.warning("delivery given up delivery=%s destination=%s reason=%r", pending.id, dest, reason)
            return True
        delay = backoff(attempts)
        await self._store.mark_retry(pending.id, utcnow() + timedelta(seconds=delay), reason)
        self.metrics.delivery(pending.destination.platform, pending.post.ref.network, "retry")
        self._blocked_until[dest] = utcnow() + timedelta(seconds=delay)
        log.info(
            "delivery retry delivery=%s destination=%s attempt=%d in=%.1fs parts_done=%d reason=%r",
            pending.id,
            dest,
            attempts,
            delay,
            parts_done,
            reason,
        )
        return False

    async def _until_recorded(self, record: Callable[[], Awaitable[None]], what: str) -> None:
        """Run ``record`` until it holds: what it records is already in the chat, so giving up
        would send it again. One log line per failed try, with backoff (a database blip or a
        restart of the database server)."""
        delay = RECORD_RETRY_FIRST
        failures = 0
        while True:
            try:
                await record()
            except Exception as exc:
                failures += 1
                log.warning(
                    "send not recorded yet, retrying in %.1fs what=%s failures=%d reason=%r",
                    delay,
                    what,
                    failures,
                    str(exc) or type(exc).__name__,
                )
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, RECORD_RETRY_MAX)
                continue
            if failures:
                log.info("send recorded what=%s after_failures=%d", what, failures)
            return

    async def _record_part(self, pending: PendingDelivery, parts: Sequence[tuple[str, ...]]) -> None:
        """Return once ``parts`` (every part delivered so far) is in the ledger. Shielded and
        tracked: a cancelled worker's part is still recorded, and drain waits for it."""
        task = asyncio.create_task(
            self._until_recorded(
                lambda: self._store.record_parts(pending, parts), f"delivery {pending.id} part {len(parts) - 1}"
            ),
            name=f"record part {pending.id}",
        )
        self._part_records.add(task)
        task.add_done_callback(self._part_records.discard)
        await asyncio.shield(task)

    async def _record_sent(self, confirmed: Confirmed) -> None:
        """Return once the send is in the ledger. The worker waits for it before its next send,
        as with a commit of its own, but workers that finish together share one transaction:
        one commit per round instead of one per delivery."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirmed.append((confirmed, done))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_confirmed(), name="record sent")
        # Shielded: the message is out, so it is recorded even if this worker is cancelled.
        await asyncio.shield(done)

    async def _record_confirmed(self) -> None:
        while self._confirmed:
            batch, self._confirmed = self._confirmed, []
            confirmed = [c for c, _ in batch]
            what = f"deliveries {','.join(str(c.delivery.id) for c in confirmed[:5])}" + ("…" if len(confirmed) > 5 else "")
            await self._until_recorded(lambda confirmed=confirmed: self._store.mark_sent_many(confirmed), what)
            for _, done in batch:
                if not done.done():
                    done.set_result(None)

    async def _tell_room(self, target: ChatTarget, text: str) -> None:
        now = utcnow()
        before = await self._store.note_notice(target, now)
        if before is not None and now - before < NOTICE_EVERY:
            return
        chat = self._chats.get(target.platform)
        try:
            if chat is not None:
                await chat.notify(target, text)
        except Exception as exc:
            log.info("could not tell the room about a failure destination=%s reason=%r", target, str(exc))

    async def drain(self, timeout: float) -> int:
        """Take no new work; give in-flight sends ``timeout`` seconds, then cancel them (their
        rows stay pending and are sent after the next start). Returns how many were cancelled."""
        self._stopping = True
        self._wake.set()
        tasks = list(self._active.values())
        still: set[asyncio.Task[None]] = set()
        if tasks:
            _done, still = await asyncio.wait(tasks, timeout=timeout)
        for t in still:
            t.cancel()
        if still:
            await asyncio.wait(still, timeout=1.0)
        recording = [t for t in (self._recorder, *self._part_records) if t is not None and not t.done()]
        if recording:
            await asyncio.wait(recording, timeout=max(timeout, 1.0))  # sends already out are recorded
        return len(still)
