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
from bridge.delivery.buttons import buttons_for
from bridge.delivery.digest import Digester, held_routes
from bridge.delivery.dispatcher import Dispatcher
from bridge.delivery.notices import GAP_LINES, NoticeSender, gap_key, gap_key_of_many, gap_text
from bridge.delivery.quiet import QuietHours
from bridge.delivery.topics import topic_name
from bridge.errors import AuthFailed, BridgeError
from bridge.host import AdapterHost
from bridge.intake.sanitize import well_formed
from bridge.matching.filters import Filters
from bridge.matching.matcher import Matcher, Route
from bridge.model import Batch, Button, ChatTarget, Item, Post, Source, SourceKind
from bridge.ops.http import OpsServer
from bridge.ops.metrics import Metrics
from bridge.protocols import ChatAdapter, NetworkAdapter
from bridge.redaction import redact, register
from bridge.registry import kind_of
from bridge.storage import changes
from bridge.storage.changes import ChangeFeed
from bridge.storage.db import close_database, open_database
from bridge.storage.db import redact as redact_url
from bridge.storage.store import PlatformHealth, RoomNotice, Store, SubscriptionInfo, utcnow
from bridge.workers import Workers

log = logging.getLogger("bridge")

# An adapter's start (logging in, connecting) that takes longer is given up and retried.
START_TIMEOUT = 60.0
# A platform that cannot be reached at start is tried again after 5 s, doubling up to 5 min.
START_RETRY_FIRST, START_RETRY_MAX = 5.0, 300.0
# A platform that refuses our credentials while the bridge runs is tried again this often
# (Bluesky allows 300 logins a day per account: every 10 min is 144).
AUTH_RETRY = 600.0
NOTICE_TIMEOUT = 15.0


class Bridge:
    def __init__(self, config: Config, adapter_classes: Mapping[str, type] | None = None) -> None:
        self.config = config
        register(config.secrets())  # masked in logs, chat, the ledger and errors from now on
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
            kind = config.adapter_kinds.get(name) or kind_of(cls)
            (self.networks if kind == "network" else self.chats)[name] = adapter
        self._thread_subs: set[int] = set()
        self._topic_subs: dict[int, tuple[Source, str]] = {}  # subscription → (feed, topic name)
        self._formats: dict[str, str] = {}  # rooms whose format is not "full"
        self._paused: set[str] = set()
        # The source of every enabled subscription, its room paused or not: what the networks
        # watch. A paused room only stops receiving; it must not change what the team account
        # follows on the network (an unfollow and a follow again would notify the person).
        self._wanted: dict[int, Source] = {}
        self._wanted_filters: dict[int, Filters] = {}  # subscription id → its filters, for Host.filters
        # Several workers on Postgres: the rooms and listeners this process holds (bridge.workers).
        self.workers = Workers(
            config.lease_seconds,
            rooms=self.store.work_rooms,
            busy=lambda dest: self.dispatcher.busy(dest),
            on_change=lambda: self.dispatcher.wake(),
        )
        self.dispatcher = Dispatcher(
            self.store,
            self.chats,
            concurrency=config.concurrency,
            send_timeout=config.send_timeout,
            open_thread=lambda sub: sub in self._thread_subs,
            on_paused=self._paused_by_dispatcher,
            on_moved=self.chat_moved,
            buttons=self._buttons,
            metrics=self.metrics,
            paused=lambda dest: dest in self._paused,
            topic_of=self._topic_subs.get,
            compact=lambda room: self._formats.get(room) == "compact",
            serves=self.workers.serves,
            rooms=self.workers.rooms,
        )
        self.quiet: dict[str, QuietHours] = {}
        self.digester = Digester(self.store, self.chats, lambda: self.quiet, self.pause, self._describe_sub)
        self.notices = NoticeSender(self.store, self.chats)
        self._sub_labels: dict[int, str] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._started: list[Any] = []
        self._refresh_pending = False
        # On Postgres, deliveries another worker wrote wake this one's dispatcher at once.
        self.changes = ChangeFeed(on_deliveries=lambda: self.dispatcher.wake())
        self._revision = 0  # the settings revision the routes were last loaded at
        self._refreshing = asyncio.Lock()
        self._health: dict[str, PlatformHealth] = {}
        self._dispatching: asyncio.Task[None] | None = None
        self._stopping = False

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the database (raises DatabaseUnavailable), load subscriptions, start the chat
        adapters, then the networks, then deliveries. A platform that cannot be reached is
        retried in the background with backoff while the others run. Raises AuthFailed when a
        platform refuses our credentials, after stopping what had started."""
        self._stopping = False
        await open_database(self.config.database_url)
        log.info("database ready url=%s", redact_url(self.config.database_url))
        try:
            if self.http is not None:  # before the adapters: a webhook's route must answer once it is set
                self.metrics.read_pending_with(self.store.pending_by_destination, utcnow)
                await self.http.start()
            await self.changes.start()
            await self.workers.start()
            self.metrics.read_leases_with(self.workers.held)
            await self.refresh_routes()
            self._health = await self.store.platform_health()
            for adapter in [*self.chats.values(), *self.networks.values()]:
                problem = await self._start_adapter(adapter)
                if problem is not None:
                    await self._set_health(adapter.name, "unreachable", problem)
                    self._tasks.append(asyncio.create_task(self._keep_starting(adapter, problem), name=f"start {adapter.name}"))
            self._dispatching = asyncio.create_task(self.dispatcher.run(), name="dispatcher")
            self._tasks.append(self._dispatching)
            self._tasks.append(asyncio.create_task(self._watch_changes(), name="watch-changes"))
            self._tasks.append(asyncio.create_task(self.digester.run(), name="digests"))
            self._tasks.append(asyncio.create_task(self.commands.actions.run_forever(), name="pending-actions"))
            self._tasks.append(asyncio.create_task(self.commands.approvals.expire_forever(), name="draft-expiry"))
            self._tasks.append(asyncio.create_task(self.notices.run(), name="notices"))
            if self.config.subscriptions:
                self._tasks.append(
                    asyncio.create_task(self._apply_static(self.config.subscriptions), name="static-subscriptions")
                )
        except BaseException:
            await self.stop()
            raise
        self.running = True
        log.info("bridge running networks=%s chats=%s subscriptions=%d", list(self.networks), list(self.chats), len(self.matcher))

    async def _start_adapter(self, adapter: Any) -> str | None:
        """Start one adapter: None once it runs, else one line saying why it could not be
        reached. AuthFailed (refused credentials) is raised: retrying will not help."""
        try:
            await asyncio.wait_for(adapter.start(), START_TIMEOUT)
        except AuthFailed:
            await _quietly(adapter.stop(), adapter.name)
            raise
        except asyncio.CancelledError:
            await _quietly(adapter.stop(), adapter.name)
            raise
        except Exception as exc:  # unreachable, timed out, or refused for another reason
            await _quietly(adapter.stop(), adapter.name)  # closes what the attempt opened
            if isinstance(exc, TimeoutError):
                return f"no answer within {START_TIMEOUT:g} s"
            if not isinstance(exc, BridgeError | OSError):  # an adapter bug: its traceback, once
                log.debug("adapter start failed adapter=%s", adapter.name, exc_info=True)
            return _one_line(exc)
        self._started.append(adapter)
        log.info("adapter started adapter=%s", adapter.name)
        await self._set_health(adapter.name, "ok", "")
        return None

    async def _keep_starting(self, adapter: Any, problem: str) -> None:
        """Try a platform that could not be started again, with backoff, one log line per
        retry, until it runs; the rest of the bridge works meanwhile."""
        name = adapter.name
        delay = START_RETRY_FIRST
        while True:
            log.warning("%s cannot be reached; retrying in %.0f s reason=%r", name, delay, problem)
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                failed = await self._start_adapter(adapter)
            except AuthFailed as exc:
                await self.report_health(name, False, str(exc))
                problem, delay = str(exc), AUTH_RETRY
                continue
            if self._stopping:  # started while the bridge stops (a cancellation can be lost)
                await _quietly(adapter.stop(), name)
                return
            if failed is None:
                if name in self.chats:
                    self.dispatcher.wake()
                else:
                    self.hosts[name].notify_sources_changed()
                return
            problem, delay = failed, min(delay * 2, START_RETRY_MAX)

    async def report_health(self, name: str, ok: bool, reason: str = "", *, limited: bool = False) -> None:
        """An adapter's ``Host.report_health``: record it; on a change, tell its rooms and the
        admins once."""
        await self._set_health(name, "ok" if ok else "limited" if limited else "down", reason)

    async def _set_health(self, name: str, state: str, reason: str) -> None:
        reason = redact(" ".join(reason.split()))
        before = self._health.get(name)
        was = before.state if before else "ok"
        if before is not None and was == state and before.reason == reason:
            return
        if before is None and state == "ok":
            return  # nothing to record: never reported a problem
        health = PlatformHealth(state, reason, before.since if before and was == state else utcnow())
        self._health[name] = health
        try:
            await self.store.set_platform_health(name, health)
        except Exception as exc:  # the database may be briefly away; the log and the rooms still hear it
            log.warning("could not record the health of %s reason=%r", name, str(exc))
        if was == state:
            return
        title = name.capitalize()
        if state == "down":
            log.error("%s stopped working; rooms and admins are told reason=%r", name, reason)
            text = (
                f"{title} stopped working: {reason} Nothing is relayed from or to {title} until this is fixed; "
                "the bridge keeps trying and will say here when it is back."
            )
        elif state == "limited":
            # Part of the work stopped (a spending cap): the adapter's reason says which part and
            # what still goes, so the notice must not claim that nothing does.
            log.warning("%s is limited; rooms and admins are told reason=%r", name, reason)
            text = f"{title}: {reason} The bridge will say here when this is over."
        elif state == "ok":
            log.info("%s works again (was %s)", name, was)
            if name in self.chats:
                self.dispatcher.release(name)  # its rooms were held while it refused our token
            text = f"{title} works again: relaying has resumed." if was in ("down", "limited") else ""
        else:
            text = ""
        if text:
            self._tasks.append(asyncio.create_task(self._tell(name, text), name=f"health notice {name}"))

    async def _tell(self, name: str, text: str) -> None:
        """Notify the rooms that ``name`` feeds (a network's subscribers) and the admins, each
        once, through the chats that run."""
        targets: dict[str, ChatTarget] = {}
        try:
            for s in await self.store.subscriptions():
                if s.source.network == name and str(s.destination) not in self._paused:
                    targets.setdefault(str(s.destination.room), s.destination.room)
        except Exception as exc:
            log.warning("could not list the rooms to tell about %s reason=%r", name, str(exc))
        for admin in sorted(self.config.admins):
            platform, _, user = admin.partition(":")
            # An admin's private chat: on Telegram its chat id is the user's id.
            targets.setdefault(f"{platform}:{user}", ChatTarget(platform, user))
        running = {a.name for a in self._started}
        for key, target in targets.items():
            chat = self.chats.get(target.platform)
            if chat is None or target.platform == name or target.platform not in running:
                continue
            try:
                await asyncio.wait_for(chat.notify(target, redact(text)), NOTICE_TIMEOUT)
            except Exception as exc:
                log.info("could not tell about %s destination=%s reason=%r", name, key, str(exc))

    async def stop(self, timeout: float | None = None) -> None:
        """Stop taking new work, give in-flight sends ``timeout`` seconds (config
        shutdown_timeout by default), stop adapters in reverse order, close the database."""
        deadline = self.config.shutdown_timeout if timeout is None else timeout
        self._stopping = True
        self.running = False
        for adapter in reversed(self._started):
            if adapter.name in self.networks:
                await _quietly(adapter.stop(), adapter.name)
        cancelled = await self.dispatcher.drain(deadline)
        if cancelled:
            log.warning("shutdown released in-flight sends count=%d (they are sent after the next start)", cancelled)
        if self._dispatching is not None:  # the dispatcher loop ends by itself once drained; the rest are cancelled
            await asyncio.wait([self._dispatching], timeout=2)
            self._dispatching = None
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        self._tasks.clear()
        for adapter in reversed(self._started):
            if adapter.name in self.chats:
                await _quietly(adapter.stop(), adapter.name)
        self._started.clear()
        for adapter in self.adapters.values():  # those still being retried: close what an attempt opened
            await _quietly(adapter.stop(), adapter.name)
        # In-flight sends are done and the listeners stopped: hand everything over at once.
        await self.workers.stop()
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
        # One rebuild at a time: a slower one must not swap in older rows over a newer one.
        async with self._refreshing:
            while True:
                revision = await changes.current()
                paused = await self.store.paused_destinations()
                quiet = await self.store.quiet_hours()
                subs = await self.store.subscriptions()
                formats = await self.store.room_formats()
                # A write of this process that committed after the revision was read may be
                # missing from these rows while its in-memory change (subscribe's matcher.put)
                # already went into the matcher about to be replaced, and its revision counts
                # as seen: swapping now would lose it until some other change. Read again.
                # With no await between this check and the swap, a write noted later applies
                # its in-memory change to the new state.
                if self.store.last_made <= revision:
                    break
            fresh = Matcher()
            thread_subs = set()
            topic_subs = {}
            for s in subs:
                self._sub_labels[s.id] = f"#{s.id} {_what(s)}"
                if str(s.destination) not in paused:
                    fresh.put(_route(s))
                if s.filters.thread:
                    thread_subs.add(s.id)
                if s.filters.topic:
                    topic_subs[s.id] = (s.source, topic_name(s))
            self._paused, self.quiet, self.matcher, self._thread_subs = set(paused), quiet, fresh, thread_subs
            # Updated in place: the dispatcher holds the bound method of this dict.
            self._topic_subs.clear()
            self._topic_subs.update(topic_subs)
            self._formats = formats
            self._revision = max(self._revision, revision)
            self._wanted = {s.id: s.source for s in subs}
            self._wanted_filters = {s.id: s.filters for s in subs}
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

    def sources(self, network: str) -> frozenset[Source]:
        """The sources of ``network`` that enabled subscriptions want, paused rooms included."""
        return frozenset(s for s in self._wanted.values() if s.network == network)

    def filters(self, source: Source) -> tuple[Filters, ...]:
        """The filters of every enabled subscription that wants ``source``, paused rooms included."""
        return tuple(self._wanted_filters[i] for i, s in self._wanted.items() if s == source and i in self._wanted_filters)

    def _sources_changed(self) -> None:
        for name in self.networks:
            self.hosts[name].notify_sources_changed()

    async def subscribe(
        self, source: Source, label: str, target: ChatTarget, created_by: str, filters: Filters | None = None
    ) -> tuple[SubscriptionInfo, bool]:
        sub, created = await self.store.add_subscription(source, label, target, created_by, filters)
        self._sub_labels[sub.id] = f"#{sub.id} {_what(sub)}"
        if created:
            self.workers.new_work((str(target),))
            self.matcher.put(_route(sub))
            self._wanted[sub.id] = sub.source
            self._wanted_filters[sub.id] = sub.filters
            self._sources_changed()
            self._note_topic(sub)
            log.info("subscribed subscription=%d source=%s destination=%s by=%s", sub.id, source.key, target, created_by)
            if self.config.backfill and source.kind is not SourceKind.INBOX:
                self._tasks.append(asyncio.create_task(self._backfill(sub), name=f"backfill {sub.id}"))
        return sub, created

    async def unsubscribe(self, sub_id: int) -> None:
        await self.store.disable_subscription(sub_id)
        self.matcher.remove(sub_id)
        self._wanted.pop(sub_id, None)
        self._wanted_filters.pop(sub_id, None)
        self._thread_subs.discard(sub_id)
        self._topic_subs.pop(sub_id, None)
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
        if updated is not None:
            self._note_topic(updated)
        if sub.id in self._wanted:
            self._wanted_filters[sub.id] = filters
            self._sources_changed()  # an adapter may now ask the network for more, or less

    def _note_topic(self, sub: SubscriptionInfo) -> None:
        if sub.filters.topic:
            self._topic_subs[sub.id] = (sub.source, topic_name(sub))
        else:
            self._topic_subs.pop(sub.id, None)

    async def set_format(self, target: ChatTarget, fmt: str) -> None:
        """Store a room's format ("full" or "compact") and relay in it at once."""
        await self.store.set_room_setting(target, format=fmt)
        if fmt == "full":
            self._formats.pop(str(target), None)
        else:
            self._formats[str(target)] = fmt

    async def _backfill(self, sub: SubscriptionInfo) -> None:
        """Deliver the last ``[bridge] backfill`` posts of a new subscription, and say so: in the
        log when it starts and ends, and in the room what it found (or why it could not)."""
        net = self.networks.get(sub.source.network)
        if net is None:
            return
        wanted = self.config.backfill
        what = f"#{sub.id} {_what(sub)}"
        log.info("backfill started subscription=%d destination=%s posts_wanted=%d", sub.id, sub.destination, wanted)
        try:
            posts = await net.recent(sub.source, wanted)
        except (BridgeError, ValueError) as exc:
            log.warning("backfill failed subscription=%d reason=%r", sub.id, str(exc))
            await self._tell_room(sub.destination, f"Backfill of {what} failed: {_one_line(exc)}. New posts arrive as usual.")
            return
        route = _route(sub)
        matched = [(well_formed(p), [(sub.id, sub.destination)]) for p in posts[-wanted:] if route.filters.accepts(p)]
        n = await self.store.ingest(sub.source.network, matched, {})
        log.info("backfill done subscription=%d posts=%d deliveries=%d", sub.id, len(posts), n)
        if n:
            found = f"{n} earlier post{'s' if n != 1 else ''} on {'their' if n != 1 else 'its'} way"
        else:
            found = "no earlier posts" + (" pass this subscription's filters" if posts else " found")
        await self._tell_room(sub.destination, f"Backfill of {what}: {found}.")
        self.dispatcher.wake()

    async def _tell_room(self, target: ChatTarget, text: str) -> None:
        """A notice in one room, best effort (the log has the same news)."""
        chat = self.chats.get(target.platform)
        if chat is None or str(target) in self._paused:
            return
        try:
            await asyncio.wait_for(chat.notify(target, redact(text)), NOTICE_TIMEOUT)
        except Exception as exc:
            log.info("could not tell a room destination=%s reason=%r", target, str(exc))

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
                    include=s.include,
                    exclude=s.exclude,
                    replies=s.replies,
                    reposts=s.reposts,
                    media_only=s.media_only,
                    topic=s.topic,
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
        notices = self._gap_notices(batch)
        created = await self.store.ingest(network, matched, batch.cursors, held, notices)
        if created:
            if not self.workers.solo:
                self.workers.new_work({str(d) for _, routes in matched for _, d in routes})
            log.info("ingested network=%s items=%d deliveries=%d", network, len(batch.items), created)
            self.dispatcher.wake()
        if notices:
            for gap in batch.gaps:
                log.warning(
                    "gap in a feed source=%s since=%s until=%s missing=%s",
                    gap.source.key,
                    gap.since.isoformat(),
                    gap.until.isoformat(),
                    gap.missing,
                )
            self.notices.wake()

    def _gap_notices(self, batch: Batch) -> list[RoomNotice]:
        """One notice per room for the gaps of its sources: the rooms that were subscribed
        during a gap and are not paused (a paused room misses posts anyway). A room that
        follows many accounts of one timeline gets one message, not one per account."""
        by_room: dict[str, list[tuple[str, str]]] = {}
        targets: dict[str, ChatTarget] = {}
        for gap in batch.gaps:
            key = gap_key(gap)
            for r in self.matcher.routes(gap.source):
                dest = str(r.destination)
                if dest in self._paused or r.start_at >= gap.until:
                    continue
                told = by_room.setdefault(dest, [])
                if all(k != key for k, _ in told):
                    told.append((key, gap_text(gap, r.label, max(gap.since, r.start_at))))
                    targets[dest] = r.destination
        out: list[RoomNotice] = []
        for dest, told in by_room.items():
            keys = sorted(k for k, _ in told)
            key = keys[0] if len(keys) == 1 else gap_key_of_many(keys)
            texts = [t for _, t in told]
            if len(texts) > GAP_LINES:
                texts = [*texts[:GAP_LINES], f"… and {len(texts) - GAP_LINES} more of this room's subscriptions."]
            out.append(RoomNotice(targets[dest], key, "\n".join(texts)))
        return out

    def _buttons(self, post: Post, delivery_id: int) -> tuple[Button, ...]:
        net = self.networks.get(post.ref.network)
        return buttons_for(post, delivery_id, net.capabilities() if net is not None else None)

    def _paused_by_dispatcher(self, target: ChatTarget, _reason: str) -> None:
        self._paused.add(str(target))
        self.refresh_routes_later()

    async def pause(self, target: ChatTarget, reason: str) -> int:
        """Stop relaying into ``target``; returns how many waiting deliveries were failed."""
        n = await self.store.pause_destination(target, reason)
        self._paused.add(str(target))
        await self.refresh_routes()
        log.warning("destination paused destination=%s reason=%r failed_pending=%d", target, reason, n)
        return n

    async def chat_moved(self, old: ChatTarget, new: ChatTarget) -> None:
        moved = await self.store.move_destination(old, new)
        await self.refresh_routes()
        self.dispatcher.wake()
        log.info("chat moved from=%s to=%s subscriptions=%d", old, new, moved)
        # Waiting drafts came without their message (it stays in the old chat): show them
        # again where approvers can press their buttons.
        await self.commands.approvals.show_unshown(new)


def _route(s: SubscriptionInfo) -> Route:
    return Route(s.id, s.source, s.destination, s.filters, s.start_at, s.label)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


async def _quietly(coro: Any, name: str) -> None:
    try:
        await asyncio.wait_for(coro, 10)
    except Exception:
        log.exception("adapter stop failed adapter=%s", name)


__all__ = ["Bridge", "Item"]
