"""What the adapter polls: the team account's timeline (followed accounts, in poll mode),
searches (queries, in both modes) and the inbox (notifications and direct messages).

The timeline, each search and the notifications are newest-first feeds: the core's pager
(bridge.intake.paging) walks each back to its watermark, within the adapter's request budget,
and hands what it found to the core oldest first with the new position, in one ``host.ingest``;
what it cannot reach is handed over as a gap the rooms are told of. This module supplies one
page per cursor. A feed without a position starts from now: its first turn only records where
"now" is. The core's ledger is idempotent, so a page fetched twice (a crash between fetch and
commit, a walk continued after a restart) never delivers a post twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from adapters.bluesky.convert import (
    author_from,
    parse_time,
    post_from_feed_item,
    post_from_message,
    post_from_view,
    profile_url,
)
from adapters.bluesky.http import Api
from bridge.errors import AuthFailed, NotFound, Permanent, RateLimited, Transient
from bridge.intake.paging import Entry, Page, Pager, Position, Turn, iso
from bridge.intake.schedule import RequestBudget
from bridge.model import Author, Batch, Gap, Item, Source, SourceKind
from bridge.protocols import Host

log = logging.getLogger("bridge.adapters.bluesky")

PAGE = 100  # app.bsky.feed.getTimeline / searchPosts / listNotifications: limit ≤ 100
PAGES_PER_TURN = 10  # per feed and turn: one busy feed must not hold up the others
GET_POSTS_BATCH = 25  # app.bsky.feed.getPosts: at most 25 uris
INBOX_REASONS = {"mention", "reply", "quote"}
TIMELINE_KEY = "timeline"

__all__ = ["Cursors", "Inbox", "Search", "Timeline", "hydrate", "iso"]


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


def _next(res: Mapping[str, Any]) -> str | None:
    cursor = res.get("cursor")
    return cursor if isinstance(cursor, str) and cursor else None


def gap_url(source: Source) -> str:
    """Where people read on Bluesky what a gap of ``source`` holds."""
    if source.kind is SourceKind.FOLLOW:
        return profile_url(source.value)
    if source.kind is SourceKind.QUERY:
        return f"https://bsky.app/search?q={quote(source.value)}"
    return "https://bsky.app/notifications"


class Cursors:
    """The committed positions of this adapter's sources, cached after the first read."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self._cache: dict[str, str | None] = {}

    async def get(self, key: str) -> str | None:
        if key not in self._cache:
            self._cache[key] = await self._host.load_cursor(key)
        return self._cache[key]

    async def commit(self, items: Iterable[Item], cursors: dict[str, str], gaps: Iterable[Gap] = ()) -> None:
        batch = Batch(tuple(items), dict(cursors), tuple(gaps))
        if not batch.items and not batch.gaps and all(self._cache.get(k) == v for k, v in cursors.items()):
            return
        await self._host.ingest(batch)
        self._cache.update(cursors)


class Feeds:
    """What the timeline, the searches and the inbox share: the cursors, the request budget,
    and how far back a walk may reach (``catch_up`` entries)."""

    def __init__(self, cursors: Cursors, budget: RequestBudget, catch_up: int) -> None:
        self.cursors = cursors
        self.budget = budget
        self.max_pages = max(1, -(-catch_up // PAGE))

    def pager(self, fetch: Callable[[str | None], Awaitable[Page[Any]]]) -> Pager[Any]:
        return Pager(fetch, budget=self.budget, pages_per_turn=PAGES_PER_TURN, max_pages=self.max_pages, where=gap_url)

    async def turn(
        self,
        pager: Pager[Any],
        key: str,
        sources: Collection[Source],
        to_items: Callable[[list[Any]], Awaitable[list[Item]]],
    ) -> Turn:
        async def commit(values: list[Any], position: str, gaps: tuple[Gap, ...]) -> None:
            items = await to_items(values) if values else []
            await self.cursors.commit(items, {key: position}, gaps)

        turn = await pager.turn(await self.cursors.get(key), sources, commit)
        if turn.gaps:
            log.warning("feed could not be read back to its position feed=%s gaps=%d", key, len(turn.gaps))
        return turn


async def _as_is(values: list[Any]) -> list[Item]:
    return list(values)


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
    as cheap but has no reposts; author feeds cost one request per account per cycle. The
    timeline is one feed with one position (``timeline``); a subscription added later gets
    nothing older than itself (the core's matcher starts it from now).

    The price: the team account must follow the accounts on Bluesky. The adapter follows each
    followed source's account itself, remembers which follows it made (adapter state
    ``managed_follows``), and removes only those when the source goes away (its last
    subscription removed: a paused room keeps its sources); a follow the team made itself (on
    Bluesky, or with the Follow button) is never undone.
    """

    STATE_KEY = "managed_follows"

    def __init__(self, api: Api, host: Host, feeds: Feeds, team_did: Callable[[], str]) -> None:
        self.api = api
        self.host = host
        self.feeds = feeds
        self.team_did = team_did
        self._managed: dict[str, str] | None = None  # did -> follow record uri we created
        self._following: set[str] = set()  # dids we know the team follows
        self._by_did: dict[str, Source] = {}
        self.pager = feeds.pager(self._page)

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

    async def _page(self, cursor: str | None) -> Page[Item]:
        res = await self.api.query("app.bsky.feed.getTimeline", limit=PAGE, cursor=cursor)
        feed = [f for f in res.get("feed") or () if isinstance(f, Mapping)]
        entries: list[Entry[Item]] = []
        for raw in feed:
            post = post_from_feed_item(raw)
            source = None
            if post is not None:
                source = self._by_did.get(post.reposted_by.id if post.reposted_by else post.author.id)
            entries.append(Entry(_item_time(raw), Item(source, post) if source and post else None, source))
        return Page(entries, _next(res), min((_sort_time(f) for f in feed), default=None))

    async def _position(self, follows: set[Source]) -> None:
        """Cursors kept per followed account before the timeline had one position: the oldest
        of them becomes the timeline's, so that an upgrade loses nothing."""
        if await self.feeds.cursors.get(TIMELINE_KEY) is not None:
            return
        marks = [Position.load(await self.feeds.cursors.get(s.key)).mark for s in follows]
        known = [m for m in marks if m is not None]
        if known:
            await self.feeds.cursors.commit((), {TIMELINE_KEY: Position(min(known)).dump()})

    async def poll(self, follows: set[Source]) -> Turn:
        """One turn of the timeline for the followed sources ``follows``."""
        self._by_did = {s.value: s for s in follows}
        await self.sync_follows(set(self._by_did))  # also when the last source went: unfollow
        if not follows:
            # Nobody follows anyone: the next followed source starts from now, not from here.
            if await self.feeds.cursors.get(TIMELINE_KEY):
                await self.feeds.cursors.commit((), {TIMELINE_KEY: ""})
            return Turn()
        await self._position(follows)
        return await self.feeds.turn(self.pager, TIMELINE_KEY, follows, _as_is)


class Search:
    """A query source, through app.bsky.feed.searchPosts (sort=latest), newest indexedAt first."""

    def __init__(self, api: Api, feeds: Feeds) -> None:
        self.api = api
        self.feeds = feeds
        self._pagers: dict[Source, Pager[Any]] = {}

    def forget(self, keep: Collection[Source]) -> None:
        for source in [s for s in self._pagers if s not in keep]:
            del self._pagers[source]

    async def poll(self, source: Source) -> Turn:
        pager = self._pagers.get(source)
        if pager is None:
            pager = self._pagers[source] = self.feeds.pager(lambda cursor: self._page(source, cursor))
        return await self.feeds.turn(pager, source.key, (source,), _as_is)

    async def _page(self, source: Source, cursor: str | None) -> Page[Item]:
        res = await self.api.query("app.bsky.feed.searchPosts", q=source.value, sort="latest", limit=PAGE, cursor=cursor)
        views = [v for v in res.get("posts") or () if isinstance(v, Mapping)]
        entries: list[Entry[Item]] = []
        for view in views:
            post = post_from_view(view)
            entries.append(Entry(parse_time(view.get("indexedAt")), Item(source, post) if post else None, source))
        nxt = _next(res)
        # A full page without a cursor: the search service stopped paging, older posts exist.
        return Page(entries, nxt, min((e.at for e in entries), default=None), complete=nxt is None and len(views) < PAGE)


class Inbox:
    """The team account's mentions, replies and quotes (app.bsky.notification
    .listNotifications) and its direct messages (chat.bsky.convo.getLog, through the PDS
    with the atproto-proxy header, or ``chat_service`` when set)."""

    def __init__(
        self, api: Api, feeds: Feeds, team_did: Callable[[], str], chat: Callable[..., Awaitable[dict[str, Any]]]
    ) -> None:
        self.api = api
        self.feeds = feeds
        self.cursors = feeds.cursors
        self.team_did = team_did
        self.chat = chat
        self._members: dict[str, dict[str, Author]] = {}
        self.dms_disabled = ""  # why DMs are not read (e.g. the app password has no DM access)
        self._source = Source("bluesky", SourceKind.INBOX, "")
        self.pager = feeds.pager(self._page)

    async def poll(self, source: Source) -> Turn:
        self._source = source
        turn = await self.feeds.turn(self.pager, source.key, (source,), self._hydrate)
        n = turn.handed
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
        return Turn(n, turn.requests, turn.behind, turn.gaps)

    async def _page(self, cursor: str | None) -> Page[tuple[str, str]]:
        res = await self.api.query("app.bsky.notification.listNotifications", limit=PAGE, cursor=cursor)
        notes = [x for x in res.get("notifications") or () if isinstance(x, Mapping)]
        entries: list[Entry[tuple[str, str]]] = []
        for note in notes:
            wanted = note.get("reason") in INBOX_REASONS and isinstance(note.get("uri"), str)
            value = (note["uri"], str(note["reason"])) if wanted else None
            entries.append(Entry(parse_time(note.get("indexedAt")), value, self._source))
        return Page(entries, _next(res), min((e.at for e in entries), default=None))

    async def _hydrate(self, wanted: list[tuple[str, str]]) -> list[Item]:
        """The notified posts, oldest first, from app.bsky.feed.getPosts (a post deleted since
        is skipped)."""
        uris = list(dict.fromkeys(u for u, _ in wanted))
        views = await hydrate(self.api, uris)
        self.feeds.budget.spend(-(-len(uris) // GET_POSTS_BATCH))
        items: list[Item] = []
        seen: set[str] = set()
        for uri, reason in wanted:
            if uri in seen or uri not in views:
                continue
            seen.add(uri)
            post = post_from_view(views[uri], reason=reason)
            if post is not None:
                items.append(Item(self._source, post))
        return items

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
