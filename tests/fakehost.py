"""One fake Host for adapter-level tests: the core as an adapter sees it.

It keeps state and cursors in dicts, records every batch an adapter ingests and every call a
chat adapter makes (events, links, moves, unavailable destinations), and answers events with
``answer`` (default: ``did <command> <args>``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from bridge.matching.filters import Filters
from bridge.model import Answer, Batch, ChatEvent, ChatTarget, Item, Source, SubscriptionSummary


def _echo(event: ChatEvent) -> Answer:
    return Answer(f"did {event.command or event.kind} {event.args}".strip())


class FakeHost:
    def __init__(
        self, sources: Iterable[Source] = (), answer: Callable[[ChatEvent], Answer] | None = None, name: str = "bluesky"
    ) -> None:
        self.log = logging.getLogger("tests.host")
        self.name = name
        self.subs: dict[ChatTarget, tuple[SubscriptionSummary, ...]] = {}
        self.state: dict[str, str] = {}
        self.cursors: dict[str, str] = {}
        self.batches: list[Batch] = []
        self.events: list[ChatEvent] = []
        self.links: list[tuple[ChatTarget, str, str]] = []
        self.moves: list[tuple[ChatTarget, ChatTarget]] = []
        self.unavailable: list[tuple[ChatTarget, str]] = []
        self.health: list[tuple[bool, str]] = []
        self.requests: list[tuple[str, str]] = []
        self.lag: dict[str, float] = {}
        self.pacing: list[float] = []
        self.spend: tuple[float, float | None, float | None] | None = None
        self.webhooks: dict[str, Callable[..., Any]] = {}
        self.answer: Callable[[ChatEvent], Answer] = answer or _echo
        self.listening: set[str] = set()  # listeners running (Host.listen)
        self.live_workers = 1
        self._sources = set(sources)
        self.source_filters: dict[Source, tuple[Filters, ...]] = {}  # what ``filters`` answers
        self._sources_changed = asyncio.Event()
        self._changed = asyncio.Condition()

    async def _record(self, bucket: list, value: object) -> None:
        async with self._changed:
            bucket.append(value)
            self._changed.notify_all()

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``condition()`` holds (checked after each recorded call)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(condition), timeout)

    # --- state ----------------------------------------------------------------------------

    async def load_state(self, key: str) -> str | None:
        return self.state.get(key)

    async def save_state(self, key: str, value: str | None) -> None:
        if value is None:
            self.state.pop(key, None)
        else:
            self.state[key] = value

    async def replace_state(self, key: str, expected: str | None, value: str) -> bool:
        if self.state.get(key) != expected:
            return False
        self.state[key] = value
        return True

    async def listen(self, name: str, run: Callable[[], Awaitable[Any]]) -> Any:
        self.listening.add(name)
        try:
            return await run()
        finally:
            self.listening.discard(name)

    def workers(self) -> int:
        return self.live_workers

    async def report_health(self, ok: bool, reason: str = "", *, limited: bool = False) -> None:
        await self._record(self.health, (ok, reason))

    # --- network side ---------------------------------------------------------------------

    def sources(self) -> frozenset[Source]:
        return frozenset(self._sources)

    def filters(self, source: Source) -> tuple[Filters, ...]:
        return self.source_filters.get(source, (Filters(),) if source in self._sources else ())

    def set_sources(self, *sources: Source) -> None:
        self._sources = set(sources)
        self._sources_changed.set()

    async def sources_changed(self) -> None:
        await self._sources_changed.wait()
        self._sources_changed.clear()

    async def load_cursor(self, key: str) -> str | None:
        return self.cursors.get(key)

    async def ingest(self, batch: Batch) -> None:
        self.cursors.update(batch.cursors)
        await self._record(self.batches, batch)

    @property
    def items(self) -> list[Item]:
        return [it for b in self.batches for it in b.items]

    async def wait_items(self, pred: Callable[[list[Item]], bool], timeout: float = 15.0) -> list[Item]:
        await self.wait_for(lambda: pred(self.items), timeout)
        return self.items

    # --- chat side ------------------------------------------------------------------------

    async def handle(self, event: ChatEvent) -> Answer:
        await self._record(self.events, event)
        return self.answer(event)

    async def subscriptions(self, target: ChatTarget) -> tuple[SubscriptionSummary, ...]:
        return self.subs.get(target, ())

    async def link_message(self, target: ChatTarget, message_id: str, token: str) -> None:
        await self._record(self.links, (target, message_id, token))

    async def chat_moved(self, old: ChatTarget, new: ChatTarget) -> None:
        await self._record(self.moves, (old, new))

    async def destination_unavailable(self, target: ChatTarget, reason: str) -> None:
        await self._record(self.unavailable, (target, reason))

    def count_request(self, endpoint: str, status: int | str) -> None:
        self.requests.append((endpoint, str(status)))

    def stream_lag(self, stream: str, seconds: float) -> None:
        self.lag[stream] = seconds

    def report_spend(self, spent_usd: float, cap_usd: float | None = None, forecast_usd: float | None = None) -> None:
        self.spend = (spent_usd, cap_usd, forecast_usd)

    def pacing_wait(self, seconds: float) -> None:
        self.pacing.append(seconds)

    def serve_webhook(self, path: str, handler: Callable[..., Any]) -> None:
        self.webhooks[path] = handler
