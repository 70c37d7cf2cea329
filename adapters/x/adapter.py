"""The X network adapter: followed accounts, recent-search watches and the team account's inbox
(mentions and DM events), read within a monthly budget, and the actions X allows a self-serve
app in 2026.

Tasks while running: one poll loop, and with ``[x] intake = "stream"`` the filtered-stream
listener (see "filtered stream" below and ``adapters/x/stream.py``). Each feed (a followed account's timeline, a search, the
mentions timeline, the DM events) is walked by the core's ``Pager`` with ``since_id`` (a poll
that finds nothing new returns no data and costs nothing, https://docs.x.com/x-api/getting-started/pricing),
on the interval the cost planner (``cost.plan_polls``) gives it: quiet accounts less often, every
poll's page bounded, all polls under the endpoint's rate limit, and the remaining budget spread
over the rest of the month. Each feed commits two cursors with its posts: the pager's position
and ``<feed>#since``, the newest post id handed over (the next walk's ``since_id``).

With the stream, followed accounts and watches whose rules X holds are not polled once a
REST walk of them has ended while the connection was up; the stream's posts then move their
``#since``. After each reconnect every carried feed is walked once more (the catch-up), so a
post made while the connection was down is read over REST; while it is down they are polled.

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
from datetime import UTC, datetime
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
    MICRO,
    Account,
    BudgetExceeded,
    Ledger,
    Plan,
    Prices,
    Reservation,
    days_left,
    plan_polls,
    usd,
    worst_case,
)
from adapters.x.handles import USERNAME, BadHandle, looks_like_x, parse_handle
from adapters.x.http import REPLY_RULE, StreamDropped, XApi, billable
from adapters.x.oauth1 import Credentials
from adapters.x.stream import FOLLOW_TAG, MAX_RULE_LENGTH, MAX_RULES, Rule, Rules, build_rules, query_tag, reconnect_delay
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
STREAM = "/2/tweets/search/stream"
STREAM_RULES = "/2/tweets/search/stream/rules"
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
        "intake": Key(
            str,
            "poll",
            choices=("poll", "stream"),
            help='"poll": user timelines and recent search; "stream": the filtered stream for followed accounts and watches (pay-per-use: one connection, 1,000 rules), polling what does not fit',
        ),
        "stream_rules": Key(int, MAX_RULES, min=1, help="the plan's filtered-stream rule count (pay-per-use: 1,000)"),
        "stream_rule_length": Key(int, MAX_RULE_LENGTH, min=64, help="the plan's rule length in characters (pay-per-use: 1,024)"),
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
        self.ledger = Ledger(
            prices, float(self.settings["monthly_budget_usd"]), host, key="cost", clock=clock, on_change=self._report_spend
        )
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
            count=getattr(host, "count_request", None),
        )
        self.me: dict[str, Any] = {}
        self.users: dict[str, dict[str, Any]] = {}  # id → {id, username, name}: no User read for a known author
        self.rates: dict[str, list[float]] = {}  # account id → [first observed, posts seen]
        self.plan = Plan()
        self.feeds: dict[str, Feed] = {}
        self._loaded = False
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()  # the core's sources changed: the poll loop looks again
        self._stopped_by_budget = ""
        self._status = ""
        self._fetched_top: dict[str, str] = {}  # feed → newest id of its newest page this walk
        # Filtered stream ([x] intake = "stream"). A feed the stream carries is not polled once
        # a REST walk of it has ended while the current connection was up ("contiguous"): from
        # then on the stream delivers all of it and moves its ``#since``. After a drop the
        # stream reconnects, every feed it carries is walked once more from ``#since`` (the
        # catch-up), and polling serves the feeds meanwhile.
        self.intake = str(self.settings["intake"])
        self._rules = Rules((), frozenset(), {})  # what the stream carries now
        self._synced: dict[Rule, str] | None = None  # the rules X holds → their ids (None: ask X)
        self._asked: set[Rule] = set()  # the rules last wanted
        self._refused: set[Rule] = set()  # of those, the ones X refused (their feeds are polled)
        self._stream_up = False
        self._stream_epoch = 0
        self._contiguous: set[str] = set()
        self._stream_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # the poll loop has feeds due at once (the stream came up or went down)
        self._stream_wanted = asyncio.Event()

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
            data = _one(res)
            if not data.get("id"):
                raise Transient("X did not say who the team account is (GET /2/users/me)")
            self.me = {"id": str(data["id"]), "username": str(data.get("username", "")), "name": str(data.get("name", ""))}
            await self.host.save_state("me", json.dumps(self.me))
        self.api.account_id = self.me["id"]
        return self.me

    async def check(self) -> str:
        me = await self._whoami()
        sources = self._current_sources()
        plan = self._make_plan(sources)
        self.ledger.planned_daily = plan.expected
        intake = ""
        if self.intake == "stream":
            rules = self._wanted_rules(sources)
            polled = sum(1 for s in sources if s.kind is not SourceKind.INBOX) - len(rules.covered)
            n = len(rules.rules)
            intake = f"; filtered stream: {len(rules.covered)} feeds in {n} rule{'s' * (n != 1)}, {polled} polled"
        return f"ok: @{me['username']}; {self.ledger.status().line()}; {plan.line()}{intake}"

    async def start(self) -> None:
        await self._whoami()
        # The poller and the filtered stream are one listener: the poll loop serves the feeds the
        # stream carries until it is up, so they must run in the same process (several workers).
        self._task = asyncio.create_task(self.host.listen("poll", self._intake), name=f"{self.name}-poll")

    async def stop(self) -> None:
        for task in (self._stream_task, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._task = self._stream_task = None
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
        data = res.get("data")
        if not isinstance(data, dict) or not str(data.get("id") or "").isdigit():
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
        data = res.get("data") if isinstance(res.get("data"), list) else []
        posts = [p for t in data if isinstance(t, dict) and (p := post_from(self.name, t, inc, self.me.get("id", "")))]
        posts.sort(key=lambda p: int(p.ref.id))
        return posts[-limit:]

    async def _remember_users(self, users: list[Mapping[str, Any]]) -> None:
        changed = False
        for u in users:
            uid = str(u.get("id", ""))
            if (
                uid.isdigit()
                and isinstance(u.get("username"), str)
                and USERNAME.fullmatch(u["username"])
                and self.users.get(uid, {}).get("username") != u["username"]
            ):
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
        for t in _items(res):
            if isinstance(t, dict) and _same_text(str(t.get("text", "")), text):
                return Posted(Ref(self.name, str(t["id"])), post_url(me["username"], str(t["id"])))
        return None

    async def _tweet(self, body: dict[str, Any]) -> Posted:
        me = await self._whoami()
        res = await self.api.post("/2/tweets", body)
        tid = str(_one(res).get("id", ""))
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
        data = _one(res)
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

    def _exclude(self, source: Source) -> str:
        """``exclude`` for a user timeline: replies and/or reposts when no subscription of the
        account wants them, so that X returns (and bills) fewer posts
        (https://docs.x.com/x-api/users/get-posts: ``exclude`` takes ``replies``, ``retweets``)."""
        wanted = self._filters(source)
        if not wanted:
            return ""
        out = []
        if not any(f.replies for f in wanted):
            out.append("replies")
        if not any(f.reposts for f in wanted):
            out.append("retweets")
        return ",".join(out)

    def _filters(self, source: Source) -> tuple[Any, ...]:
        try:
            return tuple(self.host.filters(source))
        except Exception:  # a command-line host may not know the subscriptions
            return ()

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
            # A new feed starts when it is first wanted, not when X first answers for it: its
            # first read may wait for a rate limit, and what was posted meanwhile is relayed.
            start = datetime.fromtimestamp(self._clock(), UTC)
            pager = Pager(fetch, pages_per_turn=3, max_pages=5, where=self._where, start=start)
            feed = self.feeds[key] = Feed(key, source, pager)
        return feed

    def _adopt(self, sources: list[Source]) -> dict[str, tuple[Source | None, Callable[[str | None], Awaitable[Page[Post]]]]]:
        """The feeds ``sources`` want, each new one created (and so started) now."""
        wanted = self._wanted(sources)
        for key, (source, fetch) in wanted.items():
            self._feed(key, source, fetch)
        return wanted

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
        chosen: dict[str, str] = {}

        async def fetch(cursor: str | None) -> Page[Post]:
            poll = self.plan.polls.get(s.value)
            params = self._read_params(poll.max_results if poll else 5, known=s.value)
            # A walk's later pages keep the value its first page was asked with: X's
            # pagination_token belongs to that query.
            if cursor is None or "exclude" not in chosen:
                chosen["exclude"] = self._exclude(s)
            exclude = chosen["exclude"]
            if exclude:
                params["exclude"] = exclude
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
            ids = [int(t["id"]) for t in _items(res) if isinstance(t, dict) and str(t.get("id", "")).isdigit()]
            if ids:
                self._fetched_top[key] = str(max(ids))
        inc = Includes(res, self.users)
        await self._remember_users([u for u in inc.users.values() if str(u.get("id")) not in self.users])
        entries = []
        me = self.me.get("id", "")
        for t in _items(res):
            if not isinstance(t, dict):
                continue
            post = post_from(self.name, t, inc, me, reason)
            if post is None or (reason and post.author.id == me):
                continue
            entries.append(Entry(entry_time(post.ref.id, post.created_at), post, source))
        nxt = res["meta"].get("next_token") if isinstance(res.get("meta"), dict) else None
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
            for ev in _items(res):
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
            nxt = res["meta"].get("next_token") if isinstance(res.get("meta"), dict) else None
            times = [e.at for e in entries]
            return Page(entries, str(nxt) if nxt else None, min(times) if times else None, complete=True)

        return fetch

    async def _user(self, uid: str) -> Author:
        known = self.users.get(uid)
        if known:
            return author_of(known)
        res = await self.api.get("/2/users/:id", args={"id": uid}, params={"user.fields": USER_FIELDS})
        data = _one(res)
        await self._remember_users([data])
        return author_of(data) if data.get("id") else Author(uid, uid)

    async def _turn(self, feed: Feed, inbox: list[Source]) -> Turn:
        sources = [feed.source] if feed.source else inbox
        saved = await self.host.load_cursor(feed.key)
        since_before = await self._since(feed.key)
        # A walk that starts now, while the stream is up and carries this feed, covers all up
        # to the moment the stream took over: when it ends, the stream alone serves the feed.
        epoch = self._stream_epoch if self._carried(feed.key) and '"walk"' not in (saved or "") else None

        async def commit(posts: list[Post], cursor: str, gaps: tuple[Any, ...]) -> None:
            cursors = {feed.key: cursor}
            if '"walk"' not in cursor and feed.key != "dms":
                top = _top_id(posts, since_before, self._fetched_top.pop(feed.key, None))
                if top:
                    cursors[f"{feed.key}#since"] = top
            items = tuple(Item(s, p) for p in posts for s in sources)
            await self.host.ingest(Batch(items=items, cursors=cursors, gaps=gaps))
            if epoch is not None and epoch == self._stream_epoch and self._carried(feed.key) and '"walk"' not in cursor:
                self._contiguous.add(feed.key)
            if feed.source is not None and feed.source.kind is SourceKind.FOLLOW and posts:
                first, seen = self.rates.get(feed.source.value, [self._clock(), 0.0])
                self.rates[feed.source.value] = [first, seen + len(posts)]

        return await feed.pager.turn(saved, sources, commit)

    async def _intake(self) -> None:
        """The poll loop, and the filtered stream beside it when ``intake = "stream"``."""
        if self.intake != "stream":
            return await self._run()
        self._stream_task = asyncio.create_task(self._stream_run(), name=f"{self.name}-stream")
        try:
            await self._run()
        finally:
            self._stream_task.cancel()
            with contextlib.suppress(BaseException):
                await self._stream_task

    async def _run(self) -> None:
        watch = asyncio.create_task(self._watch_sources(), name=f"{self.name}-sources")
        try:
            while True:
                try:
                    wait = await self._cycle()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("X poll cycle failed")
                    wait = RETRY_AFTER_FAILURE
                if self._wake.is_set():
                    self._wake.clear()
                    continue
                changed = asyncio.ensure_future(self._changed.wait())
                woken = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({changed, woken}, timeout=max(0.05, wait), return_when=asyncio.FIRST_COMPLETED)
                for t in (changed, woken):
                    if not t.done():
                        t.cancel()
                if self._changed.is_set():
                    self._changed.clear()
                    for f in self.feeds.values():
                        f.next_due = 0.0
                self._wake.clear()
        finally:
            watch.cancel()
            with contextlib.suppress(BaseException):
                await watch

    async def _watch_sources(self) -> None:
        """Starts the feed of each new source as soon as the core wants it, even while a poll
        cycle waits for a rate limit, and wakes the poll loop."""
        while True:
            await self.host.sources_changed()
            self._adopt(self._current_sources())
            self._changed.set()

    async def _cycle(self) -> float:
        """Poll every due feed once; return the seconds until the next one is due."""
        sources = self._current_sources()
        self.plan = self._make_plan(sources)
        self.ledger.planned_daily = self.plan.expected
        wanted = self._adopt(sources)
        for key in [k for k in self.feeds if k not in wanted]:
            del self.feeds[key]
        inbox = [s for s in sources if s.kind is SourceKind.INBOX]
        if self.intake == "stream":
            try:
                await self._sync_rules(sources)
            except BudgetExceeded as e:  # past the cap even the free rules calls are not sent
                await self._budget_reached(e)
            except BridgeError as e:
                # Everything is polled until the rules can be set.
                log.warning("X stream rules could not be set; polling instead reason=%s", e)
                self._synced, self._rules = None, Rules((), frozenset(), {})
        now = self._clock()
        for key, (source, fetch) in wanted.items():
            feed = self._feed(key, source, fetch)
            if key in self._contiguous and self._carried(key):
                continue  # the stream delivers it
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
        dues = [f.next_due for k, f in self.feeds.items() if not (k in self._contiguous and self._carried(k))]
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

    # --- filtered stream ------------------------------------------------------------------

    def _carried(self, key: str) -> bool:
        """Whether the stream is connected and its rules carry feed ``key``."""
        return self._stream_up and key in self._rules.covered

    def _wanted_rules(self, sources: list[Source]) -> Rules:
        follows = [
            (s.value, self.users[s.value]["username"], self._exclude(s))
            for s in sources
            if s.kind is SourceKind.FOLLOW and s.value in self.users
        ]
        queries = [s.value for s in sources if s.kind is SourceKind.QUERY]
        return build_rules(
            follows,
            queries,
            max_rules=int(self.settings["stream_rules"]),
            max_length=int(self.settings["stream_rule_length"]),
        )

    async def _sync_rules(self, sources: list[Source]) -> None:
        """Make X's stream rules the ones the subscriptions want: new rules are added before
        old ones are deleted, so that a change of filters leaves no moment uncovered. Costs
        requests only on a change (and one listing after a start)."""
        wanted = self._wanted_rules(sources)
        if self._synced is None:
            res = await self.api.get(STREAM_RULES)
            self._synced = {
                Rule(str(r["value"]), str(r.get("tag") or "")): str(r["id"])
                for r in _items(res)
                if isinstance(r, dict) and r.get("id") and r.get("value")
            }
        if set(wanted.rules) != self._asked:  # what X refused is asked again only when the wish changes
            self._asked, self._refused = set(wanted.rules), set()
        new = [r for r in wanted.rules if r not in self._synced and r not in self._refused]
        if new:
            res = await self.api.post(STREAM_RULES, {"add": [{"value": r.value, "tag": r.tag} for r in new]}, user=False)
            for r in _items(res):
                if isinstance(r, dict) and r.get("id"):
                    self._synced[Rule(str(r.get("value", "")), str(r.get("tag") or ""))] = str(r["id"])
            refused = [r for r in new if r not in self._synced]
            self._refused.update(refused)
            log.info("X stream rules added rules=%d refused=%d", len(new) - len(refused), len(refused))
            if refused:
                # X answers 200 with ``errors`` for rules it did not take: their feeds are polled.
                log.warning("X refused stream rules errors=%s", json.dumps(res.get("errors"))[:300])
        stale = {rule: rid for rule, rid in self._synced.items() if rule not in set(wanted.rules)}
        if stale:
            await self.api.post(STREAM_RULES, {"delete": {"ids": sorted(stale.values())}}, user=False)
            for rule in stale:
                del self._synced[rule]
            log.info("X stream rules deleted rules=%d", len(stale))
        before = self._rules.covered
        held = wanted.accepted(self._synced)
        self._rules = held
        self._contiguous &= set(held.covered)
        if held.rules:
            self._stream_wanted.set()
        if held.covered != before:
            log.info("X filtered stream carries feeds=%d rules=%d", len(held.covered), len(held.rules))

    def _stream_params(self) -> dict[str, str]:
        # No author_id expansion: it would bill the author as a User read once per UTC day
        # ($0.010, https://docs.x.com/x-api/getting-started/pricing), while followed accounts
        # are known and another author is looked up once and remembered.
        return self._fields(EXPANSIONS)

    async def _stream_run(self) -> None:
        """Hold the filtered stream while rules want it; reconnect as X's docs ask."""
        attempt = 0
        while True:
            if not self._rules.rules:
                self._stream_wanted.clear()
                await self._stream_wanted.wait()
                continue
            opened = False

            async def on_open() -> None:
                nonlocal opened
                opened = True
                self._stream_up = True
                self._stream_epoch += 1
                self._contiguous.clear()
                for key in self._rules.covered:  # the catch-up: each carried feed walked once more
                    if key in self.feeds:
                        self.feeds[key].next_due = 0.0
                self._wake.set()

            kind, retry_after, delay = "http", 0.0, 0.0
            try:
                worst = worst_case(self.ledger.prices, "post_read", 1, EXPANSIONS)
                self.ledger.release(self.ledger.reserve(worst, f"GET {STREAM}"))  # not past the cap
                await self.api.stream(STREAM, self._stream_params(), self._on_stream_line, on_open=on_open)
            except asyncio.CancelledError:
                raise
            except BudgetExceeded as e:
                await self._budget_reached(e)
                kind, delay = "budget", max(self.poll_interval, 60.0)
            except RateLimited as e:
                kind, retry_after = "429", e.retry_after
            except StreamDropped as e:
                kind = "network"
                log.info("X stream dropped reason=%s", e)
            except AuthFailed as e:
                await self.host.report_health(False, str(e))
            except Exception as e:
                log.warning("X stream failed reason=%s", e)
            finally:
                self._stream_up = False
                self._wake.set()  # the poll loop serves the carried feeds until it is back
            attempt = 0 if opened else attempt + 1
            if kind != "budget":
                delay = reconnect_delay(kind, attempt, retry_after)
            if delay:
                log.info("X stream reconnects in=%.2fs attempt=%d after=%s", delay, attempt, kind)
                await asyncio.sleep(delay)

    async def _on_stream_line(self, line: bytes) -> None:
        """One message of the stream: a Post, metered (X bills it as delivered), handed to the
        sources it belongs to; an error message or anything unreadable is logged and skipped."""
        try:
            msg = json.loads(line)
        except ValueError:
            log.warning("X stream sent a line that is not JSON length=%d", len(line))
            return
        if not isinstance(msg, dict):
            return
        tweet = msg.get("data")
        if not isinstance(tweet, dict):
            if msg.get("errors"):
                log.warning("X stream said errors=%s", json.dumps(msg.get("errors"))[:300])
            return
        charges = list(billable("post_read", msg))
        worst = worst_case(self.ledger.prices, "post_read", 1, EXPANSIONS)
        try:
            held = self.ledger.reserve(worst, "a post on the X filtered stream")
        except BudgetExceeded:
            # X delivered it, so X bills it: record that, then close the stream (raise).
            await self.ledger.settle(Reservation(0, 0, "stream"), charges)
            raise
        await self.ledger.settle(held, charges)
        author_id = str(tweet.get("author_id") or "")
        if author_id.isdigit() and author_id not in self.users:
            await self._user(author_id)  # once: remembered from then on
        inc = Includes(msg, self.users)
        await self._remember_users([u for u in inc.users.values() if str(u.get("id")) not in self.users])
        post = post_from(self.name, tweet, inc, self.me.get("id", ""))
        if post is None:
            return
        matched = msg.get("matching_rules")
        tags = {str(r.get("tag")) for r in matched if isinstance(r, dict)} if isinstance(matched, list) else set()
        author = str(tweet.get("author_id") or "")
        wanted = [
            s
            for s in self._current_sources()
            if (s.kind is SourceKind.FOLLOW and s.value == author and FOLLOW_TAG in tags)
            or (s.kind is SourceKind.QUERY and query_tag(s.value) in tags)
        ]
        if not wanted:
            return
        cursors: dict[str, str] = {}
        for s in wanted:
            key = f"{'follow' if s.kind is SourceKind.FOLLOW else 'query'}:{s.value}"
            if key in self._contiguous and post.ref.id.isdigit():
                since = await self._since(key)
                if not since or not since.isdigit() or int(post.ref.id) > int(since):
                    cursors[f"{key}#since"] = post.ref.id
            if s.kind is SourceKind.FOLLOW:
                first, seen = self.rates.get(s.value, [self._clock(), 0.0])
                self.rates[s.value] = [first, seen + 1]
        await self.host.ingest(Batch(items=tuple(Item(s, post) for s in wanted), cursors=cursors))

    async def _budget_reached(self, e: BudgetExceeded) -> None:
        if self._stopped_by_budget:
            return
        self._stopped_by_budget = str(e)
        log.warning("X budget reached: relays stop reason=%s", e)
        await self.host.report_health(
            False,
            f"{e} Posts from X are not relayed until then; replies, posts and DMs that fit what is left of the budget still go.",
            limited=True,
        )

    async def _budget_ok(self) -> None:
        if self._stopped_by_budget:
            self._stopped_by_budget = ""
            await self.host.report_health(True)

    def _report_spend(self) -> None:
        """The month's figures for /metrics (the host's spend gauges)."""
        spend = self.ledger.status()
        self.host.report_spend(spend.spent / MICRO, spend.cap / MICRO, spend.forecast / MICRO)

    async def _save_status(self) -> None:
        self._report_spend()  # every cycle: the month may have rolled over with nothing billed
        line = self.ledger.status().line()
        if self._stopped_by_budget:
            line += "; cap reached: X reads stopped"
        if line != self._status:
            self._status = line
            await self.host.save_state("status", line)


def _one(res: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` of a single-object response; an empty one when it is not an object."""
    data = res.get("data")
    return data if isinstance(data, dict) else {}


def _items(res: Mapping[str, Any]) -> list[Any]:
    """``data`` of a list response; anything else a broken or hostile answer holds there: none."""
    data = res.get("data")
    return data if isinstance(data, list) else []


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
