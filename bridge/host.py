"""The Host each adapter gets: the core's side of the adapter boundary."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from bridge.commands.approval import DRAFT_PROMPTS, parse_draft_token
from bridge.delivery.buttons import parse_token
from bridge.model import Answer, Batch, ChatEvent, ChatTarget, Source, SubscriptionSummary
from bridge.redaction import redact

if TYPE_CHECKING:
    from bridge.core import Core
    from bridge.matching.filters import Filters
    from bridge.ops.http import WebhookHandler

T = TypeVar("T")


class AdapterHost:
    """Scoped to one adapter: its state keys and cursors are its own."""

    def __init__(self, bridge: Core, name: str) -> None:
        self._b = bridge
        self._name = name
        self.name = name  # the account (config section) this adapter serves
        self.log = logging.getLogger(f"bridge.adapters.{name}")
        self._changed = asyncio.Event()

    async def load_state(self, key: str) -> str | None:
        return await self._b.store.load_state(self._name, key)

    async def save_state(self, key: str, value: str | None) -> None:
        await self._b.store.save_state(self._name, key, value)

    async def replace_state(self, key: str, expected: str | None, value: str) -> bool:
        return await self._b.store.replace_state(self._name, key, expected, value)

    async def listen(self, name: str, run: Callable[[], Awaitable[T]]) -> T:
        return await self._b.workers.listen(f"{self._name}:{name}", run)

    def workers(self) -> int:
        return self._b.workers.live

    def sources(self) -> frozenset[Source]:
        return self._b.sources(self._name)

    def filters(self, source: Source) -> tuple[Filters, ...]:
        if source.network != self._name:
            return ()
        return self._b.filters(source)

    def notify_sources_changed(self) -> None:
        self._changed.set()

    async def sources_changed(self) -> None:
        await self._changed.wait()
        self._changed.clear()

    async def load_cursor(self, key: str) -> str | None:
        return await self._b.store.load_cursor(self._name, key)

    async def ingest(self, batch: Batch) -> None:
        for item in batch.items:
            if item.source.network != self._name or item.post.ref.network != self._name:
                raise ValueError(f"{self._name} adapter handed over an item of {item.source.network}/{item.post.ref.network}")
        await self._b.ingest(self._name, batch)

    async def handle(self, event: ChatEvent) -> Answer:
        answer = await self._b.commands.handle(event)
        text = redact(answer.text)  # an answer may quote a platform's error
        return answer if text == answer.text else dataclasses.replace(answer, text=text)

    async def subscriptions(self, target: ChatTarget) -> tuple[SubscriptionSummary, ...]:
        return await self._b.commands.summaries(target)

    async def link_message(self, target: ChatTarget, message_id: str, token: str) -> None:
        if parse_draft_token(token) is not None:
            # An Edit or Reject prompt of a draft: the reply to it carries the new text/reason.
            await self._b.store.save_state(DRAFT_PROMPTS, f"{target.platform}:{target.chat_id}:{message_id}", token)
            return
        parsed = parse_token(token)
        if parsed is not None:
            await self._b.store.link_message(target, message_id, parsed[1])

    async def chat_moved(self, old: ChatTarget, new: ChatTarget) -> None:
        await self._b.chat_moved(old, new)

    def count_request(self, endpoint: str, status: int | str) -> None:
        self._b.metrics.request(self._name, endpoint, status)

    def stream_lag(self, stream: str, seconds: float) -> None:
        self._b.metrics.stream_lag(self._name, stream, seconds)

    def pacing_wait(self, seconds: float) -> None:
        self._b.metrics.pacing_wait(self._name, seconds)

    def report_spend(self, spent_usd: float, cap_usd: float | None = None, forecast_usd: float | None = None) -> None:
        self._b.metrics.spend(self._name, spent_usd, cap_usd, forecast_usd)

    def serve_webhook(self, path: str, handler: WebhookHandler) -> None:
        if self._b.http is None:
            raise RuntimeError(f"[{self._name}] needs the HTTP endpoint: add [http] listen to the config")
        self._b.http.add_webhook(self._name, path, handler)

    async def destination_unavailable(self, target: ChatTarget, reason: str) -> None:
        await self._b.pause(target, reason)

    async def report_health(self, ok: bool, reason: str = "", *, limited: bool = False) -> None:
        await self._b.report_health(self._name, ok, reason, limited=limited)
