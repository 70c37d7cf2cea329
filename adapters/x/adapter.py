"""The X network adapter: followed accounts, recent-search watches and the team account's inbox
(mentions and DM events), read within a monthly budget, and the actions X allows a self-serve
app in 2026.

Tasks while running: one poll loop. Each feed (a followed account's timeline, a search, the
mentions timeline, the DM events) is walked by the core's ``Pager`` with ``since_id`` (a poll
that finds nothing new returns no data and costs nothing, https://docs.x.com/x-api/getting-started/pricing),
on the interval the cost planner (``cost.plan_polls``) gives it: quiet accounts less often, every
poll's page bounded, all polls under the endpoint's rate limit, and the remaining budget spread
over the rest of the month. Each feed commits two cursors with its posts: the pager's position
and ``<feed>#since``, the newest post id handed over (the next walk's ``since_id``).

When the ledger refuses a read (the month's cap), nothing more is requested until the month
rolls over or the cap is raised; the rooms and admins are told once through
``host.report_health`` with the figure, and ``/status`` shows spend, forecast and cap (state
key ``status``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from adapters.x.convert import (
    MEDIA_FIELDS,
    TWEET_FIELDS,
    USER_FIELDS,
    Includes,
    author_of,
    entry_time,
    is_summoned,
    native_id,
    post_from,
    post_from_dm,
    post_url,
)
from adapters.x.cost import (
    DEFAULT_RATE,
    Account,
    BudgetExceeded,
    Ledger,
    Plan,
    Prices,
    days_left,
    plan_polls,
    usd,
    worst_case,
)
from adapters.x.handles import USERNAME, BadHandle, looks_like_x, parse_handle
from adapters.x.http import REPLY_RULE, XApi
from adapters.x.oauth1 import Credentials
from adapters.x.text import MAX_WEIGHTED, check_length
from bridge.configschema import Key
from bridge.errors import AuthFailed, BridgeError, NotFound, Permanent, RateLimited, Transient
from bridge.intake.paging import Entry, Page, Pager, Turn
from bridge.model import (
    Action,
    Author,
    Batch,
    Capabilities,
    Item,
    Post,
    Posted,
    Profile,
    ProfilePage,
    Ref,
    Source,
    SourceKind,
)
from bridge.protocols import Host

log = logging.getLogger("bridge.adapters.x")

# X's rules of 2026 (changelog 2026-04-16, https://docs.x.com/changelog; replies: X's
# announcement of 2026-02-23, see adapters/x/README.md).
ENTERPRISE_ONLY = "X allows likes, follows and quote posts only to Enterprise apps since April 2026"
NO_USER_SEARCH = "searching X accounts by words is not in the pay-per-use API this bridge uses; look one up with /who x:handle"
SEARCH_NOTE = "X's recent search covers the last 7 days and, since May 2026, returns no reposts"

EXPANSIONS = "attachments.media_keys,referenced_tweets.id,referenced_tweets.id.author_id"
SEARCH_EXPANSIONS = "author_id," + EXPANSIONS
SEARCH_PAGE = 10  # recent search: 10..100 a page
INBOX_PAGE = 5
DM_PAGE = 5
# Requests per 15 minutes (https://docs.x.com/x-api/fundamentals/rate-limits): recent search 450
# per app, mentions 300 per user, DM events 15 per user; polls keep under 80% of what X reports.
WINDOW = 900.0
SEARCH_LIMIT = 450
MENTIONS_LIMIT = 300
DM_LIMIT = 15  # DM events: 15 requests per 15 min per user
RETRY_AFTER_FAILURE = 60.0
OBSERVE_DAYS = 7.0  # how far back an account's posting rate is measured


@dataclass
class Feed:
    key: str
    source: Source | None  # None: the inbox feeds (mentions, DMs), which serve every INBOX source
    pager: Pager[Post]
    next_due: float = 0.0


class XAdapter:
    """X API v2 through one request path (``XApi``) metered by the cost ``Ledger``."""

    name: str = "x"
    CONFIG: ClassVar[Mapping[str, Key]] = {
        "api_url": Key(str, "https://api.x.com", help="root of X API v2"),
        "bearer_token": Key(
            str, required=True, secret=True, help="the app's Bearer Token (X Developer Console, Keys and tokens)"
        ),
        "consumer_key": Key(str, "", secret=True, help="API Key (OAuth 1.0a), for posts, replies and DMs"),
        "consumer_secret": Key(str, "", secret=True, help="API Key Secret"),
        "access_token": Key(str, "", secret=True, help="the team account's Access Token"),
        "access_token_secret": Key(str, "", secret=True, help="the team account's Access Token Secret"),
        "monthly_budget_usd": Key((int, float), 25, min=0, help="hard monthly cap in USD: nothing is read or written past it"),
        "poll_interval": Key((int, float), 300, min=1, help="seconds: the fastest a followed account is polled"),
        "quiet_poll_interval": Key(
            (int, float), 3600, min=1, help="seconds: the slowest a quiet account is polled (the planner's upper bound)"
        ),
        "enterprise": Key(bool, False, help="true only for an Enterprise X app (likes, follows, quote posts, any reply)"),
        "prices": Key(dict, {}, help="[x.prices] overrides of X's published prices, USD"),
    }

    def __init__(self, settings: Mapping[str, Any], host: Host, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = {k: settings.get(k, spec.default) for k, spec in self.CONFIG.items()}
        self.host = host
        self.name = getattr(host, "name", "") or "x"
        self.enterprise = bool(self.settings["enterprise"])
        self.poll_interval = float(self.settings["poll_interval"])
        self._clock = clock
        prices = Prices.from_config(self.settings["prices"] or {})
        self.ledger = Ledger(prices, float(self.settings["monthly_budget_usd"]), host, key="cost", clock=clock)
        credentials = None
        keys = [self.settings[k] for k in ("consumer_key", "consumer_secret", "access_token", "access_token_secret")]
        if all(keys):
            credentials = Credentials(*keys)
        self.api = XApi(
            api_url=self.settings["api_url"],
            ledger=self.ledger,
            bearer_token=self.settings["bearer_token"],
            credentials=credentials,
            clock=clock,
        )
        self.me: dict[str, Any] = {}
        self.users: dict[str, dict[str, Any]] = {}  # id → {id, username, name}: no User read for a known author
        self.rates: dict[str, list[float]] = {}  # account id → [first observed, posts seen]
        self.plan = Plan()
        self.feeds: dict[str, Feed] = {}
        self._loaded = False
        self._task: asyncio.Task[None] | None = None
        self._stopped_by_budget = ""
        self._status = ""
        self._fetched_top: dict[str, str] = {}  # feed → newest id of its newest page this walk

    # --- set-up ------------------------------------------------------------------------------

    async def _ready(self) -> None:
        """Load the month's spend and what is known of the team account (once)."""
        if self._loaded:
            return
        await self.ledger.load()
        for key, target in (("users", self.users), ("rates", self.rates), ("me", self.me)):
            raw = await self.host.load_state(key)
            with contextlib.suppress(ValueError, TypeError):
                value = json.loads(raw) if raw else {}
                if isinstance(value, dict):
                    target.update(value)
        self._loaded = True

    async def _whoami(self) -> dict[str, Any]:
        """The team account (GET /2/users/me, user context), remembered so that a restart pays
        no User read for it."""
        await self._ready()
        if not self.me.get("id"):
            res = await self.api.get("/2/users/me", params={"user.fields": USER_FIELDS}, user=True)
            data = res.get("data") or {}
            if not data.get("id"):
                raise Transient("X did not say who the team account is (GET /2/users/me)")
            self.me = {"id": str(data["id"]), "username": str(data.get("username", "")), "name": str(data.get("name", ""))}
            await self.host.save_state("me", json.dumps(self.me))
        self.api.account_id = self.me["id"]
        return self.me

    async def check(self) -> str:
        me = await self._whoami()
        plan = self._make_plan(self._current_sources())
        self.ledger.planned_daily = plan.expected
        return f"ok: @{me['username']}; {self.ledger.status().line()}; {plan.line()}"

    async def start(self) -> None:
        await self._whoami()
        self._task = asyncio.create_task(self.host.listen("poll", self._run), name=f"{self.name}-poll")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            await self.api.close()

    # --- handles and look-ups ---------------------------------------------------------------

    def owns_handle(self, handle: str) -> bool:
        # The core asks with the ``x:`` prefix already taken off: a bare username is ours too.
        return looks_like_x(handle) or bool(USERNAME.fullmatch(handle.strip()))

    async def resolve(self, handle: str) -> Author:
        return (await self.profile(handle)).author

    async def profile(self, handle: str) -> Profile:
        try:
            h = parse_handle(handle)
        except BadHandle as e:
            raise ValueError(str(e)) from None
        await self._ready()
        try:
            res = await self.api.get(
                "/2/users/by/username/:username",
                args={"username": h.username},
                params={"user.fields": "username,name,description,public_metrics"},
            )
        except NotFound:
            raise NotFound(f"there is no X account @{h.username}") from None
        data = res.get("data") or {}
        if not data.get("id"):
            raise NotFound(f"there is no X account @{h.username}")
        await self._remember_users([data])
        metrics = data.get("public_metrics") if isinstance(data.get("public_metrics"), dict) else {}
        return Profile(
            author=author_of(data),
            bio=str(data.get("description") or ""),
            followers=_count(metrics.get("followers_count")),
            following=_count(metrics.get("following_count")),
            posts=_count(metrics.get("tweet_count")),
        )

    async def find_accounts(self, words: str, limit: int, cursor: str = "") -> ProfilePage:
        raise Permanent(NO_USER_SEARCH)

    async def recent(self, source: Source, limit: int) -> list[Post]:
        limit = max(1, min(limit, 100))
        await self._ready()
        if source.kind is SourceKind.FOLLOW:
            res = await self.api.get(
                "/2/users/:id/tweets", args={"id": source.value}, params=self._read_params(max(5, limit), known=source.value)
            )
        elif source.kind is SourceKind.QUERY:
            return await self.search_posts(source.value, limit)
        else:
            return []
        return await self._posts(res, limit)

    async def search_posts(self, query: str, limit: int) -> list[Post]:
        query = query.strip()
        if not query or len(query) > 512:
            raise ValueError("an X search query is 1 to 512 characters")
        limit = max(1, min(limit, 100))
        await self._ready()
        params = {"query": query, "max_results": max(SEARCH_PAGE, limit), **self._fields(SEARCH_EXPANSIONS)}
        res = await self.api.get("/2/tweets/search/recent", params=params)
        return await self._posts(res, limit)

    def lookup_cost(self, what: str, limit: int) -> str:
        prices = self.ledger.prices
        if what in ("profile", "who", "find"):
            worst = prices["user_read"] * max(1, limit if what == "find" else 1)
        else:
            worst = worst_case(prices, "post_read", max(SEARCH_PAGE, limit), SEARCH_EXPANSIONS)
        return f"up to {usd(worst)} of the {usd(self.ledger.cap)} monthly X budget ({usd(self.ledger.spent)} spent)"

    async def _posts(self, res: Mapping[str, Any], limit: int) -> list[Post]:
        inc = Includes(res, self.users)
        await self._remember_users(list(inc.users.values()))
        posts = [
            p for t in res.get("data") or [] if isinstance(t, dict) and (p := post_from(self.name, t, inc, self.me.get("id", "")))
        ]
        posts.sort(key=lambda p: int(p.ref.id))
        return posts[-limit:]

    async def _remember_users(self, users: list[Mapping[str, Any]]) -> None:
        changed = False
        for u in users:
            uid = str(u.get("id", ""))
            if uid and u.get("username") and self.users.get(uid, {}).get("username") != u["username"]:
                self.users[uid] = {"id": uid, "username": str(u["username"]), "name": str(u.get("name") or "")}
                changed = True
        if changed:
            await self.host.save_state("users", json.dumps(self.users))

    # --- text, capabilities -----------------------------------------------------------------

    def check_text(self, text: str) -> str | None:
        problem = check_length(text)
        return problem.message if problem else None

    def capabilities(self) -> Capabilities:
        refused: list[tuple[Action, str]] = [(Action.FIND, NO_USER_SEARCH)]
        if not self.enterprise:
            refused += [(Action.LIKE, ENTERPRISE_ONLY), (Action.FOLLOW, ENTERPRISE_ONLY)]
        return Capabilities(
            refused=tuple(refused),
            text_limit=MAX_WEIGHTED,
            text_unit="weighted characters",
            per_post=self._per_post,
            search_note=SEARCH_NOTE,
        )

    def _per_post(self, action: Action, post: Post) -> str:
        if action is Action.REPLY and not self.enterprise and not post.conversation and not is_summoned(post):
            return f"{REPLY_RULE} (@{post.author.handle} did not)"
        return ""

    # --- actions ----------------------------------------------------------------------------
    #
    # X takes no idempotency key. Each action writes ``action:<key>`` before the request and
    # the created id after it; a retry whose first try's outcome is unknown looks through the
    # team account's own newest posts (owned reads, $0.001 each) for the same text before
    # sending again.

    def action_key(self) -> str:
        return uuid.uuid4().hex

    def _refuse_text(self, text: str) -> None:
        problem = self.check_text(text)
        if problem:
            raise ValueError(problem)

    async def _once(self, key: str, text: str, create: Callable[[], Awaitable[Posted]], *, look: bool) -> Posted:
        state_key = f"action:{key}"
        raw = await self.host.load_state(state_key)
        if raw:
            done = json.loads(raw)
            if done.get("id"):
                return Posted(Ref(self.name, done["id"]), done.get("url", ""))
            if look:  # a first try whose answer was lost: did it post?
                found = await self._own_post_with(text)
                if found is not None:
                    await self.host.save_state(state_key, json.dumps({"id": found.ref.id, "url": found.url}))
                    return found
        await self.host.save_state(state_key, json.dumps({"id": ""}))
        posted = await create()
        await self.host.save_state(state_key, json.dumps({"id": posted.ref.id, "url": posted.url}))
        return posted

    async def _own_post_with(self, text: str) -> Posted | None:
        me = await self._whoami()
        res = await self.api.get("/2/users/:id/tweets", args={"id": me["id"]}, params={"max_results": 5}, user=True)
        for t in res.get("data") or []:
            if isinstance(t, dict) and _same_text(str(t.get("text", "")), text):
                return Posted(Ref(self.name, str(t["id"])), post_url(me["username"], str(t["id"])))
        return None

    async def _tweet(self, body: dict[str, Any]) -> Posted:
        me = await self._whoami()
        res = await self.api.post("/2/tweets", body)
        tid = str((res.get("data") or {}).get("id", ""))
        if not tid:
            raise Transient("X did not say which post it created")
        return Posted(Ref(self.name, tid), post_url(me["username"], tid))

    async def post(self, text: str, key: str) -> Posted:
        self._refuse_text(text)
        return await self._once(key, text, lambda: self._tweet({"text": text}), look=True)

    async def reply(self, parent: Post, text: str, key: str) -> Posted:
        self._refuse_text(text)
        if parent.conversation:
            return await self._once(key, text, lambda: self._dm_to(parent.author.id, text), look=False)
        why = self._per_post(Action.REPLY, parent)
        if why:
            raise Permanent(why)  # refused before any request: X would answer 403
        body = {"text": text, "reply": {"in_reply_to_tweet_id": native_id(parent)}}
        return await self._once(key, text, lambda: self._tweet(body), look=True)

    async def like(self, post: Post, key: str) -> Posted:
        if not self.enterprise:
            raise Permanent(ENTERPRISE_ONLY)
        me = await self._whoami()
        await self.api.post("/2/users/:id/likes", {"tweet_id": native_id(post)}, args={"id": me["id"]})
        return Posted(post.ref, post.url)

    async def repost(self, post: Post, key: str) -> Posted:
        me = await self._whoami()
        await self.api.post("/2/users/:id/retweets", {"tweet_id": native_id(post)}, args={"id": me["id"]})
        return Posted(post.ref, post.url)  # reposting twice is answered as done: no duplicate

    async def follow(self, author: Author, key: str) -> Posted:
        if not self.enterprise:
            raise Permanent(ENTERPRISE_ONLY)
        me = await self._whoami()
        await self.api.post("/2/users/:id/following", {"target_user_id": author.id}, args={"id": me["id"]})
        return Posted(Ref(self.name, author.id), author.url)

    async def direct_message(self, handle: str, text: str, key: str) -> Posted:
        self._refuse_text(text)
        target = await self.resolve(handle)
        return await self._once(key, text, lambda: self._dm_to(target.id, text), look=False)

    async def _dm_to(self, user_id: str, text: str) -> Posted:
        await self._whoami()
        res = await self.api.post(
            "/2/dm_conversations/with/:participant_id/messages", {"text": text}, args={"participant_id": user_id}
        )
        data = res.get("data") or {}
        return Posted(Ref(self.name, f"dm:{data.get('dm_event_id', '')}"))

    # --- intake -----------------------------------------------------------------------------

    def _current_sources(self) -> list[Source]:
        try:
            return [s for s in self.host.sources() if s.network == self.name]
        except Exception:  # a command-line host may not know the subscriptions
            return []

    def _fields(self, expansions: str) -> dict[str, str]:
        return {"tweet.fields": TWEET_FIELDS, "user.fields": USER_FIELDS, "media.fields": MEDIA_FIELDS, "expansions": expansions}

    def _read_params(self, max_results: int, *, known: str = "") -> dict[str, Any]:
        # The followed account is known (resolved when it was followed): no User read for it.
        expansions = EXPANSIONS if known in self.users else "author_id," + EXPANSIONS
        return {"max_results": max_results, **self._fields(expansions)}

    def _rate(self, uid: str) -> float:
        first, seen = self.rates.get(uid, [0.0, 0.0])
        if not first:
            return DEFAULT_RATE
        days = max(1.0, (self._clock() - first) / 86400)
        return max(0.05, seen / days)

    def _make_plan(self, sources: list[Source]) -> Plan:
        accounts = [Account(s.value, self._rate(s.value)) for s in sources if s.kind is SourceKind.FOLLOW]
        prices = self.ledger.prices
        plan = plan_polls(
            accounts,
            remaining=max(0, self.ledger.cap - self.ledger.spent),
            days=max(days_left(self._clock()), 1 / 24),
            unit=prices["post_read"],
            worst_unit=worst_case(prices, "post_read", 1, EXPANSIONS),
            base_interval=self.poll_interval,
            max_interval=max(float(self.settings["quiet_poll_interval"]), self.poll_interval),
        )
        # Searches and the inbox: one poll per interval each, priced at the default rate.
        others = sum(1 for s in sources if s.kind is SourceKind.QUERY)
        extra = round(others * DEFAULT_RATE * prices["post_read"])
        if any(s.kind is SourceKind.INBOX for s in sources):
            extra += round(DEFAULT_RATE * (prices["owned_read"] + prices["dm_event_read"]))
        return Plan(
            plan.polls, plan.expected + extra, plan.worst + extra, plan.requests_per_window, plan.budget_per_day, plan.limited
        )

    def _feed(self, key: str, source: Source | None, fetch: Callable[[str | None], Awaitable[Page[Post]]]) -> Feed:
        feed = self.feeds.get(key)
        if feed is None:
            feed = self.feeds[key] = Feed(key, source, Pager(fetch, pages_per_turn=3, max_pages=5, where=self._where))
        return feed

    def _where(self, source: Source) -> str:
        if source.kind is SourceKind.FOLLOW:
            user = self.users.get(source.value)
            return f"https://x.com/{user['username']}" if user else ""
        if source.kind is SourceKind.QUERY:
            return f"https://x.com/search?q={_q(source.value)}&f=live"
        return ""

    def _wanted(self, sources: list[Source]) -> dict[str, tuple[Source | None, Callable[[str | None], Awaitable[Page[Post]]]]]:
        out: dict[str, tuple[Source | None, Callable[[str | None], Awaitable[Page[Post]]]]] = {}
        for s in sources:
            if s.kind is SourceKind.FOLLOW and s.value.isdigit():
                out[f"follow:{s.value}"] = (s, self._timeline_fetch(s))
            elif s.kind is SourceKind.QUERY:
                out[f"query:{s.value}"] = (s, self._search_fetch(s))
            elif s.kind is SourceKind.INBOX and "mentions" not in out:
                out["mentions"] = (None, self._mentions_fetch())
                out["dms"] = (None, self._dms_fetch())
        return out

    async def _since(self, key: str) -> str | None:
        return await self.host.load_cursor(f"{key}#since")

    def _timeline_fetch(self, s: Source) -> Callable[[str | None], Awaitable[Page[Post]]]:
        key = f"follow:{s.value}"

        async def fetch(cursor: str | None) -> Page[Post]:
            poll = self.plan.polls.get(s.value)
            params = self._read_params(poll.max_results if poll else 5, known=s.value)
            return await self._tweets_page(key, s, "/2/users/:id/tweets", {"id": s.value}, params, cursor, "pagination_token", "")

        return fetch

    def _search_fetch(self, s: Source) -> Callable[[str | None], Awaitable[Page[Post]]]:
        key = f"query:{s.value}"

        async def fetch(cursor: str | None) -> Page[Post]:
            params = {"query": s.value, "max_results": SEARCH_PAGE, **self._fields(SEARCH_EXPANSIONS)}
            return await self._tweets_page(key, s, "/2/tweets/search/recent", {}, params, cursor, "next_token", "")

        return fetch

    def _mentions_fetch(self) -> Callable[[str | None], Awaitable[Page[Post]]]:
        async def fetch(cursor: str | None) -> Page[Post]:
            me = await self._whoami()
            params = {"max_results": INBOX_PAGE, **self._fields(SEARCH_EXPANSIONS)}
            return await self._tweets_page(
                "mentions",
                None,
                "/2/users/:id/mentions",
                {"id": me["id"]},
                params,
                cursor,
                "pagination_token",
                "mention",
                user=True,
            )

        return fetch

    async def _tweets_page(
        self,
        key: str,
        source: Source | None,
        route: str,
        args: dict[str, str],
        params: dict[str, Any],
        cursor: str | None,
        token_name: str,
        reason: str,
        *,
        user: bool = False,
    ) -> Page[Post]:
        since = await self._since(key)
        if since:
            params["since_id"] = since
        if cursor:
            params[token_name] = cursor
        res = await self.api.get(route, args=args, params=params, user=user)
        if cursor is None:
            ids = [int(t["id"]) for t in res.get("data") or [] if isinstance(t, dict) and str(t.get("id", "")).isdigit()]
            if ids:
                self._fetched_top[key] = str(max(ids))
        inc = Includes(res, self.users)
        await self._remember_users([u for u in inc.users.values() if str(u.get("id")) not in self.users])
        entries = []
        me = self.me.get("id", "")
        for t in res.get("data") or []:
            if not isinstance(t, dict):
                continue
            post = post_from(self.name, t, inc, me, reason)
            if post is None or (reason and post.author.id == me):
                continue
            entries.append(Entry(entry_time(post.ref.id, post.created_at), post, source))
        nxt = (res.get("meta") or {}).get("next_token")
        times = [e.at for e in entries]
        return Page(entries, str(nxt) if nxt else None, min(times) if times else None, complete=True)

    def _dms_fetch(self) -> Callable[[str | None], Awaitable[Page[Post]]]:
        async def fetch(cursor: str | None) -> Page[Post]:
            me = await self._whoami()
            params: dict[str, Any] = {
                "max_results": DM_PAGE,
                "event_types": "MessageCreate",
                "dm_event.fields": "id,text,event_type,created_at,sender_id,dm_conversation_id,entities",
            }
            if cursor:
                params["pagination_token"] = cursor
            res = await self.api.get("/2/dm_events", params=params, user=True)
            entries = []
            for ev in res.get("data") or []:
                if not isinstance(ev, dict) or ev.get("event_type", "MessageCreate") != "MessageCreate":
                    continue
                sender = str(ev.get("sender_id") or "")
                at = _time(ev)
                if at is None:
                    continue
                at = entry_time(str(ev.get("id", "")), at)
                if sender == me["id"] or not sender:
                    entries.append(Entry(at))  # our own message: moves the watermark only
                    continue
                author = await self._user(sender)
                post = post_from_dm(self.name, ev, author)
                if post is not None:
                    entries.append(Entry(at, post))
            nxt = (res.get("meta") or {}).get("next_token")
            times = [e.at for e in entries]
            return Page(entries, str(nxt) if nxt else None, min(times) if times else None, complete=True)

        return fetch

    async def _user(self, uid: str) -> Author:
        known = self.users.get(uid)
        if known:
            return author_of(known)
        res = await self.api.get("/2/users/:id", args={"id": uid}, params={"user.fields": USER_FIELDS})
        data = res.get("data") or {}
        await self._remember_users([data])
        return author_of(data) if data.get("id") else Author(uid, uid)

    async def _turn(self, feed: Feed, inbox: list[Source]) -> Turn:
        sources = [feed.source] if feed.source else inbox
        saved = await self.host.load_cursor(feed.key)
        since_before = await self._since(feed.key)

        async def commit(posts: list[Post], cursor: str, gaps: tuple[Any, ...]) -> None:
            cursors = {feed.key: cursor}
            if '"walk"' not in cursor and feed.key != "dms":
                top = _top_id(posts, since_before, self._fetched_top.pop(feed.key, None))
                if top:
                    cursors[f"{feed.key}#since"] = top
            items = tuple(Item(s, p) for p in posts for s in sources)
            await self.host.ingest(Batch(items=items, cursors=cursors, gaps=gaps))
            if feed.source is not None and feed.source.kind is SourceKind.FOLLOW and posts:
                first, seen = self.rates.get(feed.source.value, [self._clock(), 0.0])
                self.rates[feed.source.value] = [first, seen + len(posts)]

        return await feed.pager.turn(saved, sources, commit)

    async def _run(self) -> None:
        while True:
            try:
                wait = await self._cycle()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("X poll cycle failed")
                wait = RETRY_AFTER_FAILURE
            changed = asyncio.ensure_future(self.host.sources_changed())
            try:
                await asyncio.wait_for(asyncio.shield(changed), timeout=max(0.05, wait))
                for f in self.feeds.values():
                    f.next_due = 0.0
            except TimeoutError:
                changed.cancel()

    async def _cycle(self) -> float:
        """Poll every due feed once; return the seconds until the next one is due."""
        sources = self._current_sources()
        self.plan = self._make_plan(sources)
        self.ledger.planned_daily = self.plan.expected
        wanted = self._wanted(sources)
        for key in [k for k in self.feeds if k not in wanted]:
            del self.feeds[key]
        inbox = [s for s in sources if s.kind is SourceKind.INBOX]
        now = self._clock()
        for key, (source, fetch) in wanted.items():
            feed = self._feed(key, source, fetch)
            if feed.next_due > now:
                continue
            try:
                turn = await self._turn(feed, inbox)
                # A walk still under way (a burst longer than the turn's pages) goes on at once.
                feed.next_due = self._clock() + (0.0 if turn.behind else self._interval(feed))
                await self._budget_ok()
            except BudgetExceeded as e:
                await self._budget_reached(e)
                for f in self.feeds.values():
                    f.next_due = max(f.next_due, self._clock() + self.poll_interval)
                break
            except RateLimited as e:
                feed.next_due = self._clock() + max(e.retry_after, 1.0)
            except AuthFailed as e:
                await self.host.report_health(False, str(e))
                feed.next_due = self._clock() + RETRY_AFTER_FAILURE
            except (NotFound, Permanent) as e:
                log.warning("X feed failed feed=%s reason=%s", key, e)
                feed.next_due = self._clock() + float(self.settings["quiet_poll_interval"])
            except (Transient, BridgeError) as e:
                log.info("X feed will be retried feed=%s reason=%s", key, e)
                feed.next_due = self._clock() + RETRY_AFTER_FAILURE
        await self._save_status()
        await self.host.save_state("rates", json.dumps(self.rates))
        dues = [f.next_due for f in self.feeds.values()]
        return max(0.0, min(dues) - self._clock()) if dues else self.poll_interval

    def _interval(self, feed: Feed) -> float:
        if feed.source is not None and feed.source.kind is SourceKind.FOLLOW:
            poll = self.plan.polls.get(feed.source.value)
            if poll is not None:
                return min(poll.interval, 31 * 86400.0)
            return self.poll_interval
        if feed.source is not None:
            n = sum(1 for f in self.feeds.values() if f.source is not None and f.source.kind is SourceKind.QUERY)
            return max(self.poll_interval, self._spacing("/2/tweets/search/recent", False, SEARCH_LIMIT, n))
        route, limit = ("/2/dm_events", DM_LIMIT) if feed.key == "dms" else ("/2/users/:id/mentions", MENTIONS_LIMIT)
        return max(self.poll_interval, self._spacing(route, True, limit, 1))

    def _spacing(self, route: str, user: bool, default_limit: int, feeds: int) -> float:
        """Seconds between polls of one of ``feeds`` feeds on ``route`` so that all of them stay
        under 80% of the endpoint's limit (as X last reported it in ``x-rate-limit-limit``)."""
        limit = self.api.bucket("GET", route, user).limit or default_limit
        return WINDOW * max(1, feeds) / max(1.0, limit * 0.8)

    async def _budget_reached(self, e: BudgetExceeded) -> None:
        if self._stopped_by_budget:
            return
        self._stopped_by_budget = str(e)
        log.warning("X budget reached: relays stop reason=%s", e)
        await self.host.report_health(False, f"{e} Posts from X stop until then.")

    async def _budget_ok(self) -> None:
        if self._stopped_by_budget:
            self._stopped_by_budget = ""
            await self.host.report_health(True)

    async def _save_status(self) -> None:
        line = self.ledger.status().line()
        if self._stopped_by_budget:
            line += "; cap reached: X reads stopped"
        if line != self._status:
            self._status = line
            await self.host.save_state("status", line)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _q(query: str) -> str:
    from urllib.parse import quote

    return quote(query, safe="")


def _time(event: Mapping[str, Any]) -> datetime | None:
    from bridge.intake.paging import parse_time

    return parse_time(event.get("created_at"))


def _top_id(posts: list[Post], before: str | None, fetched: str | None) -> str | None:
    ids = [int(p.ref.id) for p in posts if p.ref.id.isdigit()]
    for v in (before, fetched):
        if v and v.isdigit():
            ids.append(int(v))
    return str(max(ids)) if ids else None


def _same_text(sent: str, wanted: str) -> bool:
    # X replaces links by t.co and may normalise spaces: compare the words outside links.
    def words(s: str) -> list[str]:
        return [w for w in s.split() if not w.startswith(("http://", "https://"))]

    return words(sent) == words(wanted)
