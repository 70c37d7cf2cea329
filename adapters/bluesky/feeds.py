"""What the adapter polls: the team account's timeline (followed accounts, in poll mode),
searches (queries, in both modes) and the inbox (notifications and direct messages).

Positions are watermarks, committed only through ``host.ingest`` together with the items
that produced them, so a restart resumes where the last committed batch left off. A source
without a position starts from now: the first fetch only records where "now" is. The core's
ledger is idempotent, so a batch fetched twice (a crash between fetch and commit) never
delivers a post twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.bluesky.convert import (
    author_from,
    parse_time,
    post_from_feed_item,
    post_from_message,
    post_from_view,
)
from adapters.bluesky.http import Api
from bridge.errors import AuthFailed, NotFound, Permanent, RateLimited, Transient
from bridge.model import Author, Batch, Item, Source, SourceKind
from bridge.protocols import Host

log = logging.getLogger("bridge.adapters.bluesky")

PAGE = 100  # app.bsky.feed.getTimeline / searchPosts: limit ≤ 100
MAX_PAGES = 5  # per source and cycle: a burst beyond 500 items waits for the next cycle
GET_POSTS_BATCH = 25  # app.bsky.feed.getPosts: at most 25 uris
INBOX_REASONS = {"mention", "reply", "quote"}


# A new source starts from "now"; when the feed itself shows no newer time, our clock stands in
# for the server's, a little early: the server's times have millisecond precision, and a post
# made as the subscription was created must not be lost (the core drops older ones anyway).
NOW_SLACK = timedelta(seconds=2)


def now_mark() -> str:
    return iso(datetime.now(UTC) - NOW_SLACK)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def mark_of(value: str | None) -> datetime | None:
    if not value:
        return None
    return parse_time(value)


def _item_time(item: Mapping[str, Any]) -> datetime:
    """When a timeline item reached the feed: the repost's time for reposts."""
    reason = item.get("reason") if isinstance(item.get("reason"), Mapping) else {}
    post = item.get("post") if isinstance(item.get("post"), Mapping) else {}
    return parse_time(reason.get("indexedAt") if reason else None, post.get("indexedAt"))


def _sort_time(item: Mapping[str, Any]) -> datetime:
    """How the AppView orders a timeline item (the earlier of created and indexed)."""
    t = _item_time(item)
    reason = item.get("reason") if isinstance(item.get("reason"), Mapping) else {}
    if not reason:
        post = item.get("post") if isinstance(item.get("post"), Mapping) else {}
        record = post.get("record") if isinstance(post.get("record"), Mapping) else {}
        created = record.get("createdAt")
        if isinstance(created, str):
            t = min(t, parse_time(created, post.get("indexedAt")))
    return t


class Cursors:
    """The committed positions of this adapter's sources, cached after the first read."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self._cache: dict[str, str | None] = {}

    async def get(self, key: str) -> str | None:
        if key not in self._cache:
            self._cache[key] = await self._host.load_cursor(key)
        return self._cache[key]

    async def commit(self, items: Iterable[Item], cursors: dict[str, str]) -> None:
        batch = Batch(tuple(items), dict(cursors))
        if not batch.items and all(self._cache.get(k) == v for k, v in cursors.items()):
            return
        await self._host.ingest(batch)
        self._cache.update(cursors)

    async def advance(self, key: str, items: list[Item], mark: datetime | None, newest: datetime | None) -> int:
        """Hand over ``items`` oldest first and move ``key`` to the newest time seen (a source
        without a mark starts from now). Returns how many items were handed over."""
        if mark is None:
            position = iso(newest) if newest else now_mark()
        else:
            position = iso(max(mark, newest)) if newest else iso(mark)
        items.sort(key=lambda it: it.post.created_at)
        await self.commit(items, {key: position})
        return len(items)


async def hydrate(api: Api, uris: list[str]) -> dict[str, Mapping[str, Any]]:
    """Post views by uri, from app.bsky.feed.getPosts in batches of 25 (missing uris are
    absent: deleted, or not indexed yet)."""
    views: dict[str, Mapping[str, Any]] = {}
    for i in range(0, len(uris), GET_POSTS_BATCH):
        chunk = uris[i : i + GET_POSTS_BATCH]
        res = await api.query("app.bsky.feed.getPosts", uris=chunk)
        for view in res.get("posts") or ():
            if isinstance(view, Mapping) and isinstance(view.get("uri"), str):
                views[view["uri"]] = view
    return views


class Timeline:
    """Followed accounts in poll mode, through the team account's home timeline.

    Why the timeline: one ``getTimeline`` request per cycle (more only when over 100 new items
    arrived since the last one) covers every followed account, however many there are, and it
    carries posts, replies *and reposts*. A curation list polled with ``getListFeed`` would be
    as cheap but has no reposts; author feeds cost one request per account per cycle.

    The price: the team account must follow the accounts on Bluesky. The adapter follows each
    followed source's account itself, remembers which follows it made (adapter state
    ``managed_follows``), and removes only those when the source goes away; a follow the team
    made itself (on Bluesky, or with the Follow button) is never undone.
    """

    STATE_KEY = "managed_follows"

    def __init__(self, api: Api, host: Host, cursors: Cursors, team_did: Callable[[], str]) -> None:
        self.api = api
        self.host = host
        self.cursors = cursors
        self.team_did = team_did
        self._managed: dict[str, str] | None = None  # did -> follow record uri we created
        self._following: set[str] = set()  # dids we know the team follows

    async def _load_managed(self) -> dict[str, str]:
        if self._managed is None:
            raw = await self.host.load_state(self.STATE_KEY)
            try:
                loaded = json.loads(raw) if raw else {}
            except ValueError:
                loaded = {}
            self._managed = {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
        return self._managed

    async def _save_managed(self) -> None:
        await self.host.save_state(self.STATE_KEY, json.dumps(self._managed or {}))

    async def released(self, did: str) -> None:
        """The team now wants to follow ``did`` on its own (Follow button): never undo it."""
        managed = await self._load_managed()
        if managed.pop(did, None) is not None:
            await self._save_managed()
        self._following.add(did)

    async def sync_follows(self, wanted: set[str]) -> None:
        """Follow on Bluesky every wanted account not followed yet; unfollow the accounts the
        adapter followed itself that no source wants any more. Costs requests only when the
        set of sources changes."""
        managed = await self._load_managed()
        team = self.team_did()
        unknown = sorted(wanted - self._following - {team})
        for i in range(0, len(unknown), 30):  # getRelationships: at most 30 others
            chunk = unknown[i : i + 30]
            res = await self.api.query("app.bsky.graph.getRelationships", actor=team, others=chunk)
            for rel in res.get("relationships") or ():
                if isinstance(rel, Mapping) and rel.get("following") and isinstance(rel.get("did"), str):
                    self._following.add(rel["did"])
        changed = False
        for did in unknown:
            if did in self._following:
                continue
            try:
                res = await self.api.procedure(
                    "com.atproto.repo.createRecord",
                    {
                        "repo": team,
                        "collection": "app.bsky.graph.follow",
                        "record": {"$type": "app.bsky.graph.follow", "subject": did, "createdAt": iso(datetime.now(UTC))},
                    },
                )
            except Permanent as exc:
                log.warning("could not follow a followed source did=%s reason=%r", did, str(exc))
                continue
            managed[did] = str(res.get("uri", ""))
            self._following.add(did)
            changed = True
            log.info("following on Bluesky for a subscription did=%s", did)
        for did in sorted(set(managed) - wanted):
            uri = managed.pop(did)
            changed = True
            self._following.discard(did)
            if uri.startswith("at://"):
                try:
                    await self.api.procedure(
                        "com.atproto.repo.deleteRecord",
                        {"repo": team, "collection": "app.bsky.graph.follow", "rkey": uri.rsplit("/", 1)[-1]},
                    )
                    log.info("unfollowed on Bluesky, no subscription wants it any more did=%s", did)
                except (NotFound, Permanent) as exc:
                    log.warning("could not unfollow did=%s reason=%r", did, str(exc))
        if changed:
            await self._save_managed()

    async def poll(self, follows: set[Source]) -> int:
        """One cycle; returns the number of items handed to the core."""
        by_did = {s.value: s for s in follows}
        await self.sync_follows(set(by_did))  # also when the last source went: unfollow
        if not follows:
            return 0
        marks = {s: mark_of(await self.cursors.get(s.key)) for s in follows}
        known = [m for m in marks.values() if m is not None]
        floor = min(known) if known else None
        items: list[Item] = []
        newest: datetime | None = None
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            res = await self.api.query("app.bsky.feed.getTimeline", limit=PAGE, cursor=cursor)
            feed = [f for f in res.get("feed") or () if isinstance(f, Mapping)]
            for entry in feed:
                t = _item_time(entry)
                newest = t if newest is None or t > newest else newest
                post = post_from_feed_item(entry)
                if post is None:
                    continue
                origin = post.reposted_by.id if post.reposted_by else post.author.id
                source = by_did.get(origin)
                if source is None:
                    continue
                mark = marks[source]
                if mark is not None and t > mark:
                    items.append(Item(source, post))
            cursor = res.get("cursor") if isinstance(res.get("cursor"), str) else None
            # Stop once the page reaches back past every watermark (or, with only new
            # sources, after the first page: they start from now).
            if not feed or not cursor or floor is None or min(_sort_time(f) for f in feed) < floor:
                break
        top = iso(newest) if newest else now_mark()
        positions: dict[str, str] = {}
        for source, mark in marks.items():
            positions[source.key] = top if mark is None or (newest and newest > mark) else iso(mark)
        items.sort(key=lambda it: it.post.created_at)
        await self.cursors.commit(items, positions)
        return len(items)


class Search:
    """A query source, through app.bsky.feed.searchPosts (sort=latest), paged back to the
    source's watermark (the newest indexedAt already handed over)."""

    def __init__(self, api: Api, cursors: Cursors) -> None:
        self.api = api
        self.cursors = cursors

    async def poll(self, source: Source) -> int:
        mark = mark_of(await self.cursors.get(source.key))
        items: list[Item] = []
        newest: datetime | None = None
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            res = await self.api.query("app.bsky.feed.searchPosts", q=source.value, sort="latest", limit=PAGE, cursor=cursor)
            views = [v for v in res.get("posts") or () if isinstance(v, Mapping)]
            oldest: datetime | None = None
            for view in views:
                t = parse_time(view.get("indexedAt"))
                newest = t if newest is None or t > newest else newest
                oldest = t if oldest is None or t < oldest else oldest
                if mark is not None and t > mark:
                    post = post_from_view(view)
                    if post is not None:
                        items.append(Item(source, post))
            cursor = res.get("cursor") if isinstance(res.get("cursor"), str) else None
            if mark is None or not views or not cursor or (oldest is not None and oldest < mark):
                break
        return await self.cursors.advance(source.key, items, mark, newest)


class Inbox:
    """The team account's mentions, replies and quotes (app.bsky.notification
    .listNotifications) and its direct messages (chat.bsky.convo.getLog, through the PDS
    with the atproto-proxy header, or ``chat_service`` when set)."""

    def __init__(
        self, api: Api, cursors: Cursors, team_did: Callable[[], str], chat: Callable[..., Awaitable[dict[str, Any]]]
    ) -> None:
        self.api = api
        self.cursors = cursors
        self.team_did = team_did
        self.chat = chat
        self._members: dict[str, dict[str, Author]] = {}
        self.dms_disabled = ""  # why DMs are not read (e.g. the app password has no DM access)

    async def poll(self, source: Source) -> int:
        n = await self._notifications(source)
        if not self.dms_disabled:
            try:
                n += await self._messages(source)
            except (RateLimited, AuthFailed):
                raise
            except Permanent as exc:
                self.dms_disabled = str(exc)
                log.warning("direct messages are not read: %s", exc)
            except Transient as exc:  # the chat service is down: notifications still flow
                log.warning("direct messages not read this time reason=%r", str(exc))
        return n

    async def _notifications(self, source: Source) -> int:
        mark = mark_of(await self.cursors.get(source.key))
        wanted: list[tuple[str, str]] = []  # (uri, reason)
        newest: datetime | None = None
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            res = await self.api.query("app.bsky.notification.listNotifications", limit=PAGE, cursor=cursor)
            notes = [x for x in res.get("notifications") or () if isinstance(x, Mapping)]
            oldest: datetime | None = None
            for note in notes:
                t = parse_time(note.get("indexedAt"))
                newest = t if newest is None or t > newest else newest
                oldest = t if oldest is None or t < oldest else oldest
                if mark is not None and t > mark and note.get("reason") in INBOX_REASONS and isinstance(note.get("uri"), str):
                    wanted.append((note["uri"], str(note["reason"])))
            cursor = res.get("cursor") if isinstance(res.get("cursor"), str) else None
            if mark is None or not notes or not cursor or (oldest is not None and oldest < mark):
                break
        items: list[Item] = []
        if wanted:
            views = await hydrate(self.api, list(dict.fromkeys(u for u, _ in wanted)))
            seen: set[str] = set()
            for uri, reason in wanted:
                if uri in seen or uri not in views:
                    continue
                seen.add(uri)
                post = post_from_view(views[uri], reason=reason)
                if post is not None:
                    items.append(Item(source, post))
        return await self.cursors.advance(source.key, items, mark, newest)

    async def _messages(self, source: Source) -> int:
        key = f"{source.key}#dm"
        position = await self.cursors.get(key)
        res = await self.chat("chat.bsky.convo.getLog", cursor=position)
        logs = [x for x in res.get("logs") or () if isinstance(x, Mapping)]
        next_position = res.get("cursor") if isinstance(res.get("cursor"), str) and res.get("cursor") else None
        if next_position is None:
            revs = [x["rev"] for x in logs if isinstance(x.get("rev"), str)]
            next_position = max(revs) if revs else position
        items: list[Item] = []
        if position is not None:  # a first read only records where now is
            team = self.team_did()
            for entry in logs:
                if entry.get("$type") != "chat.bsky.convo.defs#logCreateMessage":
                    continue
                convo = entry.get("convoId")
                message = entry.get("message") if isinstance(entry.get("message"), Mapping) else {}
                sender = (message.get("sender") or {}).get("did") if isinstance(message.get("sender"), Mapping) else None
                if not isinstance(convo, str) or not isinstance(sender, str) or sender == team:
                    continue
                author = await self._member(convo, sender)
                post = post_from_message(message, convo, author)
                if post is not None:
                    items.append(Item(source, post))
        if next_position is not None:
            await self.cursors.commit(items, {key: next_position})
        return len(items)

    async def _member(self, convo: str, did: str) -> Author:
        members = self._members.get(convo)
        if members is None or did not in members:
            try:
                res = await self.chat("chat.bsky.convo.getConvo", convoId=convo)
                members = {
                    m["did"]: author_from(m)
                    for m in (res.get("convo") or {}).get("members") or ()
                    if isinstance(m, Mapping) and isinstance(m.get("did"), str)
                }
            except (NotFound, Permanent):
                members = {}
            self._members[convo] = members
        return members.get(did) or Author(id=did, handle=did, url=f"https://bsky.app/profile/{did}")


def follows_of(sources: Iterable[Source]) -> set[Source]:
    return {s for s in sources if s.kind is SourceKind.FOLLOW}
