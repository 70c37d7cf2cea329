"""The bridge's status, read from the database: what ``bridge status`` prints (a table per room,
or JSON with ``--json``) and what ``/status`` says in a room, from one reading so they agree.

Order, most urgent first: platforms that are not working, paused rooms, then the rooms whose
feeds are failing (most failing first), then the others; in a room, failing feeds first.

A feed is *failing* when its last failed delivery is newer than its last successful one.

``as_json`` is the shape scripts read (``JSON_VERSION`` changes only when a key is removed or
changes meaning; keys may be added):

    {"version": 1, "generated_at": ISO,
     "platforms": [{"name", "state": "ok"|"down"|"limited"|"unreachable", "reason", "since": ISO}],
     "summary": {"rooms", "subscriptions", "failing", "paused", "platforms_down"},
     "rooms": [{"destination", "paused": bool, "paused_reason", "resumes", "failing",
                "subscriptions": [{"id", "network", "kind": "follow"|"query"|"inbox", "label",
                                   "filters", "sent", "pending", "failed", "last_post",
                                   "last_delivery", "last_failure", "last_error", "failing"}]}],
     "workers": [{"id", "host", "pid", "since": ISO, "heartbeat_age": seconds, "stale": bool,
                  "listeners": ["telegram:updates", …], "rooms": ["telegram:-100…", …]}]}

``workers`` lists the ``bridge run`` processes sharing a Postgres database and what each holds
now (its listener and room leases); it is empty on SQLite, where one process does everything.
A worker is ``stale`` when its heartbeat is older than a lease: stopped without a goodbye
(killed) or stalled; its leases are free for the others and its row goes after a while.

Times are ISO 8601 in UTC, or null for never.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.model import ChatTarget
from bridge.storage.leases import WorkerInfo, workers_and_leases
from bridge.storage.store import PlatformHealth, Store, SubscriptionInfo, utcnow

JSON_VERSION = 1
WHAT_WIDTH = 44  # characters of a subscription's description in the table
ERROR_WIDTH = 160  # characters of a failure reason in the table
PAUSE_FAILURE = "destination paused: "  # the reason a pause gives the posts it drops (Store)


@dataclass(frozen=True, slots=True)
class FeedStatus:
    subscription: SubscriptionInfo
    what: str  # "follow @alice.bsky.social (bluesky)"
    sent: int
    pending: int
    failed: int
    last_post: datetime | None
    last_delivery: datetime | None
    last_failure: datetime | None
    last_error: str
    failing: bool  # see _failing


def _failing(last_error: str, last_delivery: datetime | None, last_failure: datetime | None, paused: bool) -> bool:
    """Its last failure is newer than its last delivery. In a paused room, posts failed by the
    pause itself are the room's trouble, said once at the top, not each feed's."""
    if not last_error or (paused and last_error.startswith(PAUSE_FAILURE)):
        return False
    if last_delivery is None or last_failure is None:
        return True
    return last_failure >= last_delivery


@dataclass(frozen=True, slots=True)
class RoomStatus:
    destination: ChatTarget
    feeds: tuple[FeedStatus, ...]  # failing first, then by id
    paused: str | None  # the reason, None when not paused
    resumes: str  # how a paused room comes back ("" when not paused)

    @property
    def failing(self) -> int:
        return sum(f.failing for f in self.feeds)


@dataclass(frozen=True, slots=True)
class Report:
    platforms: dict[str, PlatformHealth]
    rooms: tuple[RoomStatus, ...]  # see the module docstring for the order
    generated_at: datetime
    workers: tuple[WorkerInfo, ...] = ()  # several workers on Postgres: who holds what
    lease_seconds: float = 10.0

    @property
    def down(self) -> dict[str, PlatformHealth]:
        return {name: h for name, h in sorted(self.platforms.items()) if h.state != "ok"}


async def gather(store: Store, destination: ChatTarget | None = None, lease_seconds: float = 10.0) -> Report:
    """Read the status of every room (or of ``destination`` alone), the platforms' health and
    the workers (``lease_seconds``: the configured lease, to tell a stale worker)."""
    from bridge.commands import Commands, _what

    rows = await store.status_rows(destination)
    paused = await store.paused_destinations()
    by_room: dict[str, list[FeedStatus]] = {}
    targets: dict[str, ChatTarget] = {}
    for r in rows:
        s: SubscriptionInfo = r["subscription"]
        key = str(s.destination)
        error = r["last_error"] or ""
        targets[key] = s.destination
        by_room.setdefault(key, []).append(
            FeedStatus(
                s,
                _what(s),
                r["sent"],
                r["pending"],
                r["failed"],
                r["last_post"],
                r["last_delivery"],
                r.get("last_failure"),
                error,
                _failing(error, r["last_delivery"], r.get("last_failure"), key in paused),
            )
        )
    for key in paused:  # a paused room shows even when it has no subscription left
        if destination is None or key == str(destination):
            if key not in targets:
                try:
                    targets[key] = ChatTarget.parse(key)
                except ValueError:
                    continue
                by_room[key] = []
    rooms = []
    for key, feeds in by_room.items():
        feeds.sort(key=lambda f: (not f.failing, f.subscription.id))
        reason = paused.get(key)
        resumes = Commands.comes_back(targets[key], reason) if reason is not None else ""
        rooms.append(RoomStatus(targets[key], tuple(feeds), reason, resumes))
    rooms.sort(key=lambda r: (-r.failing, r.paused is None, str(r.destination)))
    workers = tuple(await workers_and_leases())
    return Report(await store.platform_health(), tuple(rooms), utcnow(), workers, lease_seconds)


def _when(value: datetime | None, seconds: bool = False) -> str:
    if value is None:
        return "never"
    return value.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def platform_line(name: str, health: PlatformHealth) -> str:
    return f"{name}: {health.state} since {_when(health.since, seconds=True)}: {health.reason}"


def paused_line(room: RoomStatus) -> str:
    return f"paused {room.destination}: {room.paused}; {room.resumes}"


def _holds(w: WorkerInfo, kind: str) -> list[str]:
    return [n.split(":", 1)[1] for n in w.holds if n.startswith(kind + ":")]


def worker_lines(report: Report) -> list[str]:
    """One line per worker (several ``bridge run`` on Postgres): where it runs, since when, how
    fresh its heartbeat is, and what it holds. None on SQLite."""
    if not report.workers:
        return []
    out = [f"{len(report.workers)} workers (leases of {report.lease_seconds:g} s):"]
    for w in report.workers:
        listens = _holds(w, "listen")
        rooms = _holds(w, "dest")
        late = w.heartbeat_age > report.lease_seconds
        state = " STALE (stopped or stalled; its leases are free)" if late else ""
        what = []
        if listens:
            what.append("listens to " + ", ".join(listens))
        if rooms:
            shown = ", ".join(rooms[:6]) + (f" and {len(rooms) - 6} more" if len(rooms) > 6 else "")
            what.append(f"sends to {len(rooms)} room{'s' if len(rooms) != 1 else ''}: {shown}")
        out.append(
            f"  #{w.id} {w.host} pid {w.pid} since {_when(w.started_at, seconds=True)}, "
            f"heartbeat {w.heartbeat_age:.1f} s ago{state}: {'; '.join(what) or 'holds nothing'}"
        )
    return out


def table(report: Report) -> str:
    """The terminal's ``bridge status``: what needs a person at the top, then a table per room,
    then the workers (several on Postgres)."""
    lines = _table(report)
    workers = worker_lines(report)
    return "\n".join([lines, "", *workers] if workers else [lines])


def _table(report: Report) -> str:
    out: list[str] = []
    out += [platform_line(name, h) for name, h in report.down.items()]
    out += [paused_line(r) for r in report.rooms if r.paused is not None]
    subs = sum(len(r.feeds) for r in report.rooms)
    failing = sum(r.failing for r in report.rooms)
    if not subs:
        out.append("no subscriptions; add one with `bridge follow <handle> --to telegram:<chat_id>` or /follow in chat")
        return "\n".join(out)
    paused = sum(r.paused is not None for r in report.rooms)
    summary = f"{subs} subscriptions in {len(report.rooms)} rooms: {failing} failing"
    if paused:
        summary += f", {paused} paused"
    if out:
        out.append("")
    out.append(summary)
    header = ("", "ID", "SUBSCRIPTION", "SENT", "WAITING", "FAILED", "LAST POST", "LAST DELIVERY")
    rows = [
        (
            "!" if f.failing else "",
            f"#{f.subscription.id}",
            _clip(f.what, WHAT_WIDTH),
            str(f.sent),
            str(f.pending),
            str(f.failed),
            _when(f.last_post),
            _when(f.last_delivery),
        )
        for r in report.rooms
        for f in r.feeds
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {3, 4, 5}  # counts are right-aligned

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    at = 0
    for r in report.rooms:
        sent = sum(f.sent for f in r.feeds)
        pending = sum(f.pending for f in r.feeds)
        failed = sum(f.failed for f in r.feeds)
        state = " (paused)" if r.paused is not None else ""
        trouble = f", {r.failing} failing" if r.failing else ""
        out.append("")
        out.append(
            f"{r.destination}{state}: {len(r.feeds)} subscriptions{trouble}; {sent} sent, {pending} waiting, {failed} failed"
        )
        if not r.feeds:
            continue
        out.append("  " + line(header))
        for f in r.feeds:
            out.append("  " + line(rows[at]))
            at += 1
            if f.failing:
                out.append(f"{' ' * (widths[0] + 4)}last failure {_when(f.last_failure)}: {_clip(f.last_error, ERROR_WIDTH)}")
    return "\n".join(out)


def as_json(report: Report) -> dict[str, Any]:
    """The stable shape of ``bridge status --json`` (see the module docstring)."""
    rooms = []
    for r in report.rooms:
        subs = []
        for f in r.feeds:
            s = f.subscription
            subs.append(
                {
                    "id": s.id,
                    "network": s.source.network,
                    "kind": s.source.kind.value,
                    "label": s.label,
                    "filters": s.filters.describe(),
                    "sent": f.sent,
                    "pending": f.pending,
                    "failed": f.failed,
                    "last_post": _iso(f.last_post),
                    "last_delivery": _iso(f.last_delivery),
                    "last_failure": _iso(f.last_failure),
                    "last_error": f.last_error,
                    "failing": f.failing,
                }
            )
        rooms.append(
            {
                "destination": str(r.destination),
                "paused": r.paused is not None,
                "paused_reason": r.paused or "",
                "resumes": r.resumes,
                "failing": r.failing,
                "subscriptions": subs,
            }
        )
    return {
        "version": JSON_VERSION,
        "generated_at": report.generated_at.isoformat(),
        "platforms": [
            {"name": name, "state": h.state, "reason": h.reason, "since": h.since.isoformat()}
            for name, h in sorted(report.platforms.items())
        ],
        "summary": {
            "rooms": len(report.rooms),
            "subscriptions": sum(len(r.feeds) for r in report.rooms),
            "failing": sum(r.failing for r in report.rooms),
            "paused": sum(r.paused is not None for r in report.rooms),
            "platforms_down": len(report.down),
        },
        "rooms": rooms,
        "workers": [
            {
                "id": w.id,
                "host": w.host,
                "pid": w.pid,
                "since": w.started_at.isoformat(),
                "heartbeat_age": round(w.heartbeat_age, 3),
                "stale": w.heartbeat_age > report.lease_seconds,
                "listeners": _holds(w, "listen"),
                "rooms": _holds(w, "dest"),
            }
            for w in report.workers
        ],
    }
