"""The Mastodon network adapter: the team account on one server (any server with the Mastodon
client API), the feeds it watches (feeds.py), the streaming API as a doorbell, and the actions
the team takes from chat.

Tasks while running:
* the poll loop: every ``poll_interval`` seconds (at once when subscriptions change, and for
  one feed at once when the stream says it has news) it gives each due feed a turn through the
  core's pager, within a request budget below the server's 300 requests per 5 minutes;
* with ``streaming = true``, the stream reader: one websocket (``user``, with ``direct`` while
  the inbox is on and ``hashtag`` subscriptions per watched tag). A frame is never handed to the core itself: it only makes
  its feed due, and the REST turn hands the post over with its cursor. So a dropped stream
  loses nothing, a post arrives once, and after every (re)connect every feed is polled
  (the catch-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp

from adapters.mastodon.convert import convert_account, convert_status
from adapters.mastodon.feeds import (
    LIST_KEY,
    AccountFeeds,
    Cursors,
    Feeds,
    Inbox,
    ListFollows,
    Watches,
    decode_native,
    entry_time,
    hashtag,
    to_post,
)
from adapters.mastodon.handles import LengthRule, check_length, parse_handle
from adapters.mastodon.html import html_to_text
from adapters.mastodon.http import MastodonHttp
from adapters.mastodon.login import Login, log_in
from adapters.mastodon.streaming import open_stream, parse_frame, streaming_base
from bridge.configschema import Key
from bridge.errors import AuthFailed, BridgeError, NotFound, Permanent, RateLimited, Transient
from bridge.intake.paging import Turn
from bridge.intake.schedule import RequestBudget, Schedule
from bridge.model import (
    Author,
    Capabilities,
    Post,
    Posted,
    Profile,
    ProfilePage,
    Ref,
    Source,
    SourceKind,
)
from bridge.protocols import Host

# Mastodon allows 300 requests per 5 minutes per account; intake takes at most 240 of them,
# which leaves the rest for actions from chat, lookups and the list bookkeeping.
INTAKE_REQUESTS = 240
INTAKE_WINDOW = 300.0
PHRASE_REFUSAL = (
    "{server} offers no full-text search, so a phrase cannot be watched there; watch a hashtag "
    "instead (e.g. /watch #{example}), or set [{name}] full_text_search = true if the server has it"
)


def _phrase_example(query: str) -> str:
    word = "".join(ch for ch in query.split()[0] if ch.isalnum()) if query.split() else ""
    return word or "yourbrand"


class MastodonAdapter:
    name: str = "mastodon"
    CONFIG: ClassVar[Mapping[str, Key]] = {
        "instance": Key(
            str, required=True, pattern=r"^https?://[^/\s]+/?$", help="the team account's server, e.g. https://mastodon.social"
        ),
        "access_token": Key(
            str,
            required=True,
            secret=True,
            help="an access token of an application with read, write and follow (Preferences → Development)",
        ),
        "streaming": Key(bool, True, help="listen on the streaming API (the REST poll catches up after every reconnect)"),
        "poll_interval": Key((int, float), 60, min=5, help="seconds between polls of each feed"),
        "follow_mode": Key(
            str,
            "accounts",
            choices=("accounts", "list"),
            help=(
                "accounts: one request per followed account per poll (linear); list: the team account follows "
                "each followed account (visibly) and reads them all from one list, one request per poll"
            ),
        ),
        "visibility": Key(str, "public", choices=("public", "unlisted", "private"), help="visibility of posts made with /post"),
        "full_text_search": Key(
            bool, False, help="true only when the server has full-text search (Elasticsearch/OpenSearch): allows phrase watches"
        ),
        "list_title": Key(str, "microblog-chat-bridge", help="the list the list follow mode keeps"),
        "catch_up": Key(
            int, 10, min=1, help="pages (40 statuses each) read back per feed after an outage; beyond, rooms are told"
        ),
        "late_window": Key(
            int,
            600,
            min=0,
            help=(
                "seconds below each feed's position read again every poll, for statuses other servers deliver late "
                "(a status arriving later than this after it was written is missed)"
            ),
        ),
    }

    def __init__(self, settings: Mapping[str, Any], host: Host) -> None:
        self.settings = {k: settings.get(k, spec.default) for k, spec in self.CONFIG.items()}
        self.host = host
        self.name = str(getattr(host, "name", "") or type(self).name)
        self.log: logging.Logger = getattr(host, "log", None) or logging.getLogger("bridge.adapters.mastodon")
        self.instance = str(self.settings["instance"]).rstrip("/")
        self.streaming = bool(self.settings["streaming"])
        self.poll_interval = float(self.settings["poll_interval"])
        self.follow_mode = str(self.settings["follow_mode"])
        self.visibility = str(self.settings["visibility"])
        self.full_text_search = bool(self.settings["full_text_search"])
        count = getattr(host, "count_request", None)
        self.http = MastodonHttp(self.instance, str(self.settings["access_token"]), count=count)
        self.server = self.http.server
        self.login: Login | None = None
        self.rule = LengthRule()
        self.cursors = Cursors(host)
        self.budget = RequestBudget(INTAKE_REQUESTS, INTAKE_WINDOW)
        self.schedule = Schedule(self.poll_interval)
        self.feeds = Feeds(
            self.http,
            self.cursors,
            self.budget,
            self.name,
            lambda: self.login.domain if self.login else self.server,
            lambda: self.login.account_id if self.login else "",
            int(self.settings["catch_up"]),
            self._web_url,
            float(self.settings["late_window"]),
        )
        self.accounts = AccountFeeds(self.feeds)
        self.lists = ListFollows(self.feeds, host, str(self.settings["list_title"]))
        self.watches = Watches(self.feeds)
        self.inbox = Inbox(self.feeds)
        self._tasks: list[asyncio.Task[Any]] = []
        self._wake = asyncio.Event()
        self._urgent: set[str] = set()
        self._rung: dict[str, float] = {}  # feed key -> when the stream last rang for it
        self._walking: dict[str, float] = {}  # feed key -> when its unfinished walk's first turn began
        self._poll_lock = asyncio.Lock()
        self._down = False
        self.polls = 0
        self.stream_connects = 0
        self.stream_frames = 0
        self._tags: frozenset[str] = frozenset()
        self._direct = False
        self._stream_resubscribe = asyncio.Event()

    # --- lifecycle -----------------------------------------------------------------------------

    async def _log_in(self) -> Login:
        try:
            login = await log_in(self.http)
        except AuthFailed:
            raise
        except Transient as exc:
            raise Transient(f"cannot reach Mastodon at {self.instance}: {exc}") from exc
        self.login, self.rule = login, login.rule
        return login

    async def _ensure_login(self) -> Login:
        return self.login or await self._log_in()

    async def start(self) -> None:
        await self._log_in()
        self._tasks.append(asyncio.create_task(self._watch_sources(), name="mastodon-sources"))
        self._tasks.append(asyncio.create_task(self.host.listen("poll", self._poll_loop), name="mastodon-poll"))
        if self.streaming:
            self._tasks.append(asyncio.create_task(self.host.listen("stream", self._stream_loop), name="mastodon-stream"))
        self.log.info(
            "mastodon started account=@%s follow_mode=%s streaming=%s",
            self.login.acct if self.login else "",
            self.follow_mode,
            self.streaming,
        )

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.http.close()

    async def check(self) -> str:
        login = await self._log_in()
        return "ok: " + login.summary()

    # --- polling -------------------------------------------------------------------------------

    async def _watch_sources(self) -> None:
        while True:
            await self.host.sources_changed()
            self.schedule.due_all()
            self._stream_resubscribe.set()
            self._wake.set()

    def _jobs(self) -> list[tuple[str, Callable[[], Awaitable[Turn]]]]:
        sources = self.host.sources()
        jobs: list[tuple[str, Callable[[], Awaitable[Turn]]]] = []
        follows = {s for s in sources if s.kind is SourceKind.FOLLOW}
        if self.follow_mode == "list":
            jobs.append((LIST_KEY, lambda: self.lists.poll(follows)))
        else:
            for source in sorted(follows, key=lambda s: s.value):
                jobs.append((source.key, lambda source=source: self.accounts.poll(source)))
        for source in sorted((s for s in sources if s.kind is SourceKind.QUERY), key=lambda s: s.value):
            if hashtag(source.value) or self.full_text_search:
                jobs.append((source.key, lambda source=source: self.watches.poll(source)))
        for source in (s for s in sources if s.kind is SourceKind.INBOX):
            jobs.append((source.key, lambda source=source: self.inbox.poll(source)))
        keys = [key for key, _ in jobs]
        self.schedule.forget(keys)
        self.feeds.forget([*keys, *(Inbox.direct_key(s) for s in sources if s.kind is SourceKind.INBOX)])
        return jobs

    async def poll_once(self) -> int:
        """One cycle over every feed (a turn each, due or not); the number of items handed to
        the core. Cycles never overlap."""
        async with self._poll_lock:
            self.schedule.due_all()
            return await self._poll()

    def _tracked(self, key: str, job: Callable[[], Awaitable[Turn]]) -> Callable[[], Awaitable[Turn]]:
        """``job`` that keeps a ring of the stream from being lost in a walk: a walk that takes
        several turns reads back from the top of the feed as it was at its first turn, so a
        status the stream rang for meanwhile is above it; the turns that continue the walk use
        up the ring. When the walk ends, a ring since it began makes the feed due again."""

        async def run() -> Turn:
            began = time.monotonic()
            turn = await job()
            if turn.behind:
                self._walking.setdefault(key, began)
            else:
                since = self._walking.pop(key, None)
                if since is not None and self._rung.get(key, -1.0) >= since:
                    self._urgent.add(key)
            return turn

        return run

    async def _poll(self) -> int:
        await self._ensure_login()
        jobs = [(key, self._tracked(key, job)) for key, job in self._jobs()]
        urgent, self._urgent = self._urgent, set()
        due = set(self.schedule.due(key for key, _ in jobs)) | urgent
        try:
            n = await self.schedule.take_turns(jobs, due, self.log)
        except (RateLimited, AuthFailed):
            self._urgent |= due  # not lost: these feeds are still due
            raise
        except BridgeError:
            self.polls += 1  # the round ran; its only feed failed
            raise
        self.polls += 1
        return n

    def _next_turn_in(self) -> float:
        if self._urgent:
            return 0.05
        delay = self.schedule.next_in(key for key, _ in self._jobs())
        if delay <= 0:
            delay = max(self.budget.wait(), 0.05)
        return delay

    async def _poll_loop(self) -> None:
        delay = self.poll_interval
        while True:
            self._wake.clear()
            try:
                async with self._poll_lock:
                    await self._poll()
                delay = self._next_turn_in()
                await self._healthy()
            except RateLimited as exc:
                delay = max(1.0, exc.retry_after)
                self.log.warning("poll rate limited, next poll in %.0fs", delay)
            except AuthFailed as exc:
                # The token was revoked or lost a scope: the core tells the rooms and admins once;
                # the loop keeps trying at a calm pace, so a fixed token is picked up.
                delay = max(300.0, self.poll_interval)
                if not self._down:
                    self._down = True
                    await self.host.report_health(False, str(exc))
                self.log.warning("poll paused: the token was refused; next attempt in %.0fs", delay)
                self.login = None
                await asyncio.sleep(delay)
                continue
            except BridgeError as exc:
                delay = min(max(delay * 2, self.poll_interval), 300.0)
                self.log.warning("poll failed, next in %.0fs reason=%r", delay, str(exc))
            except Exception:
                delay = min(max(delay * 2, self.poll_interval), 300.0)
                self.log.exception("poll crashed, next in %.0fs", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _healthy(self) -> None:
        if self._down:
            self._down = False
            self.log.info("the Mastodon token works again")
            await self.host.report_health(True)

    def _poke(self, keys: set[str]) -> None:
        if keys:
            now = time.monotonic()
            self._rung.update(dict.fromkeys(keys, now))
            self._urgent |= keys
            self._wake.set()

    # --- streaming -----------------------------------------------------------------------------

    def _watched_tags(self) -> frozenset[str]:
        return frozenset(hashtag(s.value).lower() for s in self.host.sources() if s.kind is SourceKind.QUERY and hashtag(s.value))

    async def _stream_loop(self) -> None:
        failures = 0
        while True:
            try:
                login = await self._ensure_login()
                base = streaming_base(self.instance, login.streaming_url)
                ws = await open_stream(self.http, base, "user")
            except AuthFailed as exc:
                self.log.warning("streaming refused (%s); polling only until the token works", exc)
                await asyncio.sleep(max(300.0, self.poll_interval))
                continue
            except BridgeError as exc:
                failures += 1
                delay = min(60.0, 2.0**failures) * (0.5 + random.random())
                self.log.warning("streaming unavailable, polling meanwhile; retry in %.0fs reason=%r", delay, str(exc))
                await asyncio.sleep(delay)
                continue
            self.stream_connects += 1
            try:
                await self._read_stream(ws)
                failures = 0
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures += 1
                self.log.info("stream dropped reason=%r", type(exc).__name__)
            finally:
                with contextlib.suppress(Exception):
                    await ws.close()
            await asyncio.sleep(min(30.0, 0.5 * 2.0**failures) * (0.5 + random.random()))

    async def _read_stream(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        # (Re)connected: whatever happened while the stream was down is read by REST now.
        self.schedule.due_all()
        self._wake.set()
        self._tags = frozenset()
        self._direct = False
        await self._subscribe(ws)
        while True:
            receive = asyncio.ensure_future(ws.receive())
            resub = asyncio.ensure_future(self._stream_resubscribe.wait())
            try:
                await asyncio.wait({receive, resub}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                resub.cancel()
            if not receive.done():
                receive.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await receive
                self._stream_resubscribe.clear()
                await self._subscribe(ws)
                continue
            msg = receive.result()
            if msg.type is aiohttp.WSMsgType.TEXT:
                self._on_frame(msg.data)
            elif msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.ERROR,
            ):
                self.log.info("stream closed by the server; reconnecting")
                return

    async def _subscribe(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        # The direct stream rings for a direct message the user stream stays silent on (one
        # the notification policy filtered); only while some room has the inbox on.
        direct = any(s.kind is SourceKind.INBOX for s in self.host.sources())
        if direct != self._direct:
            await ws.send_str(json.dumps({"type": "subscribe" if direct else "unsubscribe", "stream": "direct"}))
            self._direct = direct
        wanted = self._watched_tags()
        for tag in sorted(wanted - self._tags):
            await ws.send_str(json.dumps({"type": "subscribe", "stream": "hashtag", "tag": tag}))
        for tag in sorted(self._tags - wanted):
            await ws.send_str(json.dumps({"type": "unsubscribe", "stream": "hashtag", "tag": tag}))
        self._tags = wanted

    def _on_frame(self, data: Any) -> None:
        frame = parse_frame(data)
        if frame is None:
            return
        self.stream_frames += 1
        sources = self.host.sources()
        keys: set[str] = set()
        if frame.event == "notification" and isinstance(frame.payload, Mapping) and frame.payload.get("type") == "mention":
            keys |= {s.key for s in sources if s.kind is SourceKind.INBOX}
        elif frame.event == "conversation":
            keys |= {s.key for s in sources if s.kind is SourceKind.INBOX}
        elif frame.event in ("update", "status.update") and isinstance(frame.payload, Mapping):
            status = frame.payload
            tags = {str(t.get("name", "")).lower() for t in status.get("tags") or () if isinstance(t, Mapping)}
            inner = status.get("reblog") if isinstance(status.get("reblog"), Mapping) else {}
            tags |= {str(t.get("name", "")).lower() for t in inner.get("tags") or () if isinstance(t, Mapping)}
            if frame.stream[:1] == ("hashtag",) and len(frame.stream) > 1:
                tags.add(frame.stream[1].lower())
            account = status.get("account") if isinstance(status.get("account"), Mapping) else {}
            author = str(account.get("id", ""))
            for s in sources:
                if s.kind is SourceKind.QUERY and hashtag(s.value).lower() in tags:
                    keys.add(s.key)
                elif s.kind is SourceKind.FOLLOW and s.value == author:
                    keys.add(LIST_KEY if self.follow_mode == "list" else s.key)
        self._poke(keys)

    # --- lookups -------------------------------------------------------------------------------

    def _web_url(self, source: Source) -> str:
        if source.kind is SourceKind.QUERY:
            tag = hashtag(source.value)
            return f"{self.instance}/tags/{quote(tag)}" if tag else f"{self.instance}/search?q={quote(source.value)}"
        if source.kind is SourceKind.INBOX:
            return f"{self.instance}/notifications"
        return self.instance  # a followed account whose profile address is unknown (Feeds.web_url knows it)

    def owns_handle(self, handle: str) -> bool:
        text = handle.strip()
        if text.lower().startswith("mastodon:"):
            return True
        try:
            parse_handle(text)
        except ValueError:
            return False
        return True

    def check_query(self, query: str) -> str | None:
        """None when ``query`` can be watched here, else the one-line reason (a phrase on a
        server without full-text search). Must not do I/O."""
        if hashtag(query) or self.full_text_search:
            return None
        return PHRASE_REFUSAL.format(server=self.server, example=_phrase_example(query), name=self.name)

    async def _account_json(self, handle: str) -> dict[str, Any]:
        login = await self._ensure_login()
        h = parse_handle(handle, local_domain=login.domain)
        acct = h.username if h.domain == login.domain else h.acct
        try:
            found = await self.http.get("/api/v1/accounts/lookup", {"acct": acct}, scope="read:accounts")
            if isinstance(found, dict) and found.get("id"):
                return found
        except NotFound:
            pass
        # A remote account the server has not seen yet: WebFinger through the server.
        res = await self.http.get(
            "/api/v2/search", {"q": "@" + h.acct, "type": "accounts", "resolve": "true", "limit": 5}, scope="read:search"
        )
        for a in (res.get("accounts") if isinstance(res, dict) else None) or ():
            if isinstance(a, dict) and a.get("id") and _same_acct(str(a.get("acct", "")), h.acct, login.domain):
                return a
        raise NotFound(f"no Mastodon account {h}: check the spelling, and that its server is up")

    async def resolve(self, handle: str) -> Author:
        login = await self._ensure_login()
        return convert_account(await self._account_json(_unprefixed(handle)), login.domain)

    async def recent(self, source: Source, limit: int) -> list[Post]:
        login = await self._ensure_login()
        limit = max(1, min(limit, 40))
        if source.kind is SourceKind.FOLLOW:
            data = await self.http.get(f"/api/v1/accounts/{quote(source.value, safe='')}/statuses", {"limit": limit})
        elif source.kind is SourceKind.QUERY:
            return await self.search_posts(source.value, limit)
        else:
            return []
        return self._posts(data, login.domain, limit)

    def _posts(self, data: Any, domain: str, limit: int) -> list[Post]:
        """Statuses as posts, newest last (in the server's order: by id, not by the
        millisecond ``created_at``)."""
        found: list[tuple[Any, Post]] = []
        for raw in data if isinstance(data, list) else []:
            try:
                found.append((entry_time(raw), to_post(convert_status(raw, domain), self.name)))
            except (ValueError, AttributeError):
                continue
        found.sort(key=lambda pair: pair[0])
        return [p for _, p in found][-limit:]

    async def search_posts(self, query: str, limit: int) -> list[Post]:
        login = await self._ensure_login()
        limit = max(1, min(limit, 40))
        tag = hashtag(query)
        if tag:
            data = await self.http.get(f"/api/v1/timelines/tag/{quote(tag, safe='')}", {"limit": limit})
            return self._posts(data, login.domain, limit)
        if not query.strip():
            raise ValueError("search for at least one word, e.g. #yourbrand")
        if not self.full_text_search:
            raise Permanent(PHRASE_REFUSAL.format(server=self.server, example=_phrase_example(query), name=self.name))
        res = await self.http.get("/api/v2/search", {"q": query, "type": "statuses", "limit": limit}, scope="read:search")
        return self._posts(res.get("statuses") if isinstance(res, dict) else [], login.domain, limit)

    async def _profiles(self, accounts: list[dict[str, Any]], domain: str) -> list[Profile]:
        ids = [str(a["id"]) for a in accounts if a.get("id")]
        following: dict[str, bool] = {}
        if ids:
            with contextlib.suppress(NotFound, Permanent):
                rels = await self.http.get("/api/v1/accounts/relationships", [("id[]", i) for i in ids], scope="read:follows")
                following = {str(r.get("id")): bool(r.get("following")) for r in rels or () if isinstance(r, dict)}
        out = []
        for a in accounts:
            try:
                author = convert_account(a, domain)
            except ValueError:
                continue
            out.append(
                Profile(
                    author=author,
                    bio=html_to_text(str(a.get("note") or ""), local_domain=domain).text[:1000],
                    followers=_count(a.get("followers_count")),
                    following=_count(a.get("following_count")),
                    posts=_count(a.get("statuses_count")),
                    followed_by_team=following.get(author.id),
                )
            )
        return out

    async def find_accounts(self, words: str, limit: int, cursor: str = "") -> ProfilePage:
        login = await self._ensure_login()
        words = " ".join(words.split())
        if not words:
            raise ValueError("say whom to find, e.g. /find alice or /find alice@mastodon.social")
        limit = max(1, min(limit, 40))
        offset = int(cursor) if cursor.isdigit() else 0
        resolve = "@" in words.strip("@")
        res = await self.http.get(
            "/api/v2/search",
            {"q": words, "type": "accounts", "limit": limit, "offset": offset, "resolve": "true" if resolve else "false"},
            scope="read:search",
        )
        accounts = [a for a in (res.get("accounts") if isinstance(res, dict) else None) or () if isinstance(a, dict)][:limit]
        profiles = await self._profiles(accounts, login.domain)
        nxt = str(offset + len(accounts)) if len(accounts) >= limit else ""
        return ProfilePage(tuple(profiles), nxt)

    async def profile(self, handle: str) -> Profile:
        login = await self._ensure_login()
        [p] = await self._profiles([await self._account_json(_unprefixed(handle))], login.domain)
        return p

    def lookup_cost(self, what: str, limit: int) -> str:
        return ""  # Mastodon's reads cost nothing but the request budget

    def check_text(self, text: str) -> str | None:
        return check_length(text, self.rule, server=self.server)

    def capabilities(self) -> Capabilities:
        return Capabilities(text_limit=self.rule.max_characters, text_unit="characters")

    # --- actions -------------------------------------------------------------------------------
    #
    # Every status is created with the action key as Idempotency-Key: the server answers a
    # repeated key with the status the first try made (for an hour; the core retries sooner).
    # Favourite, boost and follow are idempotent on the server: doing one twice changes nothing.

    def action_key(self) -> str:
        return uuid.uuid4().hex

    def _refuse(self, text: str) -> None:
        problem = check_length(text, self.rule, server=self.server)
        if problem:
            raise Permanent(problem)

    async def _create(self, text: str, key: str, visibility: str, in_reply_to: str = "") -> Posted:
        await self._ensure_login()
        self._refuse(text)
        body: dict[str, Any] = {"status": text, "visibility": visibility}
        if in_reply_to:
            body["in_reply_to_id"] = in_reply_to
        res = await self.http.post("/api/v1/statuses", body, idempotency_key=key, scope="write:statuses")
        if not isinstance(res, dict) or not res.get("id"):
            raise Transient(f"{self.server} answered the new status without an id")
        return Posted(Ref(self.name, str(res["id"])), str(res.get("url") or res.get("uri") or ""))

    async def post(self, text: str, key: str) -> Posted:
        return await self._create(text, key, self.visibility)

    async def _status(self, post: Post) -> dict[str, Any]:
        res = await self.http.get(f"/api/v1/statuses/{quote(post.ref.id, safe='')}", scope="read:statuses")
        if not isinstance(res, dict):
            raise NotFound(f"the post by @{post.author.handle} no longer exists on Mastodon")
        return res

    async def reply(self, parent: Post, text: str, key: str) -> Posted:
        """Threads under ``parent`` with its visibility (a reply in a DM stays direct and
        mentions the person, or it would reach nobody)."""
        login = await self._ensure_login()
        native = decode_native(parent.native)
        visibility = native.get("v") or ""
        if visibility not in ("public", "unlisted", "private", "direct"):
            visibility = str((await self._status(parent)).get("visibility") or "public")
        if parent.conversation or parent.reason == "dm":
            visibility = "direct"
        if visibility == "direct":
            author = native.get("a") or parent.author.handle
            if author and author.lower() != login.acct.lower():
                text = _mentioning(author, text)
        return await self._create(text, key, visibility, in_reply_to=parent.ref.id)

    async def like(self, post: Post, key: str) -> Posted:
        await self.http.post(f"/api/v1/statuses/{quote(post.ref.id, safe='')}/favourite", scope="write:favourites")
        return Posted(Ref(self.name, post.ref.id), post.url)

    async def repost(self, post: Post, key: str) -> Posted:
        res = await self.http.post(f"/api/v1/statuses/{quote(post.ref.id, safe='')}/reblog", scope="write:statuses")
        rid = str(res.get("id")) if isinstance(res, dict) and res.get("id") else post.ref.id
        return Posted(Ref(self.name, rid), post.url)

    async def follow(self, author: Author, key: str) -> Posted:
        account_id = author.id if author.id.isalnum() else (await self.resolve(author.handle)).id
        await self.http.post(f"/api/v1/accounts/{quote(account_id, safe='')}/follow", {"reblogs": True}, scope="write:follows")
        self.lists.released(account_id)
        return Posted(Ref(self.name, account_id), author.url)

    async def direct_message(self, handle: str, text: str, key: str) -> Posted:
        author = await self.resolve(handle)
        return await self._create(_mentioning(author.handle, text), key, "direct")


def _mentioning(acct: str, text: str) -> str:
    """``text`` starting with a mention of ``acct`` unless it mentions it already."""
    mention = "@" + acct.lstrip("@")
    if mention.lower() in text.lower():
        return text
    return f"{mention} {text}"


def _same_acct(found: str, wanted: str, local_domain: str) -> bool:
    found = found.lower()
    if "@" not in found:
        found = f"{found}@{local_domain.lower()}"
    return found == wanted.lower()


def _unprefixed(handle: str) -> str:
    h = handle.strip()
    return h[len("mastodon:") :] if h.lower().startswith("mastodon:") else h


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
