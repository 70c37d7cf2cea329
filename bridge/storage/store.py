"""The repository: every query the engine makes, in one place, on tortoise-orm.

Nothing outside ``bridge.storage`` sees a model instance: rows go out as the small
dataclasses below, so the engine's logic stays independent of the ORM.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.functions import Count, Max, Min
from tortoise.transactions import in_transaction

from bridge.delivery.quiet import QuietHours
from bridge.matching.filters import Filters
from bridge.model import ChatTarget, Post, Source, SourceKind
from bridge.redaction import redact
from bridge.storage import changes
from bridge.storage.models import (
    AdapterState,
    ChatMessage,
    Cursor,
    DeliveryRow,
    Destination,
    Draft,
    LookupResult,
    Notice,
    OutboundAction,
    RoomSetting,
    SeenPost,
    Subscription,
    Topic,
)
from bridge.storage.serialize import post_from_json, post_to_json


def _in_both_dialects(sqlite: str) -> tuple[str, str]:
    """A statement written for SQLite, and the same for Postgres: numbered ``$n`` parameters,
    and ``INSERT OR IGNORE`` as ``ON CONFLICT DO NOTHING``."""
    numbers = itertools.count(1)
    postgres = re.sub(r"\?", lambda _: f"${next(numbers)}", sqlite)
    if postgres.startswith("INSERT OR IGNORE "):
        postgres = "INSERT " + postgres.removeprefix("INSERT OR IGNORE ") + " ON CONFLICT DO NOTHING"
    return sqlite, postgres


async def _execute_many(conn: Any, statement: tuple[str, str], rows: list[list[Any]]) -> None:
    """Run a prepared statement of ``_in_both_dialects`` once per row: building ORM queries
    and model instances per row cost more than the database's own work."""
    await conn.execute_many(statement[conn.capabilities.dialect == "postgres"], rows)


# The columns ``mark_sent_many`` sets, by delivery id.
_MARK_SENT = _in_both_dialects(
    'UPDATE "deliveries" SET "status"=?,"sent_at"=?,"chat_message_id"=?,"thread_id"=?,"last_error"=\'\' WHERE "id"=?'
)
# New deliveries (one per post and room; one that exists already is kept as it is).
_ADD_DELIVERIES = _in_both_dialects(
    'INSERT OR IGNORE INTO "deliveries" ("created_at","updated_at","post_id","destination","subscription_id","key",'
    '"status","next_attempt_at","attempts","last_error") VALUES (?,?,?,?,?,?,?,?,0,\'\')'
)
# The chat messages ``mark_sent_many`` maps to their posts (a duplicate is kept once).
_ADD_MESSAGES = _in_both_dialects(
    'INSERT OR IGNORE INTO "chat_messages" ("created_at","updated_at","platform","chat_id","message_id","post_id",'
    '"delivery_id") VALUES (?,?,?,?,?,?,?)'
)

# Notices to rooms (one per room and key; one that exists already is kept as it is).
_ADD_NOTICES = _in_both_dialects(
    'INSERT OR IGNORE INTO "notices" ("created_at","updated_at","destination","key","text","status","attempts",'
    "\"next_attempt_at\",\"last_error\") VALUES (?,?,?,?,?,'pending',0,?,'')"
)
# The reason of a pause someone asked for (/pause, ``bridge pause``), followed by who: only a
# resume ends it, while a room paused by a failure resumes when someone acts in it.
MANUAL_PAUSE = "paused by "

# A room's last_delivery_at (for operators reading the table) is refreshed at most this often,
# which keeps a statement out of most sends' transactions.
TOUCH_EVERY = timedelta(seconds=1)

# Decoded posts kept for the dispatcher's workers (about 2 KB each).
POST_CACHE = 2048


# The core's record of a platform's health, kept beside the adapter's own state under a key
# no adapter uses (adapters' keys are plain words).
HEALTH_KEY = "core:health"


@dataclass(frozen=True)
class PlatformHealth:
    """``state``: "ok"; "down" (refused credentials: needs a person); "limited" (part of the
    work stopped, e.g. a spending cap; the reason says which); "unreachable" (not answering at
    start: retried by itself)."""

    state: str
    reason: str
    since: datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    id: int
    source: Source
    label: str
    destination: ChatTarget
    filters: Filters
    created_by: str
    enabled: bool
    start_at: datetime


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    id: int
    key: str
    post: Post
    destination: ChatTarget
    subscription_id: int | None
    attempts: int
    post_id: int | None = None  # its posts row, so that recording the send needs no lookup
    parts: tuple[tuple[str, ...], ...] = ()  # message ids of the parts already delivered


@dataclass(frozen=True, slots=True)
class Confirmed:
    """A delivery the chat platform accepted, as ``mark_sent_many`` records it."""

    delivery: PendingDelivery
    message_ids: Sequence[str]
    thread_id: str = ""


@dataclass(frozen=True, slots=True)
class PendingAction:
    """An action written down before its network call whose outcome was not recorded (the
    process stopped in between, or the network did not answer)."""

    id: int
    actor: str
    room: str
    network: str
    action: str
    subject: str
    text: str
    key: str
    request: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RoomNotice:
    """A plain-text notice for a room, told once per (destination, key)."""

    destination: ChatTarget
    key: str
    text: str
    id: int = 0
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class MessagePost:
    """What a chat message the bridge sent carries."""

    post: Post
    delivery_id: int | None
    destination: ChatTarget


@dataclass(frozen=True, slots=True)
class HeldDelivery:
    """A delivery held back (digest, quiet hours) until it is released in a summary."""

    id: int
    post: Post
    destination: ChatTarget
    subscription_id: int | None


def delivery_key(network: str, native_id: str, destination: str) -> str:
    """Stable per (post, destination): the same on every retry and after a restart."""
    digest = hashlib.blake2b(f"{network}\0{native_id}\0{destination}".encode(), digest_size=12).hexdigest()
    return digest  # 24 hex characters: fits Discord's 25-character nonce


def _sub_info(row: Subscription) -> SubscriptionInfo:
    return SubscriptionInfo(
        id=row.id,
        source=Source(row.network, SourceKind(row.kind), row.value),
        label=row.label,
        destination=ChatTarget.parse(row.destination),
        filters=Filters.from_json(row.filters),
        created_by=row.created_by,
        enabled=row.enabled,
        start_at=row.start_at,
    )


# How long the buttons of a /find, /who or /search answer keep working.
LOOKUP_KEPT = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class StoredLookup:
    """A look-up answer as ``save_lookup`` kept it."""

    id: int
    room: ChatTarget
    network: str
    kind: str
    query: str
    page: dict[str, Any]


class Store:
    def __init__(self) -> None:
        # Targets that have a destinations row, and when their last_delivery_at was last set.
        self._known_destinations: dict[str, datetime] = {}
        self._posts: OrderedDict[int, Post] = OrderedDict()  # decoded payloads, by posts row id (rows never change)
        self._posts_lock = asyncio.Lock()
        # Revisions this process made (see bridge.storage.changes): the running bridge has
        # already applied them, so seeing them come back needs no reload.
        self.made: set[int] = set()
        # The newest of them, kept when ``made`` is pruned: a reload that read the revision
        # before it compares against this to know it may have missed one of our own writes.
        self.last_made = 0

    @contextlib.asynccontextmanager
    async def _changing(self) -> AsyncIterator[Any]:
        """A transaction that changes settings: it bumps the revision, and the revision is
        noted as this process's own once committed."""
        made: list[int] = []
        async with in_transaction() as conn:
            yield conn
            made.append(await changes.bump(conn))
        self.made.update(made)
        self.last_made = max([self.last_made, *made])

    # --- subscriptions --------------------------------------------------------------

    async def add_subscription(
        self, source: Source, label: str, destination: ChatTarget, created_by: str, filters: Filters | None = None
    ) -> tuple[SubscriptionInfo, bool]:
        """Create (or re-enable) a subscription; returns it and whether it is new or was off.
        A re-enabled subscription starts from now again, so it never floods the room."""
        row = await Subscription.get_or_none(
            network=source.network, kind=source.kind.value, value=source.value, destination=str(destination)
        )
        if row is not None and row.enabled:
            return _sub_info(row), False
        async with self._changing():
            if row is not None:
                row.enabled = True
                row.start_at = utcnow()
                row.created_by = created_by
                await row.save()
            else:
                row = await Subscription.create(
                    network=source.network,
                    kind=source.kind.value,
                    value=source.value,
                    label=label[:512],
                    destination=str(destination),
                    filters=(filters or Filters()).to_json(),
                    created_by=created_by,
                    start_at=utcnow(),
                )
        return _sub_info(row), True

    async def subscriptions(self, destination: ChatTarget | None = None, *, enabled_only: bool = True) -> list[SubscriptionInfo]:
        q = Subscription.all()
        if destination is not None:
            q = q.filter(destination=str(destination))
        if enabled_only:
            q = q.filter(enabled=True)
        return [_sub_info(r) for r in await q.order_by("id")]

    async def subscription(self, sub_id: int) -> SubscriptionInfo | None:
        row = await Subscription.get_or_none(id=sub_id)
        return _sub_info(row) if row else None

    async def disable_subscription(self, sub_id: int) -> None:
        async with self._changing():
            await Subscription.filter(id=sub_id).update(enabled=False)

    async def set_filters(self, sub_id: int, filters: Filters) -> None:
        async with self._changing():
            await Subscription.filter(id=sub_id).update(filters=filters.to_json())

    async def move_destination(self, old: ChatTarget, new: ChatTarget) -> int:
        """Move chat ``old`` (and its threads) to ``new`` in one transaction, as a Telegram group
        upgraded to a supergroup: its subscriptions (filters and digests with them), waiting and
        held deliveries, its room state (paused, quiet hours), room settings (approval,
        format), pending notices and waiting drafts. Where ``new`` already has a row of its
        own, that one stays and the old one goes. Returns the number of subscriptions moved.

        What stays: sent deliveries, the chat messages map and the audit trail. Message ids
        belong to their chat (the old group's messages are still the old chat's), and audit
        rows are never changed. A moved draft loses its message (it is in the old chat): the
        core shows it again in the new one (``unshown_drafts``)."""

        def moved(value: str) -> str | None:
            try:
                target = ChatTarget.parse(value)
            except ValueError:
                return None
            if target.room != old.room:
                return None  # a prefix match of another chat ("-12" and "-123")
            return str(ChatTarget(new.platform, new.chat_id, target.thread_id))

        prefix = str(old.room)
        n = 0
        async with self._changing():
            for row in await Subscription.filter(destination__startswith=prefix):
                if (dest := moved(row.destination)) is None:
                    continue
                if await Subscription.exists(network=row.network, kind=row.kind, value=row.value, destination=dest):
                    await row.delete()
                else:
                    row.destination = dest
                    await row.save(update_fields=["destination", "updated_at"])
                n += 1
            for d in await DeliveryRow.filter(destination__startswith=prefix, status__in=("pending", "held")):
                if (dest := moved(d.destination)) is None:
                    continue
                if await DeliveryRow.exists(post_id=d.post_id, destination=dest):
                    await d.delete()
                else:
                    d.destination = dest
                    await d.save(update_fields=["destination", "updated_at"])
            for room in await Destination.filter(target__startswith=prefix):
                if (dest := moved(room.target)) is None:
                    continue
                if await Destination.exists(target=dest):
                    await room.delete()
                else:
                    room.target = dest
                    await room.save(update_fields=["target", "updated_at"])
            for setting in await RoomSetting.filter(destination__startswith=prefix):
                if (dest := moved(setting.destination)) is None:
                    continue
                if await RoomSetting.exists(destination=dest):
                    await setting.delete()
                else:
                    setting.destination = dest
                    await setting.save(update_fields=["destination", "updated_at"])
            for notice in await Notice.filter(destination__startswith=prefix, status="pending"):
                if (dest := moved(notice.destination)) is None:
                    continue
                if await Notice.exists(destination=dest, key=notice.key):
                    await notice.delete()
                else:
                    notice.destination = dest
                    await notice.save(update_fields=["destination", "updated_at"])
            for draft in await Draft.filter(room__startswith=prefix, status="waiting"):
                if (dest := moved(draft.room)) is None:
                    continue
                draft.room, draft.message_id = dest, ""
                await draft.save(update_fields=["room", "message_id", "updated_at"])
        return n

    async def unshown_drafts(self, target: ChatTarget) -> list[Draft]:
        """The waiting drafts of chat ``target`` (any thread) that no message shows (moved from
        another chat, or never shown because the chat failed), oldest first."""
        rows = await Draft.filter(room__startswith=str(target.room), status="waiting", message_id="").order_by("id")
        return [d for d in rows if ChatTarget.parse(d.room).room == target.room]

    # --- destinations ----------------------------------------------------------------

    async def paused_destinations(self) -> dict[str, str]:
        return {d.target: d.reason for d in await Destination.filter(paused=True)}

    async def pause_destination(self, target: ChatTarget, reason: str) -> int:
        """Pause ``target`` and fail its pending deliveries with ``reason``; returns how many."""
        reason = redact(reason)  # failure reasons are shown by `bridge status` and /status
        async with self._changing():
            # Deliveries first, then the room's row: the order in which recording a send takes
            # them, so a pause and a send recorded at the same moment cannot deadlock.
            failed = await DeliveryRow.filter(destination=str(target), status="pending").update(
                status="failed", last_error=f"destination paused: {reason}"[:2000]
            )
            row, _ = await Destination.get_or_create(target=str(target))
            row.paused, row.reason = True, reason[:2000]
            await row.save()
            return failed

    async def resume_destination(self, target: ChatTarget, *, paused_on_purpose: bool = False) -> bool:
        """Unpause ``target``; True if it was paused. By default only a room paused by a failure
        (someone acted in it, so it is reachable again); with ``paused_on_purpose`` also one
        paused with /pause or ``bridge pause`` (whose reason starts with MANUAL_PAUSE)."""
        rows = Destination.filter(target=str(target), paused=True)
        if not paused_on_purpose:
            rows = rows.exclude(reason__startswith=MANUAL_PAUSE)
        if not await rows.exists():
            return False  # the common case (every command in a room asks): no write, no revision
        async with self._changing():
            return bool(await rows.update(paused=False))

    # --- quiet hours and held deliveries --------------------------------------------------

    async def quiet_hours(self) -> dict[str, QuietHours]:
        """Every destination's quiet hours."""
        out = {}
        for row in await Destination.filter(quiet__not_isnull=True):
            q = QuietHours.from_json(row.quiet)
            if q is not None:
                out[row.target] = q
        return out

    async def set_quiet(self, target: ChatTarget, quiet: QuietHours | None) -> None:
        async with self._changing():
            row, _ = await Destination.get_or_create(target=str(target))
            row.quiet = quiet.to_json() if quiet else None
            await row.save()

    async def due_held(self, now: datetime, limit: int = 500) -> list[HeldDelivery]:
        """Held deliveries whose release time has come, oldest first."""
        rows = (
            await DeliveryRow.filter(status="held", next_attempt_at__lte=now)
            .order_by("id")
            .limit(limit)
            .values("id", "destination", "subscription_id", "post__payload")
        )
        return [
            HeldDelivery(r["id"], post_from_json(r["post__payload"]), ChatTarget.parse(r["destination"]), r["subscription_id"])
            for r in rows
        ]

    async def release_held(self, ids: Sequence[int], when: datetime) -> None:
        """Mark held deliveries as delivered (in a summary message)."""
        async with in_transaction():
            await DeliveryRow.filter(id__in=list(ids), status="held").update(status="sent", sent_at=when)
            # a summary is a delivery too: the room's "last delivery" moves
            for dest in {r for r in await DeliveryRow.filter(id__in=list(ids)).values_list("destination", flat=True)}:
                await Destination.filter(target=dest).update(last_delivery_at=when)

    async def postpone_held(self, ids: Sequence[int], until: datetime, error: str = "") -> None:
        await DeliveryRow.filter(id__in=list(ids), status="held").update(next_attempt_at=until, last_error=error[:2000])

    async def fail_held(self, target: ChatTarget, reason: str) -> None:
        await DeliveryRow.filter(destination=str(target), status="held").update(status="failed", last_error=reason[:2000])

    async def note_notice(self, target: ChatTarget, when: datetime) -> datetime | None:
        """Record that the room was told of a failure; returns when it was told before."""
        row, _ = await Destination.get_or_create(target=str(target))
        before = row.last_notice_at
        row.last_notice_at = when
        await row.save()
        return before

    # --- cursors and state ------------------------------------------------------------

    async def load_cursor(self, network: str, key: str) -> str | None:
        row = await Cursor.get_or_none(network=network, key=key)
        return row.value if row else None

    # --- look-up answers (/find, /who, /search) whose buttons may be pressed later ---------

    async def save_lookup(self, room: ChatTarget, network: str, kind: str, query: str, page: Mapping[str, Any]) -> int:
        """Keep what a look-up answer shows, for its buttons; the row's id goes in their tokens."""
        row = await LookupResult.create(room=str(room), network=network, kind=kind, query=query, page=dict(page))
        if row.id % 100 == 0:  # now and then, forget answers nobody will press any more
            await LookupResult.filter(created_at__lt=utcnow() - LOOKUP_KEPT).delete()
        return row.id

    async def lookup(self, lookup_id: int) -> StoredLookup | None:
        row = await LookupResult.get_or_none(id=lookup_id)
        if row is None:
            return None
        page = row.page if isinstance(row.page, dict) else {}
        return StoredLookup(row.id, ChatTarget.parse(row.room), row.network, row.kind, row.query, page)

    async def work_rooms(self) -> set[str]:
        """The rooms there is delivery work for: those of enabled subscriptions and those with
        pending deliveries, paused ones left out (what the workers share among them)."""
        paused = set(await self.paused_destinations())
        subs = await Subscription.filter(enabled=True).distinct().values_list("destination", flat=True)
        pending = await DeliveryRow.filter(status="pending").distinct().values_list("destination", flat=True)
        return {str(d) for d in (*subs, *pending)} - paused

    async def load_state(self, adapter: str, key: str) -> str | None:
        row = await AdapterState.get_or_none(adapter=adapter, key=key)
        return row.value if row else None

    async def save_state(self, adapter: str, key: str, value: str | None) -> None:
        if value is None:
            await AdapterState.filter(adapter=adapter, key=key).delete()
            return
        updated = await AdapterState.filter(adapter=adapter, key=key).update(value=value)
        if not updated:
            await AdapterState.create(adapter=adapter, key=key, value=value)

    async def replace_state(self, adapter: str, key: str, expected: str | None, value: str) -> bool:
        """Save ``value`` only if the saved value is still ``expected`` (None: none saved);
        False, writing nothing, when another process changed it meanwhile."""
        if expected is None:
            try:
                await AdapterState.create(adapter=adapter, key=key, value=value)
            except IntegrityError:
                return False
            return True
        return bool(await AdapterState.filter(adapter=adapter, key=key, value=expected).update(value=value))

    async def platform_health(self) -> dict[str, PlatformHealth]:
        """The last health each platform reported (see ``Host.report_health``), by name."""
        out = {}
        for row in await AdapterState.filter(key=HEALTH_KEY):
            try:
                data = json.loads(row.value)
                out[row.adapter] = PlatformHealth(
                    str(data["state"]), str(data.get("reason", "")), datetime.fromisoformat(data["since"])
                )
            except (ValueError, KeyError, TypeError):
                continue  # unreadable: as if never reported
        return out

    async def set_platform_health(self, platform: str, health: PlatformHealth) -> None:
        value = json.dumps({"state": health.state, "reason": redact(health.reason)[:2000], "since": health.since.isoformat()})
        await self.save_state(platform, HEALTH_KEY, value)

    # --- the ledger --------------------------------------------------------------------

    async def ingest(
        self,
        network: str,
        matched: Sequence[tuple[Post, Sequence[tuple[int, ChatTarget]]]],
        cursors: dict[str, str],
        held: Mapping[tuple[int, str], datetime] | None = None,
        notices: Sequence[RoomNotice] = (),
    ) -> int:
        """In one transaction: remember the posts, add one delivery per (post, destination)
        that does not exist yet, add the ``notices`` not recorded yet (by destination and key),
        and move the cursors. Returns the number of new deliveries. ``held`` maps (subscription
        id, destination) to the time its deliveries are released as a summary (digests, quiet
        hours)."""
        now = utcnow()
        created = 0
        async with in_transaction() as conn:
            wanted = [(post, routes) for post, routes in matched if routes]
            if wanted:
                ids = await self._post_ids(network, [p for p, _ in wanted])
                keys: set[tuple[int, str]] = set()
                rows = []
                for post, routes in wanted:
                    pid = ids[post.ref.id]
                    for sub_id, dest in routes:
                        k = (pid, str(dest))
                        if k in keys:
                            continue  # the same post from two subscriptions to one room
                        keys.add(k)
                        release = held.get((sub_id, k[1])) if held else None
                        key = delivery_key(network, post.ref.id, k[1])
                        status = "pending" if release is None else "held"
                        rows.append([now, now, pid, k[1], sub_id, key, status, release or now])
                existing = {
                    (d["post_id"], d["destination"])
                    for d in await DeliveryRow.filter(post_id__in=list({r[2] for r in rows})).values("post_id", "destination")
                }
                fresh = [r for r in rows if (r[2], r[3]) not in existing]
                if fresh:
                    await _execute_many(conn, _ADD_DELIVERIES, fresh)
                    if conn.capabilities.dialect == "postgres":
                        # Wakes the workers serving these rooms (several workers): sent at commit,
                        # one per batch, not per delivery.
                        await conn.execute_query(f"SELECT pg_notify('{changes.DELIVERIES}', '')")
                created = len(fresh)
            if notices:
                await _execute_many(conn, _ADD_NOTICES, [[now, now, str(n.destination), n.key, n.text, now] for n in notices])
            for key, value in cursors.items():
                updated = await Cursor.filter(network=network, key=key).update(value=value)
                if not updated:
                    await Cursor.create(network=network, key=key, value=value)
        return created

    async def _post_ids(self, network: str, posts: Sequence[Post]) -> dict[str, int]:
        native = list({p.ref.id: p for p in posts}.values())
        found = {
            r["native_id"]: r["id"]
            for r in await SeenPost.filter(network=network, native_id__in=[p.ref.id for p in native]).values("id", "native_id")
        }
        missing = [p for p in native if p.ref.id not in found]
        if missing:
            await SeenPost.bulk_create(
                [SeenPost(network=network, native_id=p.ref.id, payload=post_to_json(p), posted_at=p.created_at) for p in missing],
                ignore_conflicts=True,
            )
            found.update(
                {
                    r["native_id"]: r["id"]
                    for r in await SeenPost.filter(network=network, native_id__in=[p.ref.id for p in missing]).values(
                        "id", "native_id"
                    )
                }
            )
        return found

    async def due_destinations(
        self, now: datetime, exclude: Iterable[str] = (), only: Collection[str] | None = None
    ) -> list[str]:
        """Destinations with at least one pending delivery whose time has come, among ``only``
        when given (the rooms this worker holds)."""
        if only is not None and not only:
            return []
        q = DeliveryRow.filter(status="pending", next_attempt_at__lte=now)
        if only is not None:
            q = q.filter(destination__in=list(only))
        skip = list(exclude)
        if skip:
            q = q.exclude(destination__in=skip)
        rows = await q.group_by("destination").values_list("destination", flat=True)
        return list(rows)

    async def pending_by_destination(self) -> list[tuple[str, int, datetime | None]]:
        """(destination, pending deliveries, when the oldest of them was written) for every
        destination with pending deliveries: one grouped query, for /metrics."""
        rows = (
            await DeliveryRow.filter(status="pending")
            .annotate(n=Count("id"), oldest=Min("created_at"))
            .group_by("destination")
            .values_list("destination", "n", "oldest")
        )
        return [(d, int(n), oldest) for d, n, oldest in rows]

    async def next_due(self, exclude: Iterable[str] = (), only: Collection[str] | None = None) -> datetime | None:
        """When the earliest pending delivery outside the ``exclude`` destinations (and among
        ``only``, when given) is due."""
        if only is not None and not only:
            return None
        q = DeliveryRow.filter(status="pending")
        if only is not None:
            q = q.filter(destination__in=list(only))
        skip = list(exclude)
        if skip:
            q = q.exclude(destination__in=skip)
        row = await q.order_by("next_attempt_at").first().values("next_attempt_at")
        return row["next_attempt_at"] if row else None

    async def pending_for(self, destination: str, now: datetime, limit: int) -> list[PendingDelivery]:
        """The oldest pending deliveries of one destination, in the order they were made."""
        rows = (
            await DeliveryRow.filter(destination=destination, status="pending", next_attempt_at__lte=now)
            .order_by("id")
            .limit(limit)
            .values("id", "key", "subscription_id", "attempts", "post_id", "parts")
        )
        posts = await self._posts_by_id({r["post_id"] for r in rows})
        target = ChatTarget.parse(destination)
        return [
            PendingDelivery(
                r["id"],
                r["key"],
                posts[r["post_id"]],
                target,
                r["subscription_id"],
                r["attempts"],
                r["post_id"],
                tuple(tuple(str(m) for m in part) for part in r["parts"] or ()),
            )
            for r in rows
        ]

    async def _posts_by_id(self, ids: set[int]) -> dict[int, Post]:
        """Posts by their row id. A post goes to every room that follows its author, so the
        rooms' workers share one decoded copy instead of each decoding the JSON again."""
        if any(i not in self._posts for i in ids):
            async with self._posts_lock:  # workers asking together: the first one decodes
                missing = [i for i in ids if i not in self._posts]
                if missing:
                    for pid, payload in await SeenPost.filter(id__in=missing).values_list("id", "payload"):
                        self._posts[pid] = post_from_json(payload)
        found = {i: self._posts[i] for i in ids}
        while len(self._posts) > POST_CACHE:
            self._posts.popitem(last=False)  # the oldest first: rows are made in post order
        return found

    async def record_parts(self, delivery: PendingDelivery, parts: Sequence[Sequence[str]]) -> None:
        """In one small transaction: the delivery's parts delivered so far (``parts``, every part's
        message ids in order) and their chat messages mapped to the post, so a reply to a part
        reaches it. A retry of the delivery then resumes after them."""
        now = utcnow()
        try:
            await self._record_parts(delivery, parts, now)
        except IntegrityError:
            pass  # the row went away while the part was out (its chat moved): nothing to map to

    async def _record_parts(self, delivery: PendingDelivery, parts: Sequence[Sequence[str]], now: datetime) -> None:
        async with in_transaction() as conn:
            post_id = delivery.post_id
            if post_id is None:
                post_id = await DeliveryRow.filter(id=delivery.id).first().values_list("post_id", flat=True)
                if post_id is None:
                    return  # the row went away meanwhile (its chat moved)
            await DeliveryRow.filter(id=delivery.id).update(parts=[list(p) for p in parts])
            target = delivery.destination
            messages = [[now, now, target.platform, target.chat_id, m, post_id, delivery.id] for p in parts for m in p]
            if messages:
                await _execute_many(conn, _ADD_MESSAGES, messages)

    async def mark_sent_many(self, confirmed: Sequence[Confirmed]) -> None:
        """Record sends the chat platform accepted, in one transaction (a group commit: the
        dispatcher's workers that finish together share one commit instead of one each).
        A delivery whose row is gone meanwhile (its chat moved) is skipped."""
        if not confirmed:
            return
        now = utcnow()
        try:
            await self._record_sent(confirmed, now, look_up=any(c.delivery.post_id is None for c in confirmed))
        except IntegrityError:
            # A row went away while its message was out (its chat moved): the chat message
            # could not point at it. Record the others; the lookup leaves the missing one out.
            await self._record_sent(confirmed, now, look_up=True)

    async def _record_sent(self, confirmed: Sequence[Confirmed], now: datetime, *, look_up: bool) -> None:
        async with in_transaction() as conn:
            if look_up:
                ids = [c.delivery.id for c in confirmed]
                post_ids = dict(await DeliveryRow.filter(id__in=ids).values_list("id", "post_id"))
            else:
                post_ids = {c.delivery.id: c.delivery.post_id for c in confirmed}
            rows, messages = [], []
            for c in confirmed:
                d = c.delivery
                if d.id not in post_ids:
                    continue
                rows.append(["sent", now, c.message_ids[0] if c.message_ids else None, c.thread_id or None, d.id])
                target = d.destination
                messages += [[now, now, target.platform, target.chat_id, m, post_ids[d.id], d.id] for m in c.message_ids]
            if rows:
                await _execute_many(conn, _MARK_SENT, rows)
            if messages:
                await _execute_many(conn, _ADD_MESSAGES, messages)
            touched = await self._touch_destinations(list(dict.fromkeys(str(c.delivery.destination) for c in confirmed)), now)
        self._known_destinations.update(dict.fromkeys(touched, now))  # only once committed

    async def _touch_destinations(self, targets: Sequence[str], now: datetime) -> list[str]:
        """Set last_delivery_at: one statement for the rooms known to have a row (rows are
        never deleted), an upsert for the others. Returns the targets it made sure of."""
        fresh = now - TOUCH_EVERY
        targets = [t for t in targets if self._known_destinations.get(t, fresh) <= fresh]
        known = [t for t in targets if t in self._known_destinations]
        if known:
            await Destination.filter(target__in=known).update(last_delivery_at=now)
        for target in targets:
            if target in self._known_destinations:
                continue
            updated = await Destination.filter(target=target).update(last_delivery_at=now)
            if not updated:
                await Destination.create(target=target, last_delivery_at=now)
        return list(targets)

    async def mark_retry(self, delivery_id: int, next_at: datetime, error: str, *, count_attempt: bool = True) -> None:
        error = redact(error)
        q = DeliveryRow.filter(id=delivery_id)
        if count_attempt:
            await q.update(next_attempt_at=next_at, last_error=error[:2000], attempts=F("attempts") + 1)
        else:
            await q.update(next_attempt_at=next_at, last_error=error[:2000])

    async def mark_failed(self, delivery_id: int, error: str) -> None:
        error = redact(error)
        await DeliveryRow.filter(id=delivery_id).update(status="failed", last_error=error[:2000], attempts=F("attempts") + 1)

    # --- notices ------------------------------------------------------------------------------

    async def due_notices(self, now: datetime, limit: int = 100) -> list[RoomNotice]:
        """Pending notices whose time has come, oldest first."""
        rows = (
            await Notice.filter(status="pending", next_attempt_at__lte=now)
            .order_by("id")
            .limit(limit)
            .values("id", "destination", "key", "text", "attempts")
        )
        return [RoomNotice(ChatTarget.parse(r["destination"]), r["key"], r["text"], r["id"], r["attempts"]) for r in rows]

    async def next_notice_at(self) -> datetime | None:
        row = await Notice.filter(status="pending").order_by("next_attempt_at").first().values("next_attempt_at")
        return row["next_attempt_at"] if row else None

    async def notice_sent(self, notice_id: int) -> None:
        await Notice.filter(id=notice_id).update(status="sent", sent_at=utcnow(), last_error="")

    async def notice_retry(self, notice_id: int, next_at: datetime, error: str) -> None:
        await Notice.filter(id=notice_id).update(next_attempt_at=next_at, last_error=error[:2000], attempts=F("attempts") + 1)

    async def notice_failed(self, notice_id: int, error: str) -> None:
        await Notice.filter(id=notice_id).update(status="failed", last_error=error[:2000], attempts=F("attempts") + 1)

    # --- chat messages, buttons ----------------------------------------------------------

    async def message_post(self, target: ChatTarget, message_id: str) -> MessagePost | None:
        row = (
            await ChatMessage.filter(platform=target.platform, chat_id=target.chat_id, message_id=message_id)
            .select_related("post", "delivery")
            .first()
        )
        if row is None:
            return None
        dest = ChatTarget.parse(row.delivery.destination) if row.delivery else target
        return MessagePost(post_from_json(row.post.payload), row.delivery_id, dest)

    async def delivery_post(self, delivery_id: int) -> MessagePost | None:
        row = await DeliveryRow.filter(id=delivery_id).select_related("post").first()
        if row is None:
            return None
        return MessagePost(post_from_json(row.post.payload), row.id, ChatTarget.parse(row.destination))

    async def link_message(self, target: ChatTarget, message_id: str, delivery_id: int) -> None:
        row = await DeliveryRow.get_or_none(id=delivery_id)
        if row is None:
            return
        await ChatMessage.bulk_create(
            [
                ChatMessage(
                    platform=target.platform,
                    chat_id=target.chat_id,
                    message_id=message_id,
                    post_id=row.post_id,
                    delivery_id=row.id,
                )
            ],
            ignore_conflicts=True,
        )

    # --- outbound actions ------------------------------------------------------------------

    async def record_action(self, **fields: Any) -> None:
        if fields.get("error"):
            fields["error"] = redact(fields["error"])
        await OutboundAction.create(**fields)

    async def begin_action(self, *, key: str, request: Mapping[str, Any], **fields: Any) -> int:
        """Write an action as ``pending`` with its key, before the network call; its id."""
        row = await OutboundAction.create(status="pending", key=key, request=dict(request), **fields)
        return row.id

    async def finish_action(
        self, action_id: int, status: str, *, result_ref: str = "", result_url: str = "", error: str = ""
    ) -> None:
        """Record the outcome of a pending action. Tried until it holds (a short database blip
        must not leave a done action pending, where the next start would redo it: harmless with
        its key, but the room would be told twice)."""
        delay = 0.2
        for attempt in range(6):
            try:
                await OutboundAction.filter(id=action_id, status="pending").update(
                    status=status, result_ref=result_ref[:512], result_url=result_url[:1024], error=error[:2000]
                )
                return
            except Exception:
                if attempt == 5:
                    raise
                await asyncio.sleep(delay)
                delay *= 2

    async def pending_actions(self, older_than: datetime | None = None) -> list[PendingAction]:
        """Pending actions, oldest first (only those written before ``older_than``)."""
        q = OutboundAction.filter(status="pending")
        if older_than is not None:
            q = q.filter(created_at__lt=older_than)
        return [
            PendingAction(
                r.id, r.actor, r.room, r.network, r.action, r.subject, r.text, r.key, dict(r.request or {}), r.created_at
            )
            for r in await q.order_by("id")
        ]

    async def actions(
        self, limit: int = 100, *, room: ChatTarget | None = None, since: datetime | None = None
    ) -> list[dict[str, Any]]:
        """The audit trail, newest first: every action, refusal, rejection and expiry."""
        q = OutboundAction.all()
        if room is not None:
            q = q.filter(room=str(room))
        if since is not None:
            q = q.filter(created_at__gte=since)
        return list(await q.order_by("-id").limit(limit).values())

    # --- room settings and drafts (approval) -----------------------------------------------

    async def room_setting(self, target: ChatTarget) -> tuple[str, str]:
        """(approval, format) of a room: ("off", "full") unless someone changed them."""
        row = await RoomSetting.get_or_none(destination=str(target))
        return (row.approval, row.format) if row else ("off", "full")

    async def set_room_setting(self, target: ChatTarget, **fields: str) -> None:
        """Change a room's approval or format (a settings change: bumps the revision)."""
        async with self._changing():
            row = await RoomSetting.get_or_none(destination=str(target))
            if row is None:
                await RoomSetting.create(destination=str(target), **fields)
            else:
                await RoomSetting.filter(id=row.id).update(**fields)

    async def room_formats(self) -> dict[str, str]:
        """The rooms whose format is not the default ("full"), by destination."""
        return {r.destination: r.format for r in await RoomSetting.exclude(format="full")}

    # --- topics (a topic or thread per feed) -----------------------------------------------

    async def topic_id(self, room: ChatTarget, source: Source) -> str:
        """The id of the topic or thread ``room`` keeps for ``source``; "" when it has none yet."""
        row = await Topic.get_or_none(destination=str(room), network=source.network, source=source.key[:512])
        return row.thread_id if row else ""

    async def set_topic(self, room: ChatTarget, source: Source, name: str, thread_id: str) -> None:
        """Remember the topic or thread ``room`` keeps for ``source`` (a new one replaces the
        one before: it was deleted). Not a settings change: only deliveries read it."""
        key = {"destination": str(room), "network": source.network, "source": source.key[:512]}
        n = await Topic.filter(**key).update(name=name[:255], thread_id=thread_id[:64])
        if n == 0:
            try:
                await Topic.create(**key, name=name[:255], thread_id=thread_id[:64])
            except IntegrityError:  # written meanwhile by another process: ours is as recent
                await Topic.filter(**key).update(name=name[:255], thread_id=thread_id[:64])

    async def create_draft(self, *, expires_at: datetime, request: Mapping[str, Any], **fields: Any) -> Draft:
        return await Draft.create(status="waiting", expires_at=expires_at, request=dict(request), **fields)

    async def draft(self, draft_id: int) -> Draft | None:
        return await Draft.get_or_none(id=draft_id)

    async def set_draft_message(self, draft_id: int, message_id: str) -> None:
        await Draft.filter(id=draft_id).update(message_id=message_id[:64])

    async def claim_draft(self, draft_id: int, status: str, *, by: str = "", by_name: str = "", reason: str = "") -> bool:
        """Move a waiting draft to ``status`` (sending, rejected, expired). A compare-and-set on
        the row: of two approvers pressing at once exactly one gets True."""
        n = await Draft.filter(id=draft_id, status="waiting").update(
            status=status, decided_by=by[:255], decided_by_name=by_name[:255], reason=reason[:2000]
        )
        return n == 1

    async def finish_draft(self, draft_id: int, status: str, *, result_url: str = "", reason: str = "") -> None:
        """A sending draft is sent or failed."""
        await Draft.filter(id=draft_id, status="sending").update(
            status=status, result_url=result_url[:1024], reason=reason[:2000]
        )

    async def edit_draft(self, draft_id: int, text: str) -> bool:
        """Replace a waiting draft's text; False when it is no longer waiting."""
        return await Draft.filter(id=draft_id, status="waiting").update(text=text) == 1

    async def sending_drafts(self) -> list[Draft]:
        return list(await Draft.filter(status="sending").order_by("id"))

    async def unclaim_draft(self, draft_id: int) -> bool:
        """A sending draft whose send was never written down waits again."""
        n = await Draft.filter(id=draft_id, status="sending").update(status="waiting", decided_by="", decided_by_name="")
        return n == 1

    async def action_of_draft(self, d: Draft) -> dict[str, Any] | None:
        """The action row an approval of ``d`` wrote (its author, approver, room and text)."""
        return (
            await OutboundAction.filter(
                room=d.room, actor=d.author, action=d.action, text=d.text, approved_by=d.decided_by, created_at__gte=d.created_at
            )
            .exclude(approved_by="")
            .order_by("-id")
            .first()
            .values()
        )

    async def expired_drafts(self, now: datetime) -> list[Draft]:
        return list(await Draft.filter(status="waiting", expires_at__lte=now).order_by("id"))

    # --- status -------------------------------------------------------------------------------

    async def status_rows(self, destination: ChatTarget | None = None) -> list[dict[str, Any]]:
        """Per subscription: last post seen, last delivery, failures, the last reason and when."""
        subs = await self.subscriptions(destination)
        out = []
        for s in subs:
            base = DeliveryRow.filter(subscription_id=s.id)
            stats = await base.annotate(n=Count("id"), last=Max("sent_at")).group_by("status").values("status", "n", "last")
            by_status = {r["status"]: r for r in stats}
            last_failure = await base.filter(status="failed").order_by("-id").first().values("last_error", "updated_at")
            last_post = await base.order_by("-id").first().values("post__posted_at")
            out.append(
                {
                    "subscription": s,
                    "sent": by_status.get("sent", {}).get("n", 0),
                    "pending": by_status.get("pending", {}).get("n", 0),
                    "failed": by_status.get("failed", {}).get("n", 0),
                    "last_delivery": by_status.get("sent", {}).get("last"),
                    "last_post": last_post["post__posted_at"] if last_post else None,
                    "last_error": last_failure["last_error"] if last_failure else "",
                    "last_failure": last_failure["updated_at"] if last_failure else None,
                }
            )
        return out
