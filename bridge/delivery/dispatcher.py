"""Sends pending deliveries to the chat adapters.

One worker per destination at a time (posts reach a room in order), at most
``concurrency`` destinations at once. A 429 holds back only the destination it names;
transient failures back off with jitter; permanent ones are recorded and skipped, so a
poison row never blocks the rows behind it; a destination that is gone is paused.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from bridge.delivery.buttons import buttons_for
from bridge.errors import DestinationUnavailable, Permanent, RateLimited
from bridge.model import ChatTarget, Delivery
from bridge.ops.metrics import Metrics
from bridge.protocols import ChatAdapter
from bridge.storage.store import Confirmed, PendingDelivery, Store, utcnow

log = logging.getLogger("bridge.delivery.dispatcher")

MAX_ATTEMPTS = 12  # with the backoff below, about an hour of trying before giving up
BATCH = 50
NOTICE_EVERY = timedelta(minutes=10)


def backoff(attempts: int) -> float:
    """Seconds before retry number ``attempts``: exponential, capped at 10 minutes, with full
    jitter so that many rows failing together do not retry together."""
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
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self._store = store
        self._chats = chats
        self._concurrency = concurrency
        self._send_timeout = send_timeout
        self._open_thread = open_thread
        self._on_paused = on_paused
        self._wake = asyncio.Event()
        self._active: dict[str, asyncio.Task[None]] = {}
        self._blocked_until: dict[str, datetime] = {}
        self._stopping = False
        # Group commit: sends confirmed while the ledger is busy are recorded together.
        self._confirmed: list[tuple[Confirmed, asyncio.Future[None]]] = []
        self._recorder: asyncio.Task[None] | None = None
        self.sent = 0  # counters for status and benchmarks
        self.failed = 0

    def wake(self) -> None:
        """New deliveries may be due."""
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
        for dest in await self._store.due_destinations(now, exclude=busy):
            if len(self._active) >= self._concurrency or self._stopping:
                break
            self._active[dest] = asyncio.create_task(self._work(dest), name=f"deliver {dest}")

    async def _idle_timeout(self) -> float:
        if len(self._active) >= self._concurrency:
            return 5.0  # a worker finishing wakes us
        nxt = await self._store.next_due()
        if nxt is None:
            return 5.0
        return max(0.01, min(5.0, (nxt - utcnow()).total_seconds()))

    async def _work(self, dest: str) -> None:
        try:
            while not self._stopping:
                batch = await self._store.pending_for(dest, utcnow(), BATCH)
                if not batch:
                    return
                for pending in batch:
                    if self._stopping or not await self._send(pending):
                        return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery worker failed destination=%s", dest)
        finally:
            self._active.pop(dest, None)
            self._wake.set()

    async def _send(self, pending: PendingDelivery) -> bool:
        """Send one delivery; False when the destination must wait (or is paused)."""
        target = pending.destination
        dest = str(target)
        chat = self._chats.get(target.platform)
        if chat is None:
            await self._store.mark_failed(pending.id, f"no [{target.platform}] section is configured")
            return True
        delivery = Delivery(
            id=pending.id,
            key=pending.key,
            post=pending.post,
            target=target,
            buttons=buttons_for(pending.post, pending.id),
            open_thread=self._open_thread(pending.subscription_id),
        )
        try:
            # A platform that stops answering must not hold its rooms forever (client libraries
            # default to minutes): give up on this attempt and retry it with backoff.
            # asyncio.timeout rather than wait_for: wait_for runs the send in a task of its own,
            # which cost about a third of a millisecond of CPU per send in bench.pipeline.
            async with asyncio.timeout(self._send_timeout):
                sent = await chat.send(delivery)
        except TimeoutError:
            return await self._retry(pending, f"no answer within {self._send_timeout:g} s")
        except RateLimited as exc:
            until = utcnow() + timedelta(seconds=max(exc.retry_after, 0.05))
            self._blocked_until[dest] = until
            await self._store.mark_retry(pending.id, until, str(exc), count_attempt=False)
            self.metrics.delivery(target.platform, pending.post.ref.network, "rate_limited")
            log.info("rate limited destination=%s retry_after=%.2f delivery=%s", dest, exc.retry_after, pending.id)
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
            return await self._retry(pending, str(exc) or type(exc).__name__)
        await self._record_sent(Confirmed(pending, sent.message_ids, sent.thread_id))
        self.sent += 1
        self.metrics.delivery(target.platform, pending.post.ref.network, "sent", self.metrics.since(pending.post.created_at))
        log.info(
            "delivered delivery=%s post=%s destination=%s message=%s", pending.id, pending.post.ref, dest, sent.message_ids[:1]
        )
        return True

    async def _retry(self, pending: PendingDelivery, reason: str) -> bool:
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
            "delivery retry delivery=%s destination=%s attempt=%d in=%.1fs reason=%r", pending.id, dest, attempts, delay, reason
        )
        return False

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
            try:
                await self._store.mark_sent_many([c for c, _ in batch])
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                        done.exception()  # its worker may be gone (cancelled); it logs its own failure
            else:
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
        if not tasks:
            return 0
        _done, still = await asyncio.wait(tasks, timeout=timeout)
        for t in still:
            t.cancel()
        if still:
            await asyncio.wait(still, timeout=1.0)
        if self._recorder is not None and not self._recorder.done():
            await asyncio.wait([self._recorder], timeout=max(timeout, 1.0))  # sends already out are recorded
        return len(still)
