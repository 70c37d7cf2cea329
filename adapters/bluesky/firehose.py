"""Followed accounts in firehose mode: com.atproto.sync.subscribeRepos.

The network's firehose peaks above 2,000 events/s, almost none of them for the accounts a
bridge follows. Each frame is decoded with libipld (header and body: about 1.4 million
frames/s on one core) and filtered on the raw envelope, the repo DID and the op paths; the
CAR blocks are decoded only for commits of followed accounts that create a post or a repost,
and the SDK's models are never built. A post that is text, links and mentions (most of them)
is built from its record as it comes, with its author's profile (cached): the firehose already
carries all of it, and waiting for the AppView to index the post would cost seconds when the
network is busy. Posts with images, video or a quoted post, and reposts, are hydrated (image
URLs, the quoted post) with app.bsky.feed.getPosts in batches of 25.

Position: the ``seq`` of the last frame handled is committed through ``host.ingest`` with the
posts it produced (cursor ``firehose``), and, while nothing is pending, every few seconds on
its own, so a restart or a dropped connection resumes from it: nothing lost, and nothing
doubled (the core's ledger also ignores a post it already has). Reconnects back off
exponentially with jitter.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import libipld
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, WebSocketException

from adapters.bluesky.convert import author_from, post_from_record, post_from_view
from adapters.bluesky.feeds import Cursors, hydrate
from adapters.bluesky.http import Api
from bridge.errors import AuthFailed, BridgeError
from bridge.model import Author, Item, Source

log = logging.getLogger("bridge.adapters.bluesky")

CURSOR_KEY = "firehose"
# Lag is read from one frame in this many: parsing a timestamp on every frame at 2,000/s is waste.
LAG_EVERY = 200
DEFAULT_RELAY = "wss://bsky.network"
WANTED_PREFIXES = ("app.bsky.feed.post/", "app.bsky.feed.repost/")
BATCH = 50
PIPELINE = 8  # batches hydrated at once
IDLE_COMMIT_SECONDS = 5.0
# The AppView indexes a post shortly after the firehose carries it: ask again for this long
# before falling back to the raw record.
HYDRATE_WAIT = (0.2, 0.4, 0.8, 1.6)
# A followed author's profile (display name, handle) is fetched again after this long.
PROFILE_TTL = 900.0
# Embeds whose view adds nothing the record lacks (the core shows no link cards): such a post
# is complete from its record.
PLAIN_EMBEDS = frozenset({"", "app.bsky.embed.external"})


class FirehoseError(Exception):
    """The server sent an error frame (op -1)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}" if message else name)
        self.name = name


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    source: Source
    repo: str
    path: str
    record: Mapping[str, Any]


def subscribe_url(base: str) -> str:
    base = (base or DEFAULT_RELAY).rstrip("/")
    if base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    elif base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    if not base.endswith("/xrpc/com.atproto.sync.subscribeRepos"):
        base += "/xrpc/com.atproto.sync.subscribeRepos"
    return base


class Firehose:
    def __init__(
        self,
        url: str,
        api: Api,
        cursors: Cursors,
        wanted: Callable[[], Mapping[str, Source]],
        blob_url: Callable[[str, str], str],
        lag: Callable[[float], None] = lambda _seconds: None,
    ) -> None:
        self.url = subscribe_url(url)
        self._lag = lag  # how far behind real time the frames are, for /metrics
        self.api = api
        self.cursors = cursors
        self.wanted = wanted
        self.blob_url = blob_url
        self.seq: int | None = None  # last frame read
        self.committed: int | None = None
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self._busy = False
        self._ws: Any = None
        self._profiles: dict[str, Author] = {}
        self._profiled_at: dict[str, float] = {}  # loop time each profile was fetched
        self._profiles_lock = asyncio.Lock()
        # counters, for logs and tests
        self.frames = 0
        self.cars_decoded = 0
        self.connections = 0

    async def run(self) -> None:
        """Read the firehose until cancelled. Raises AuthFailed if hydration is refused."""
        saved = await self.cursors.get(CURSOR_KEY)
        self.seq = self.committed = int(saved) if saved and saved.isdigit() else None
        consumer = asyncio.create_task(self._consume(), name="bluesky-firehose-consume")
        idle = asyncio.create_task(self._idle_commits(), name="bluesky-firehose-idle")
        try:
            await self._connect_forever(consumer)
        finally:
            for task in (consumer, idle):
                task.cancel()
            await asyncio.gather(consumer, idle, return_exceptions=True)

    async def _connect_forever(self, consumer: asyncio.Task[None]) -> None:
        backoff = 1.0
        while True:
            if consumer.done():
                consumer.result()  # re-raise what stopped it (AuthFailed)
            url = self.url if self.seq is None else f"{self.url}?cursor={self.seq}"
            read_any = False
            try:
                async with connect(url, max_size=None, open_timeout=15, ping_interval=20, ping_timeout=30) as ws:
                    self._ws = ws
                    self.connections += 1
                    log.info("firehose connected url=%s cursor=%s", self.url, self.seq)
                    async for frame in ws:
                        read_any = True
                        if isinstance(frame, bytes):
                            self._frame(frame)
                        if consumer.done():
                            consumer.result()
            except FirehoseError as exc:
                log.warning("firehose error frame %s", exc)
                if exc.name == "FutureCursor":  # the server does not know our seq: start from now
                    self.seq = None
            except (TimeoutError, OSError, WebSocketException, InvalidHandshake) as exc:
                log.warning("firehose connection lost reason=%r", str(exc) or type(exc).__name__)
            finally:
                self._ws = None
            if read_any:
                backoff = 1.0
            delay = backoff * (0.5 + random.random())
            backoff = min(backoff * 2, 60.0)
            await asyncio.sleep(delay)

    def _frame(self, frame: bytes) -> None:
        self.frames += 1
        try:
            header, body = libipld.decode_dag_cbor_multi(frame)[:2]
        except (ValueError, TypeError) as exc:
            log.warning("firehose frame undecodable reason=%r", str(exc))
            return
        if not isinstance(header, dict) or not isinstance(body, dict):
            return
        if header.get("op") == -1:
            raise FirehoseError(str(body.get("error", "")), str(body.get("message", "")))
        seq = body.get("seq")
        if header.get("t") == "#commit":
            source = self.wanted().get(body.get("repo"))  # type: ignore[arg-type]
            if source is not None:
                self._commit(body, source, seq)
        if isinstance(seq, int):
            self.seq = seq
        if self.frames % LAG_EVERY == 1 and isinstance(body.get("time"), str):
            self._report_lag(body["time"])

    def _report_lag(self, stamp: str) -> None:
        try:
            at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
        except ValueError:
            return
        self._lag((datetime.now(UTC) - at).total_seconds())

    def _commit(self, body: Mapping[str, Any], source: Source, seq: Any) -> None:
        ops = [
            op
            for op in body.get("ops") or ()
            if isinstance(op, Mapping)
            and op.get("action") == "create"
            and isinstance(op.get("path"), str)
            and op["path"].startswith(WANTED_PREFIXES)
        ]
        if not ops or not isinstance(seq, int):
            return
        try:
            _, blocks = libipld.decode_car(body.get("blocks") or b"")
        except (ValueError, TypeError) as exc:
            log.warning("firehose commit blocks undecodable seq=%s reason=%r", seq, str(exc))
            return
        self.cars_decoded += 1
        for op in ops:
            record = blocks.get(op.get("cid")) if isinstance(blocks, Mapping) else None
            if isinstance(record, Mapping):
                self.queue.put_nowait(Event(seq, source, str(body.get("repo")), op["path"], record))

    async def _consume(self) -> None:
        """Batches go through a pipeline: up to PIPELINE batches are hydrated at once (each may
        wait seconds for the AppView to index its posts), and they are committed strictly in
        order, so the saved seq never passes a batch that is not in the ledger."""
        in_flight: asyncio.Queue[tuple[asyncio.Task[list[Item]], int]] = asyncio.Queue(maxsize=PIPELINE)
        committer = asyncio.create_task(self._commit_in_order(in_flight), name="bluesky-firehose-commit")
        try:
            while True:
                first = await self.queue.get()
                self._busy = True
                events = [first]
                while not self.queue.empty() and len(events) < BATCH:
                    events.append(self.queue.get_nowait())
                task = asyncio.create_task(self._prepare_retrying(events))
                await in_flight.put((task, events[-1].seq))
                if committer.done():
                    committer.result()  # re-raise what stopped it (AuthFailed)
        finally:
            committer.cancel()
            while not in_flight.empty():
                in_flight.get_nowait()[0].cancel()
            await asyncio.gather(committer, return_exceptions=True)

    async def _commit_in_order(self, in_flight: asyncio.Queue[tuple[asyncio.Task[list[Item]], int]]) -> None:
        while True:
            task, last = await in_flight.get()
            items = await task
            delay = 1.0
            while True:
                try:
                    await self.cursors.commit(items, {CURSOR_KEY: str(last)})
                    break
                except (AuthFailed, asyncio.CancelledError):
                    raise
                except Exception as exc:  # the core's database: wait and commit the same batch again
                    log.warning(
                        "firehose batch not committed yet, retrying in %.0fs reason=%r", delay, str(exc) or type(exc).__name__
                    )
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 60.0)
            self.committed = last
            if items:
                log.info("firehose relayed items=%d seq=%d", len(items), last)
            if in_flight.empty() and self.queue.empty():
                self._busy = False

    async def _prepare_retrying(self, events: list[Event]) -> list[Item]:
        delay = 1.0
        while True:
            try:
                return await self._prepare(events)
            except (AuthFailed, asyncio.CancelledError):
                raise
            except Exception as exc:  # the network, or the core's database: wait and try the same batch again
                log.warning(
                    "firehose batch not delivered yet, retrying in %.0fs reason=%r", delay, str(exc) or type(exc).__name__
                )
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 60.0)

    async def _prepare(self, events: list[Event]) -> list[Item]:
        """The batch's posts as Items: plain posts from their records with their authors'
        profiles; the others (and reposts) hydrated from the AppView, or from the raw record
        when the AppView has not indexed a post after HYDRATE_WAIT."""
        posts = {f"at://{e.repo}/{e.path}": e for e in events if e.path.startswith("app.bsky.feed.post/")}
        subjects = {}
        for e in events:
            if e.path.startswith("app.bsky.feed.repost/"):
                subject = e.record.get("subject")
                if isinstance(subject, Mapping) and isinstance(subject.get("uri"), str):
                    subjects[e.path + e.repo] = subject["uri"]
        plain = {u: e for u, e in posts.items() if _embed_type(e.record) in PLAIN_EMBEDS}
        if plain:
            await self._load_profiles({e.repo for e in plain.values()})  # an author not loaded: hydrated
        direct = {u for u, e in plain.items() if e.repo in self._profiles}
        to_hydrate = [u for u in posts if u not in direct]
        uris = list(dict.fromkeys([*to_hydrate, *subjects.values()]))
        views = await hydrate(self.api, uris) if uris else {}
        for pause in HYDRATE_WAIT:
            missing = [u for u in to_hydrate if u not in views]
            if not missing:
                break
            await asyncio.sleep(pause)
            views.update(await hydrate(self.api, missing))
        reposters = {e.repo for e in events if e.path.startswith("app.bsky.feed.repost/")}
        missing_authors = {e.repo for u, e in posts.items() if u not in views and u not in direct}
        await self._load_profiles(reposters | missing_authors, required=True)
        items: list[Item] = []
        for e in events:
            uri = f"at://{e.repo}/{e.path}"
            if e.path.startswith("app.bsky.feed.post/"):
                if uri in direct:
                    post = post_from_record(uri, e.record, self._profiles[e.repo], blob_url=self.blob_url)
                elif uri in views:
                    post = post_from_view(views[uri])
                else:
                    log.info("post not on the AppView yet, relaying the raw record uri=%s", uri)
                    post = post_from_record(uri, e.record, self._author(e.repo), blob_url=self.blob_url)
            else:
                view = views.get(subjects.get(e.path + e.repo, ""))
                if view is None:
                    continue  # the reposted post is gone
                post = post_from_view(view, reposted_by=self._author(e.repo), repost_time=_created(e.record))
            if post is not None:
                items.append(Item(e.source, post))
        return items

    async def _load_profiles(self, dids: set[str], *, required: bool = False) -> None:
        """Fetch the profiles of ``dids`` not known yet or older than PROFILE_TTL. When the
        AppView fails, a stale profile is kept (a stale display name beats holding up the
        stream); the failure is raised only when ``required`` and an author is unknown."""
        try:
            await self._fetch_profiles(dids)
        except (AuthFailed, asyncio.CancelledError):
            raise
        except Exception as exc:
            if required and any(d not in self._profiles for d in dids):
                raise
            log.info("profiles not refreshed, using what is known reason=%r", str(exc) or type(exc).__name__)

    async def _fetch_profiles(self, dids: set[str]) -> None:
        async with self._profiles_lock:  # batches hydrated at once ask for one author once
            now = asyncio.get_running_loop().time()
            todo = sorted(d for d in dids if d not in self._profiles or now - self._profiled_at.get(d, now) > PROFILE_TTL)
            for i in range(0, len(todo), 25):
                res = await self.api.query("app.bsky.actor.getProfiles", actors=todo[i : i + 25])
                for p in res.get("profiles") or ():
                    a = author_from(p)
                    if a.id:
                        self._profiles[a.id] = a
                        self._profiled_at[a.id] = now

    def _author(self, did: str) -> Author:
        return self._profiles.get(did) or Author(id=did, handle=did, url=f"https://bsky.app/profile/{did}")

    async def _idle_commits(self) -> None:
        """Move the committed seq past frames that produced nothing, when nothing is pending,
        so that a restart does not re-read hours of the firehose."""
        while True:
            await asyncio.sleep(IDLE_COMMIT_SECONDS)
            if self._busy or not self.queue.empty() or self.seq is None or self.seq == self.committed:
                continue
            seq = self.seq
            try:
                await self.cursors.commit((), {CURSOR_KEY: str(seq)})
                self.committed = seq
            except BridgeError as exc:
                log.warning("firehose position not saved reason=%r", str(exc))


def _embed_type(record: Mapping[str, Any]) -> str:
    embed = record.get("embed")
    if embed is None:
        return ""
    kind = embed.get("$type") if isinstance(embed, Mapping) else None
    return kind if isinstance(kind, str) and kind else "?"


def _created(record: Mapping[str, Any]) -> str | None:
    value = record.get("createdAt")
    return value if isinstance(value, str) else None
