"""The bridge's lifecycle: open storage, load subscriptions, start adapters and the
dispatcher; on the way down, the same in reverse, draining in-flight sends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bridge.commands import Commands, _what
from bridge.config import Config, StaticSubscription
from bridge.delivery.digest import Digester, held_routes
from bridge.delivery.dispatcher import Dispatcher
from bridge.delivery.quiet import QuietHours
from bridge.errors import BridgeError
from bridge.host import AdapterHost
from bridge.intake.sanitize import well_formed
from bridge.matching.filters import Filters
from bridge.matching.matcher import Matcher, Route
from bridge.model import Batch, ChatTarget, Item, Source, SourceKind
from bridge.ops.http import OpsServer
from bridge.ops.metrics import Metrics
from bridge.protocols import ChatAdapter, NetworkAdapter
from bridge.registry import kind_of
from bridge.storage import changes
from bridge.storage.changes import ChangeFeed
from bridge.storage.db import close_database, open_database
from bridge.storage.store import Store, SubscriptionInfo, utcnow

log = logging.getLogger("bridge")


class Bridge:
    def __init__(self, config: Config, adapter_classes: Mapping[str, type] | None = None) -> None:
        self.config = config
        self.store = Store()
        self.matcher = Matcher()
        self.commands = Commands(self)
        classes = {**config.adapter_classes, **(adapter_classes or {})}
        self.metrics = Metrics()
        self.http = OpsServer(self, config.http_listen) if config.http_listen else None
        self.running = False  # started and not stopping: what /healthz reports
        self.hosts: dict[str, AdapterHost] = {}
        self.adapters: dict[str, Any] = {}
        self.networks: dict[str, NetworkAdapter] = {}
        self.chats: dict[str, ChatAdapter] = {}
        for name, settings in config.adapters.items():
            cls = classes[name]
            host = AdapterHost(self, name)
            adapter = cls(settings, host)
            self.hosts[name], self.adapters[name] = host, adapter
            (self.networks if kind_of(cls) == "network" else self.chats)[name] = adapter
        self._thread_subs: set[int] = set()
        self._paused: set[str] = set()
        self.dispatcher = Dispatcher(
            self.store,
            self.chats,
            concurrency=config.concurrency,
            send_timeout=config.send_timeout,
            open_thread=lambda sub: sub in self._thread_subs,
            on_paused=self._paused_by_dispatcher,
            metrics=self.metrics,
        )
        self.quiet: dict[str, QuietHours] = {}
        self.digester = Digester(self.store, self.chats, lambda: self.quiet, self.pause, self._describe_sub)
        self._sub_labels: dict[int, str] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._started: list[Any] = []
        self._refresh_pending = False
        self.changes = ChangeFeed()
        self._revision = 0  # the settings revision the routes were last loaded at

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the database (raises DatabaseUnavailable), load subscriptions, start the chat
        adapters, then the networks, then deliveries. Raises AuthFailed when a platform refuses
        our credentials, after stopping what had started."""
        await open_database(self.config.database_url)
        try:
            if self.http is not None:  # before the adapters: a webhook's route must answer once it is set
                self.metrics.read_pending_with(self.store.pending_by_destination, utcnow)
                await self.http.start()
            await self.changes.start()
            await self.refresh_routes()
            for adapter in [*self.chats.values(), *self.networks.values()]:
                await adapter.start()
                self._started.append(adapter)
                log.info("adapter started adapter=%s", adapter.name)
            self._tasks.append(asyncio.create_task(self.dispatcher.run(), name="dispatcher"))
            self._tasks.append(asyncio.create_task(self._watch_changes(), name="watch-changes"))
            self._tasks.append(asyncio.create_task(self.digester.run(), name="digests"))
            if self.config.subscriptions:
                self._tasks.append(
                    asyncio.create_task(self._apply_static(self.config.subscriptions), name="static-subscriptions")
                )
        except BaseException:
            await self.stop()
            raise
        self.running = True
        log.info("bridge running networks=%s chats=%s subscriptions=%d", list(self.networks), list(self.chats), len(self.matcher))

    async def stop(self, timeout: float | None = None) -> None:
        """Stop taking new work, give in-flight sends ``timeout`` seconds (config
        shutdown_timeout by default), stop adapters in reverse order, close the database."""
        deadline = self.config.shutdown_timeout if timeout is None else timeout
        self.running = False
        for adapter in reversed(self._started):
            if adapter.name in self.networks:
                await _quietly(adapter.stop(), adapter.name)
        cancelled = await self.dispatcher.drain(deadline)
        if cancelled:
            log.warning("shutdown released in-flight sends count=%d (they are sent after the next start)", cancelled)
        if self._tasks:  # the dispatcher loop ends by itself once drained; the rest are cancelled
            await asyncio.wait(self._tasks[:1], timeout=2)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        self._tasks.clear()
        for adapter in reversed(self._started):
            if adapter.name in self.chats:
                await _quietly(adapter.stop(), adapter.name)
        self._started.clear()
        if self.http is not None:
            await self.http.stop()
        await self.changes.close()
        await close_database()
        log.info("bridge stopped")

    # --- subscriptions -----------------------------------------------------------------

    async def refresh_routes(self) -> None:
        """Rebuild the matcher from the database (at start, after a room is resumed, and when
        another process changed subscriptions). Everything is read first and swapped in at
        once: deliveries running meanwhile must never see a half-built state."""
        self._refresh_pending = False
        revision = await changes.current()
        paused = await self.store.paused_destinations()
        quiet = await self.store.quiet_hours()
        subs = await self.store.subscriptions()
        fresh = Matcher()
        thread_subs = set()
        for s in subs:
            self._sub_labels[s.id] = f"#{s.id} {_what(s)}"
            if str(s.destination) not in paused:
                fresh.put(_route(s))
            if s.filters.thread:
                thread_subs.add(s.id)
        self._paused, self.quiet, self.matcher, self._thread_subs = set(paused), quiet, fresh, thread_subs
        self._revision = max(self._revision, revision)
        self._sources_changed()
        self.dispatcher.wake()  # a resumed room's deliveries may be due

    async def _watch_changes(self) -> None:
        """Pick up changes to subscriptions, rooms and settings made by another process (the
        command line, another worker): every such write bumps the settings revision, and the
        feed wakes us when it moves (see bridge.storage.changes)."""
        while True:
            try:
                revision = await self.changes.wait(self._revision)
                theirs = [r for r in range(self._revision + 1, revision + 1) if r not in self.store.made]
                self.store.made -= {r for r in self.store.made if r <= revision}
                if theirs or revision < self._revision:
                    await self.refresh_routes()
                    log.info("settings reloaded revision=%d subscriptions=%d", revision, len(self.matcher))
                self._revision = max(self._revision, revision)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be briefly away; try again calmly
                log.warning("could not check for settings changes reason=%r", str(exc))
                await asyncio.sleep(2)

    def refresh_routes_later(self) -> None:
        if not self._refresh_pending:
            self._refresh_pending = True
            self._tasks.append(asyncio.create_task(self.refresh_routes(), name="refresh-routes"))

    def _sources_changed(self) -> None:
        for name in self.networks:
            self.hosts[name].notify_sources_changed()

    async def subscribe(
        self, source: Source, label: str, target: ChatTarget, created_by: str, filters: Filters | None = None
    ) -> tuple[SubscriptionInfo, bool]:
        sub, created = await self.store.add_subscription(source, label, target, created_by, filters)
        self._sub_labels[sub.id] = f"#{sub.id} {_what(sub)}"
        if created:
            self.matcher.put(_route(sub))
            self._sources_changed()
            log.info("subscribed subscription=%d source=%s destination=%s by=%s", sub.id, source.key, target, created_by)
            if self.config.backfill and source.kind is not SourceKind.INBOX:
                self._tasks.append(asyncio.create_task(self._backfill(sub), name=f"backfill {sub.id}"))
        return sub, created

    async def unsubscribe(self, sub_id: int) -> None:
        await self.store.disable_subscription(sub_id)
        self.matcher.remove(sub_id)
        self._thread_subs.discard(sub_id)
        self._sources_changed()
        log.info("unsubscribed subscription=%d", sub_id)

    def _describe_sub(self, sub_id: int | None) -> str:
        return self._sub_labels.get(sub_id or 0, "a subscription since removed")

    async def set_quiet(self, target: ChatTarget, quiet: QuietHours | None) -> None:
        await self.store.set_quiet(target, quiet)
        self.quiet = await self.store.quiet_hours()

    async def set_filters(self, sub: SubscriptionInfo, filters: Filters) -> None:
        await self.store.set_filters(sub.id, filters)
        updated = await self.store.subscription(sub.id)
        if updated is not None and str(updated.destination) not in self._paused:
            self.matcher.put(_route(updated))
        (self._thread_subs.add if filters.thread else self._thread_subs.discard)(sub.id)

    async def _backfill(self, sub: SubscriptionInfo) -> None:
        net = self.networks.get(sub.source.network)
        if net is None:
            return
        try:
            posts = await net.recent(sub.source, self.config.backfill)
        except (BridgeError, ValueError) as exc:
            log.warning("backfill failed subscription=%d reason=%r", sub.id, str(exc))
            return
        route = _route(sub)
        matched = [
            (well_formed(p), [(sub.id, sub.destination)]) for p in posts[-self.config.backfill :] if route.filters.accepts(p)
        ]
        n = await self.store.ingest(sub.source.network, matched, {})
        log.info("backfill subscription=%d posts=%d deliveries=%d", sub.id, len(posts), n)
        self.dispatcher.wake()

    async def _apply_static(self, subs: tuple[StaticSubscription, ...]) -> None:
        """Config subscriptions: resolved and added once the networks answer; retried until they do."""
        todo = list(subs)
        delay = 5.0
        while todo:
            left = []
            for s in todo:
                net = self.networks[s.network]
                try:
                    if s.kind == "follow":
                        author = await net.resolve(s.value)
                        source, label = Source(s.network, SourceKind.FOLLOW, author.id), author.handle
                    else:
                        source, label = Source(s.network, SourceKind.QUERY, " ".join(s.value.split())), s.value
                except (BridgeError, ValueError) as exc:
                    log.warning(
                        "config subscription not applied yet network=%s %s=%r reason=%r", s.network, s.kind, s.value, str(exc)
                    )
                    left.append(s)
                    continue
                filters = Filters(
                    include=s.include, exclude=s.exclude, replies=s.replies, reposts=s.reposts, media_only=s.media_only
                )
                for target in s.to:
                    sub, created = await self.subscribe(source, label, target, "config", filters)
                    if not created and sub.filters != filters:
                        await self.set_filters(sub, filters)
            todo = left
            if todo:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 300)

    # --- flow ------------------------------------------------------------------------------

    async def ingest(self, network: str, batch: Batch) -> None:
        matched = []
        held: dict[tuple[int, str], datetime] = {}
        now = utcnow()
        for item in batch.items:
            routes = [r for r in self.matcher.match(item) if str(r.destination) not in self._paused]
            if routes:
                matched.append((well_formed(item.post), [(r.subscription_id, r.destination) for r in routes]))
                held.update(held_routes(routes, self.quiet, now))
        created = await self.store.ingest(network, matched, batch.cursors, held)
        if created:
            log.info("ingested network=%s items=%d deliveries=%d", network, len(batch.items), created)
            self.dispatcher.wake()

    def _paused_by_dispatcher(self, target: ChatTarget, _reason: str) -> None:
        self._paused.add(str(target))
        self.refresh_routes_later()

    async def pause(self, target: ChatTarget, reason: str) -> None:
        n = await self.store.pause_destination(target, reason)
        self._paused.add(str(target))
        await self.refresh_routes()
        log.warning("destination paused destination=%s reason=%r failed_pending=%d", target, reason, n)

    async def chat_moved(self, old: ChatTarget, new: ChatTarget) -> None:
        moved = await self.store.move_destination(old, new)
        await self.refresh_routes()
        self.dispatcher.wake()
        log.info("chat moved from=%s to=%s subscriptions=%d", old, new, moved)


def _route(s: SubscriptionInfo) -> Route:
    return Route(s.id, s.source, s.destination, s.filters, s.start_at)


async def _quietly(coro: Any, name: str) -> None:
    try:
        await asyncio.wait_for(coro, 10)
    except Exception:
        log.exception("adapter stop failed adapter=%s", name)


__all__ = ["Bridge", "Item"]
