"""What the Mastodon adapter polls, one newest-first feed per cursor, through the core's pager
(bridge.intake.paging) within the adapter's request budget (bridge.intake.schedule).

* ``accounts`` follow mode: one feed per followed account, ``/api/v1/accounts/:id/statuses``
  (posts, replies and boosts; the room's filters decide in the core). Linear in accounts.
* ``list`` follow mode: one feed for every followed account, ``/api/v1/timelines/list/:id`` of
  a list the adapter keeps (``ListFollows``). Mastodon lists hold only accounts the team
  account follows, so this mode follows each account from the team account, visibly.
* a hashtag watch: ``/api/v1/timelines/tag/:tag``; a phrase watch (only where the server has
  full-text search): ``/api/v2/search?type=statuses``.
* the inbox, two feeds: ``/api/v1/notifications?types[]=mention`` (every mention, direct
  ones among them: reason ``dm``, visibility ``direct`` kept in ``Post.native``) and
  ``/api/v1/conversations`` (each direct conversation's newest status). The second costs one
  request per cycle and carries what the first does not: a direct message the server filed
  as a filtered notification (Mastodon 4.3's notification policy filters private mentions
  from strangers by default, and ``/api/v1/notifications`` leaves those out). A direct
  message in both feeds is the same status, so the core's ledger relays it once; a
  conversation shows only its newest status, so two messages between polls come in through
  the mentions feed (or, filtered, only the newer one: the limit of the conversations API).

An entry's time is read from the status id (see ``entry_time``); pages are walked with the
``Link`` header's ``next`` (``max_id``). A feed without a position starts from now. A page
fetched twice never delivers a post twice (the core's ledger is idempotent).

Late statuses: Mastodon gives a status federated from another server an id made from its
remote creation time, so a status that reaches the server late sorts below statuses already
read. Every status feed is read ``late_window`` seconds below its position again, at most one
page (40 statuses) more than reaching the position takes, and that page at most once a
minute per feed with the default window (on a followed account's feed the first page usually
reaches far below, at no extra request), and the core's ledger drops what it already
delivered. Missed: a status that reaches the server more than ``late_window``
after it was written, or, on a feed busier than 40 statuses per ``late_window``, one that
sorts below the extra page.
The mentions feed needs no overlap: a notification's id is made when it is created here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from adapters.mastodon.convert import Converted, convert_conversation, convert_notification, convert_status, parse_time
from adapters.mastodon.http import MastodonHttp, Response
from bridge.errors import BridgeError, NotFound, Permanent
from bridge.intake.paging import Entry, Page, Pager, Turn
from bridge.intake.schedule import RequestBudget
from bridge.model import Batch, Gap, Item, Post, Source, SourceKind
from bridge.protocols import Host

log = logging.getLogger("bridge.adapters.mastodon")

PAGE = 40  # Mastodon: statuses and notifications pages hold at most 40
PAGES_PER_TURN = 5  # one busy feed must not hold up the others
LIST_KEY = "list"
RELATIONSHIPS_BATCH = 40  # ids per /api/v1/accounts/relationships (a URL must stay short)


def encode_native(c: Converted) -> str:
    """What an action needs later without a request: the status's visibility and its author's
    full address (a reply in a DM must mention the people in it)."""
    return json.dumps({"v": c.visibility, "a": c.post.author.handle}, separators=(",", ":"))


def decode_native(native: str) -> dict[str, str]:
    try:
        data = json.loads(native) if native else {}
    except ValueError:
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) else {}


def to_post(c: Converted, account: str) -> Post:
    """The converted status as the core gets it: this account's name as the network, the
    content warning as ``spoiler``, the visibility in ``native``."""
    p = c.post
    return replace(
        p,
        ref=replace(p.ref, network=account),
        reply_to=replace(p.reply_to, network=account) if p.reply_to else None,
        spoiler=c.content_warning,
        native=encode_native(c),
    )


def entry_time(raw: Mapping[str, Any]) -> datetime:
    """Where an entry sits in its feed, as a time for the pager's watermark.

    Mastodon orders feeds by id, and its ids are snowflakes: the creation time in milliseconds
    shifted 16 bits left, then a sequence within the millisecond. The time read from the id,
    with the sequence as microseconds, keeps statuses of one millisecond apart and in the
    server's order (``created_at`` alone has only milliseconds: two statuses of one millisecond
    would tie at the watermark and the later one be skipped). Servers with other ids
    (GoToSocial's ULIDs, Pleroma's flake ids) fall back on ``created_at``."""
    created = parse_time(raw.get("created_at"))
    raw_id = str(raw.get("id", ""))
    if raw_id.isdigit() and len(raw_id) <= 20:
        n = int(raw_id)
        try:
            at = datetime.fromtimestamp((n >> 16) / 1000, UTC) + timedelta(microseconds=min(n & 0xFFFF, 999))
        except (OverflowError, OSError, ValueError):
            return created
        if abs((at - created).total_seconds()) < 86400:
            return at
    return created


def hashtag(query: str) -> str:
    """The tag of a ``#tag`` query ("" for anything else: a phrase)."""
    q = query.strip()
    if q.startswith("#") and len(q) > 1 and all(ch.isalnum() or ch == "_" for ch in q[1:]):
        return q[1:]
    return ""


class Cursors:
    """The committed positions of this adapter's feeds, cached after the first read."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self._cache: dict[str, str | None] = {}

    async def get(self, key: str) -> str | None:
        if key not in self._cache:
            self._cache[key] = await self._host.load_cursor(key)
        return self._cache[key]

    async def commit(self, items: Iterable[Item], cursors: dict[str, str], gaps: Iterable[Gap] = ()) -> None:
        await self._host.ingest(Batch(tuple(items), dict(cursors), tuple(gaps)))
        self._cache.update(cursors)


class Feeds:
    """The shared parts of every feed: the request path, the cursors, the request budget and
    how posts are converted for this account."""

    def __init__(
        self,
        http: MastodonHttp,
        cursors: Cursors,
        budget: RequestBudget,
        account: str,
        local_domain: Callable[[], str],
        me: Callable[[], str],
        max_pages: int,
        web: Callable[[Source], str],
        late_window: float = 0.0,
    ) -> None:
        self.http = http
        self.cursors = cursors
        self.budget = budget
        self.account = account
        self.local_domain = local_domain
        self.me = me
        self.max_pages = max_pages
        self._web = web
        self.late_window = timedelta(seconds=max(0.0, late_window))
        self._pagers: dict[str, Pager[Any]] = {}
        self.profile_urls: dict[str, str] = {}  # account id -> its profile, as statuses showed it

    def pager(self, key: str, fetch: Callable[[str | None], Awaitable[Page[Any]]], late: bool = True) -> Pager[Any]:
        pager = self._pagers.get(key)
        if pager is None:
            pager = self._pagers[key] = Pager(
                fetch,
                budget=self.budget,
                pages_per_turn=PAGES_PER_TURN,
                max_pages=self.max_pages,
                overlap=self.late_window if late else timedelta(0),
            )
        return pager

    def forget(self, keep: Collection[str]) -> None:
        for key in [k for k in self._pagers if k not in keep]:
            del self._pagers[key]

    async def web_url(self, source: Source) -> str:
        """Where people read what a gap of ``source`` left out: a followed account's profile
        (as its statuses showed it, else as the server tells; one request, on a rare event),
        the tag's page, the search, the notifications."""
        if source.kind is not SourceKind.FOLLOW:
            return self._web(source)
        if source.value not in self.profile_urls:
            try:
                account = await self.http.get(f"/api/v1/accounts/{quote(source.value, safe='')}", scope="read:accounts")
            except BridgeError as exc:
                log.info("no profile address for a gap notice account=%s reason=%r", source.value, str(exc))
                return self._web(source)
            url = account.get("url") if isinstance(account, Mapping) else None
            if isinstance(url, str) and url.startswith(("https://", "http://")):
                self.profile_urls[source.value] = url
        return self.profile_urls.get(source.value) or self._web(source)

    async def turn(
        self,
        key: str,
        sources: Collection[Source],
        fetch: Callable[[str | None], Awaitable[Page[Any]]],
        late: bool = True,
    ) -> Turn:
        pager = self.pager(key, fetch, late)

        async def commit(values: list[Any], position: str, gaps: tuple[Gap, ...]) -> None:
            if gaps:
                gaps = tuple([replace(g, url=await self.web_url(g.source)) for g in gaps])
            await self.cursors.commit(values, {key: position}, gaps)

        turn = await pager.turn(await self.cursors.get(key), sources, commit)
        if turn.gaps:
            log.warning("feed could not be read back to its position feed=%s gaps=%d", key, len(turn.gaps))
        return turn

    def status_entries(self, statuses: Any, source_of: Callable[[Mapping[str, Any]], Source | None]) -> list[Entry[Item]]:
        entries: list[Entry[Item]] = []
        for raw in statuses if isinstance(statuses, list) else []:
            if not isinstance(raw, Mapping):
                continue
            at = entry_time(raw)
            source = source_of(raw)
            self._remember_profile(raw)
            item = None
            if source is not None:
                try:
                    item = Item(source, to_post(convert_status(raw, self.local_domain()), self.account))
                except ValueError as exc:
                    log.warning("skipped a status the server sent malformed reason=%r", str(exc))
            entries.append(Entry(at, item, source))
        return entries

    def _remember_profile(self, raw: Mapping[str, Any]) -> None:
        account = raw.get("account")
        if isinstance(account, Mapping):
            url = account.get("url")
            if isinstance(url, str) and url.startswith(("https://", "http://")) and account.get("id") is not None:
                self.profile_urls[str(account["id"])] = url

    @staticmethod
    def page(res: Response, entries: list[Entry[Item]]) -> Page[Item]:
        nxt = dict(res.next).get("max_id")
        oldest = min((e.at for e in entries), default=None)
        # Mastodon omits rel="next" on the last page; a short page is the end too.
        more = nxt if nxt and len(entries) >= PAGE else None
        return Page(entries, more, oldest)


class AccountFeeds:
    """``accounts`` mode: one feed per followed account (its statuses, boosts included)."""

    def __init__(self, feeds: Feeds) -> None:
        self.feeds = feeds

    async def poll(self, source: Source) -> Turn:
        async def fetch(cursor: str | None) -> Page[Item]:
            params: dict[str, Any] = {"limit": PAGE}
            if cursor:
                params["max_id"] = cursor
            res = await self.feeds.http.get_page(
                f"/api/v1/accounts/{quote(source.value, safe='')}/statuses", params, scope="read:statuses"
            )
            return Feeds.page(res, self.feeds.status_entries(res.data, lambda _raw: source))

        return await self.feeds.turn(source.key, (source,), fetch)


class ListFollows:
    """``list`` mode: every followed account in one Mastodon list of the team account, read
    with one ``/api/v1/timelines/list/:id`` per cycle however many accounts are followed.

    Mastodon adds only accounts the team account follows to a list, so this mode follows each
    followed source's account from the team account (the person sees the follow). The adapter
    remembers which follows it made (state ``managed_follows``) and undoes only those when the
    source goes away; a follow the team made itself is never undone. The list is found by its
    title (``list_title``) or created once; its id is kept in state ``list_id``."""

    STATE_MANAGED = "managed_follows"
    STATE_LIST = "list_id"

    def __init__(self, feeds: Feeds, host: Host, title: str) -> None:
        self.feeds = feeds
        self.host = host
        self.title = title
        self._list_id = ""
        self._members: set[str] | None = None
        self._managed: set[str] | None = None
        self._by_id: dict[str, Source] = {}

    async def _load(self) -> None:
        if self._managed is None:
            raw = await self.host.load_state(self.STATE_MANAGED)
            try:
                loaded = json.loads(raw) if raw else []
            except ValueError:
                loaded = []
            self._managed = {str(x) for x in loaded} if isinstance(loaded, list) else set()
        if not self._list_id:
            saved = await self.host.load_state(self.STATE_LIST) or ""
            http = self.feeds.http
            lists = await http.get("/api/v1/lists", scope="read:lists")
            ids = (
                {str(x.get("id")): str(x.get("title")) for x in lists if isinstance(x, Mapping)}
                if isinstance(lists, list)
                else {}
            )
            if saved in ids:
                self._list_id = saved
            else:
                found = next((i for i, t in ids.items() if t == self.title), "")
                if not found:
                    made = await http.post(
                        "/api/v1/lists", {"title": self.title, "replies_policy": "list", "exclusive": False}, scope="write:lists"
                    )
                    found = str(made.get("id", "")) if isinstance(made, Mapping) else ""
                    if not found:
                        raise Permanent(f"{http.server} did not create the list {self.title!r}")
                self._list_id = found
                await self.host.save_state(self.STATE_LIST, found)
        if self._members is None:
            self._members = set()
            params: Any = {"limit": 0}
            while True:
                res = await self.feeds.http.get_page(f"/api/v1/lists/{self._list_id}/accounts", params, scope="read:lists")
                for a in res.data if isinstance(res.data, list) else []:
                    if isinstance(a, Mapping) and a.get("id") is not None:
                        self._members.add(str(a["id"]))
                if not res.next or not res.data:
                    break
                params = res.next

    def released(self, account_id: str) -> None:
        """The team follows ``account_id`` on its own now (Follow button): never undo it."""
        if self._managed is not None:
            self._managed.discard(account_id)

    async def sync(self, wanted: set[str]) -> None:
        """Follow and add to the list every wanted account not in it; take out (and unfollow
        when the adapter followed it) those no source wants. Costs requests only on a change."""
        await self._load()
        assert self._members is not None and self._managed is not None
        http = self.feeds.http
        changed = False
        adding = sorted(wanted - self._members)
        if adding:
            following: set[str] = set()
            for i in range(0, len(adding), RELATIONSHIPS_BATCH):
                chunk = adding[i : i + RELATIONSHIPS_BATCH]
                rels = await http.get("/api/v1/accounts/relationships", [("id[]", a) for a in chunk], scope="read:follows")
                for r in rels if isinstance(rels, list) else []:
                    if isinstance(r, Mapping) and (r.get("following") or r.get("requested")):
                        following.add(str(r.get("id")))
            for account_id in adding:
                try:
                    if account_id not in following:
                        await http.post(f"/api/v1/accounts/{account_id}/follow", {"reblogs": True}, scope="write:follows")
                        self._managed.add(account_id)
                        changed = True
                        log.info("following on Mastodon for a subscription (list mode) account=%s", account_id)
                    await http.post(f"/api/v1/lists/{self._list_id}/accounts", {"account_ids": [account_id]}, scope="write:lists")
                    self._members.add(account_id)
                except (NotFound, Permanent) as exc:
                    # A locked account's follow waits for approval: the list takes it once approved.
                    log.warning("could not add a followed account to the list account=%s reason=%r", account_id, str(exc))
        for account_id in sorted(self._members - wanted):
            try:
                await http.request("DELETE", f"/api/v1/lists/{self._list_id}/accounts", json_body={"account_ids": [account_id]})
            except (NotFound, Permanent) as exc:
                log.warning("could not take an account off the list account=%s reason=%r", account_id, str(exc))
            self._members.discard(account_id)
            if account_id in self._managed:
                self._managed.discard(account_id)
                changed = True
                try:
                    await http.post(f"/api/v1/accounts/{account_id}/unfollow", scope="write:follows")
                    log.info("unfollowed on Mastodon, no subscription wants it any more account=%s", account_id)
                except (NotFound, Permanent) as exc:
                    log.warning("could not unfollow account=%s reason=%r", account_id, str(exc))
        if changed:
            await self.host.save_state(self.STATE_MANAGED, json.dumps(sorted(self._managed)))

    def _source_of(self, raw: Mapping[str, Any]) -> Source | None:
        account = raw.get("account") if isinstance(raw.get("account"), Mapping) else {}
        return self._by_id.get(str(account.get("id", "")))

    async def poll(self, follows: set[Source]) -> Turn:
        self._by_id = {s.value: s for s in follows}
        await self.sync(set(self._by_id))
        if not follows:
            if await self.feeds.cursors.get(LIST_KEY):
                await self.feeds.cursors.commit((), {LIST_KEY: ""})
            return Turn()

        async def fetch(cursor: str | None) -> Page[Item]:
            params: dict[str, Any] = {"limit": PAGE}
            if cursor:
                params["max_id"] = cursor
            res = await self.feeds.http.get_page(f"/api/v1/timelines/list/{self._list_id}", params, scope="read:lists")
            return Feeds.page(res, self.feeds.status_entries(res.data, self._source_of))

        return await self.feeds.turn(LIST_KEY, follows, fetch)


class Watches:
    """Query sources: ``#tag`` through the hashtag timeline, a phrase through full-text search."""

    def __init__(self, feeds: Feeds) -> None:
        self.feeds = feeds

    async def poll(self, source: Source) -> Turn:
        tag = hashtag(source.value)

        async def fetch(cursor: str | None) -> Page[Item]:
            params: dict[str, Any] = {"limit": PAGE}
            if cursor:
                params["max_id"] = cursor
            if tag:
                res = await self.feeds.http.get_page(
                    f"/api/v1/timelines/tag/{quote(tag, safe='')}", params, scope="read:statuses"
                )
                return Feeds.page(res, self.feeds.status_entries(res.data, lambda _raw: source))
            params.update(q=source.value, type="statuses", resolve="false")
            res = await self.feeds.http.get_page("/api/v2/search", params, scope="read:search")
            statuses = res.data.get("statuses") if isinstance(res.data, Mapping) else []
            entries = self.feeds.status_entries(statuses, lambda _raw: source)
            ids = [int(s["id"]) for s in statuses or () if isinstance(s, Mapping) and str(s.get("id", "")).isdigit()]
            more = str(min(ids)) if ids and len(entries) >= PAGE else None
            return Page(entries, more, min((e.at for e in entries), default=None))

        return await self.feeds.turn(source.key, (source,), fetch)


class Inbox:
    """Mentions of the team account and its direct conversations (see the module docstring)."""

    def __init__(self, feeds: Feeds) -> None:
        self.feeds = feeds
        self.conversations = True  # False once the server said it has no conversations API

    @staticmethod
    def direct_key(source: Source) -> str:
        return f"{source.key}/direct"

    async def poll(self, source: Source) -> Turn:
        mentions = await self._mentions(source)
        if not self.conversations:
            return mentions
        try:
            direct = await self._conversations(source)
        except NotFound:
            # Some Mastodon-API servers have no /api/v1/conversations: direct messages still
            # come in as mentions there, so the inbox goes on without it.
            self.conversations = False
            log.warning("the server has no conversations API; direct messages come in as mentions only")
            return mentions
        return Turn(
            handed=mentions.handed + direct.handed,
            requests=mentions.requests + direct.requests,
            behind=mentions.behind or direct.behind,
            gaps=mentions.gaps + direct.gaps,
        )

    async def _conversations(self, source: Source) -> Turn:
        async def fetch(cursor: str | None) -> Page[Item]:
            params: dict[str, Any] = {"limit": PAGE}
            if cursor:
                params["max_id"] = cursor
            # docs: methods/conversations.md — paged by each conversation's last status id.
            res = await self.feeds.http.get_page("/api/v1/conversations", params, scope="read:statuses")
            entries: list[Entry[Item]] = []
            for raw in res.data if isinstance(res.data, list) else []:
                if not isinstance(raw, Mapping) or not isinstance(raw.get("last_status"), Mapping):
                    continue
                item = None
                try:
                    c = convert_conversation(raw, self.feeds.local_domain(), self.feeds.me())
                    if c is not None:
                        item = Item(source, to_post(c, self.feeds.account))
                except ValueError as exc:
                    log.warning("skipped a conversation the server sent malformed reason=%r", str(exc))
                entries.append(Entry(entry_time(raw["last_status"]), item, source))
            return Feeds.page(res, entries)

        return await self.feeds.turn(self.direct_key(source), (source,), fetch)

    async def _mentions(self, source: Source) -> Turn:
        async def fetch(cursor: str | None) -> Page[Item]:
            params: list[tuple[str, str]] = [("limit", str(PAGE)), ("types[]", "mention")]
            if cursor:
                params.append(("max_id", cursor))
            res = await self.feeds.http.get_page("/api/v1/notifications", params, scope="read:notifications")
            entries: list[Entry[Item]] = []
            for raw in res.data if isinstance(res.data, list) else []:
                if not isinstance(raw, Mapping):
                    continue
                item = None
                try:
                    c = convert_notification(raw, self.feeds.local_domain(), self.feeds.me())
                    if c is not None:
                        item = Item(source, to_post(c, self.feeds.account))
                except ValueError as exc:
                    log.warning("skipped a notification the server sent malformed reason=%r", str(exc))
                entries.append(Entry(entry_time(raw), item, source))
            return Feeds.page(res, entries)

        return await self.feeds.turn(source.key, (source,), fetch, late=False)


def is_followed(source: Source) -> bool:
    return source.kind is SourceKind.FOLLOW
