"""An X API v2 emulator on aiohttp, written from X's docs (docs.x.com, read 2026-12).

What it serves (paths, parameters and response shapes as the API reference gives them):

* ``GET /2/users/by/username/:username``, ``GET /2/users/:id``, ``GET /2/users/me`` (user
  context). A missing user is answered as X does: 200 with ``errors`` (``resource-not-found``)
  and no ``data``.
* ``GET /2/users/:id/tweets`` (user timeline): ``since_id``, ``until_id``, ``max_results``
  (5-100), ``pagination_token``, ``exclude=replies,retweets``, ``expansions``
  (``author_id``, ``referenced_tweets.id``, ``attachments.media_keys``), ``tweet.fields``,
  ``user.fields``, ``media.fields``; newest first, ``meta`` with ``result_count``,
  ``newest_id``, ``oldest_id``, ``next_token``.
* ``GET /2/users/:id/mentions`` (mentions timeline), same parameters.
* ``GET /2/tweets/search/recent``: ``query`` (terms, ``"phrases"``, ``from:``, ``-term``,
  ``OR`` between terms is not modelled), ``since_id``, ``max_results`` (10-100),
  ``next_token``; only the last 7 days, and no reposts (since the search index change of
  2026-05-04, https://docs.x.com/changelog).
* ``POST /2/tweets`` (user context): ``text``, ``reply.in_reply_to_tweet_id``,
  ``quote_tweet_id``. Self-serve rules since 2026 (changelog 2026-02 and 2026-04-16): a reply
  only to a post whose author mentioned the account or quoted one of its posts, else 403;
  quote posts 403. ``enterprise=True`` lifts both.
* ``POST /2/users/:id/likes``, ``POST /2/users/:id/following``: Enterprise only (403
  ``client-not-enrolled`` otherwise); ``POST /2/users/:id/retweets`` (reposts) allowed.
* ``GET /2/dm_events`` and ``POST /2/dm_conversations/with/:participant_id/messages`` (user
  context).

Every response carries ``x-rate-limit-limit``/``-remaining``/``-reset`` for its endpoint,
counted per app (bearer) or per user (OAuth 1.0a) in real windows (``limits``; tests shorten
them); past the limit it answers 429 until the reset. Requests are authenticated: a bearer
token must match, an OAuth 1.0a header is VERIFIED (HMAC-SHA1 over the base string built
here independently of the adapter's signer, consumer key and token known, timestamp within
5 minutes, nonce not reused), else 401. Errors use X's problem shape (``title``, ``detail``,
``type``, ``status``).

The usage meter (``usage(day)``) counts what X would bill per UTC day: every Post, User,
media object and DM event in ``data`` and ``includes`` of a successful response, once per
resource per day (the account's own timeline and mentions as ``owned_read``); every created
post (``post_create``, ``post_create_url`` when the text has a link, ``reply_create`` for a
reply without one), DM (``dm_create``) and repost (``interaction_create``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from aiohttp import web

PROBLEMS = "https://api.x.com/2/problems/"
WINDOW = 900.0
TWEPOCH_MS = 1288834974657  # X's snowflake epoch
SEARCH_DAYS = 7

# (method, route) → (per app, per user) requests per window; https://docs.x.com/x-api/fundamentals/rate-limits
DEFAULT_LIMITS: dict[tuple[str, str], tuple[int, int]] = {
    ("GET", "/2/users/by/username/:username"): (300, 900),
    ("GET", "/2/users/:id"): (300, 900),
    ("GET", "/2/users/me"): (0, 75),
    ("GET", "/2/users/:id/tweets"): (10_000, 900),
    ("GET", "/2/users/:id/mentions"): (450, 300),
    ("GET", "/2/tweets/search/recent"): (450, 300),
    ("POST", "/2/tweets"): (0, 100),
    ("POST", "/2/users/:id/likes"): (0, 50),
    ("POST", "/2/users/:id/following"): (0, 50),
    ("POST", "/2/users/:id/retweets"): (0, 50),
    ("GET", "/2/dm_events"): (0, 15),
    ("GET", "/2/tweets/search/stream"): (50, 0),
    ("GET", "/2/tweets/search/stream/rules"): (450, 0),
    ("POST", "/2/tweets/search/stream/rules"): (100, 0),
    ("POST", "/2/dm_conversations/with/:participant_id/messages"): (0, 15),
}
USER_ONLY = frozenset(
    {
        ("GET", "/2/users/me"),
        ("POST", "/2/tweets"),
        ("POST", "/2/users/:id/likes"),
        ("POST", "/2/users/:id/following"),
        ("POST", "/2/users/:id/retweets"),
        ("GET", "/2/dm_events"),
        ("POST", "/2/dm_conversations/with/:participant_id/messages"),
    }
)
_URL = re.compile(r"https?://[^\s]+")
# Filtered stream on pay-per-use (https://docs.x.com/x-api/posts/filtered-stream/introduction):
# 1,000 rules of up to 1,024 characters, one connection; a keep-alive line every 20 s.
STREAM_RULES, STREAM_RULE_LENGTH = 1000, 1024
STREAM = "/2/tweets/search/stream"


# --- OAuth 1.0a verification, written from RFC 5849 (independent of the adapter's signer) --


def percent(value: str) -> str:
    """RFC 5849 3.6: UTF-8, then every byte but ``A-Z a-z 0-9 - . _ ~`` as %XX."""
    return quote(value.encode("utf-8"), safe="-._~")


def base_string(method: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """RFC 5849 3.4.1: METHOD&enc(base URL)&enc(sorted, encoded k=v pairs joined by &)."""
    pairs = sorted((percent(k), percent(v)) for k, v in params)
    normalized = "&".join(f"{k}={v}" for k, v in pairs)
    return "&".join((method.upper(), percent(url), percent(normalized)))


def parse_oauth_header(header: str) -> dict[str, str]:
    """The ``oauth_*`` fields of an ``Authorization: OAuth ...`` header, decoded."""
    if not header.startswith("OAuth "):
        raise ValueError("not an OAuth header")
    fields = {}
    for part in header[6:].split(","):
        key, _, value = part.strip().partition("=")
        if key and key != "realm":
            fields[key] = unquote(value.strip('"'))
    return fields


# --- the emulator --------------------------------------------------------------------------


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str, type_: str = "about:blank", **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.body = {"title": title, "detail": detail, "type": type_, "status": status, **extra}


@dataclass
class Window:
    limit: int
    remaining: int
    reset: float


@dataclass
class Usage:
    reads: dict[str, set[str]] = field(default_factory=dict)  # kind → ids charged that day
    writes: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = {k: len(v) for k, v in self.reads.items() if v}
        for k, n in self.writes.items():
            out[k] = out.get(k, 0) + n
        return out


class XEmulator:
    def __init__(
        self,
        *,
        bearer_token: str = "test-bearer",
        consumer_key: str = "test-consumer-key",
        consumer_secret: str = "test-consumer-secret",
        access_token: str = "1-test-access-token",
        access_token_secret: str = "test-access-secret",
        account: str = "teamaccount",
        enterprise: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bearer_token = bearer_token
        self.consumer_key, self.consumer_secret = consumer_key, consumer_secret
        self.access_token, self.access_token_secret = access_token, access_token_secret
        self.enterprise = enterprise
        self.clock = clock
        self.limits: dict[tuple[str, str], tuple[int, int]] = dict(DEFAULT_LIMITS)
        self.window_seconds: dict[tuple[str, str], float] = {}
        self.windows: dict[tuple[str, str, str], Window] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.tweets: dict[str, dict[str, Any]] = {}
        self.media: dict[str, dict[str, Any]] = {}
        self.dm_events: list[dict[str, Any]] = []
        self.created: list[dict[str, Any]] = []  # posts the account made through the API
        self.sent_dms: list[dict[str, Any]] = []
        self.likes: list[tuple[str, str]] = []
        self.requests: list[tuple[str, str, str, int]] = []  # (method, route, auth kind, status)
        self.timeline_reads: dict[str, int] = {}  # user id -> answered reads of that user's timeline
        self.queries: list[tuple[str, str, dict[str, str]]] = []  # (method, route, query) of every request
        self.served: dict[str, int] = {}  # post id -> times a page's ``data`` held it (re-reads show here)
        self.nonces: set[str] = set()
        self.meter: dict[str, Usage] = {}
        self.fail_next: list[int] = []  # statuses to answer the next requests with (5xx tests)
        self.spent_next: dict[tuple[str, str], float] = {}  # (method, route) -> seconds: see spend_next
        self.canned: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (method, route) → bodies to answer 200 with, once each
        self.stall = 0.0  # seconds to wait before answering (timeout tests)
        self.stream_rules: dict[str, dict[str, str]] = {}  # id → {"id", "value", "tag"}
        self.refused_rules: dict[str, str] = {}  # rule value → the error title X answers it with
        self.stream_connections = 0  # connections opened so far
        self.stream_delivered: list[str] = []  # post ids written to a stream
        self.heartbeat = 20.0  # seconds between keep-alive lines
        self._stream_queue: asyncio.Queue[dict[str, Any] | None] | None = None
        self._last_id = 0
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.me = self.add_user(account, "Team Account")

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        self.drop_stream()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- seeding -------------------------------------------------------------------------

    def _id(self) -> str:
        """A snowflake, as X makes its ids: milliseconds since X's epoch (1288834974657) shifted
        left by 22 bits, plus a sequence; always above the last one."""
        snowflake = (int(self.clock() * 1000) - TWEPOCH_MS) << 22
        self._last_id = max(snowflake, self._last_id + 1)
        return str(self._last_id)

    def add_user(self, username: str, name: str = "", *, protected: bool = False) -> dict[str, Any]:
        user = {"id": self._id(), "username": username, "name": name or username.title(), "protected": protected}
        self.users[user["id"]] = user
        return user

    def user_named(self, username: str) -> dict[str, Any] | None:
        return next((u for u in self.users.values() if u["username"].lower() == username.lower()), None)

    def post(
        self,
        author: dict[str, Any] | str,
        text: str,
        *,
        at: float | None = None,
        reply_to: str | None = None,
        quote_of: str | None = None,
        repost_of: str | None = None,
        media: Iterable[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """A post by ``author`` as X stores it: links replaced by t.co in ``text`` with the
        expansion in ``entities.urls``, @mentions of known users in ``entities.mentions``."""
        author = author if isinstance(author, dict) else self.user_named(author) or self.add_user(author)
        tid = self._id()
        entities: dict[str, Any] = {}
        urls = []

        def shorten(m: re.Match[str]) -> str:
            short = f"https://t.co/{len(urls):02d}{tid[-6:]}"
            urls.append({"url": short, "expanded_url": m.group(0), "display_url": m.group(0).split("://", 1)[1][:25]})
            return short

        stored = _URL.sub(shorten, text)
        for u in urls:
            start = stored.index(u["url"])
            u.update(start=start, end=start + len(u["url"]))
        if urls:
            entities["urls"] = urls
        mentions = []
        for m in re.finditer(r"(?<!\w)@(\w{1,15})", stored):
            user = self.user_named(m.group(1))
            if user:
                mentions.append({"start": m.start(), "end": m.end(), "username": user["username"], "id": user["id"]})
        if mentions:
            entities["mentions"] = mentions
        tweet: dict[str, Any] = {
            "id": tid,
            "text": stored,
            "author_id": author["id"],
            "created_at": _iso(self.clock() if at is None else at),
            "conversation_id": tid,
            "_at": self.clock() if at is None else at,
        }
        if entities:
            tweet["entities"] = entities
        refs = []
        if reply_to:
            parent = self.tweets[reply_to]
            refs.append({"type": "replied_to", "id": reply_to})
            tweet["in_reply_to_user_id"] = parent["author_id"]
            tweet["conversation_id"] = parent["conversation_id"]
        if quote_of:
            refs.append({"type": "quoted", "id": quote_of})
        if repost_of:
            refs.append({"type": "retweeted", "id": repost_of})
            tweet["text"] = f"RT @{self.users[self.tweets[repost_of]['author_id']]['username']}: {self.tweets[repost_of]['text']}"
        if refs:
            tweet["referenced_tweets"] = refs
        keys = []
        for i, m in enumerate(media):
            key = f"3_{tid}{i}"
            self.media[key] = {"media_key": key, **m}
            keys.append(key)
        if keys:
            tweet["attachments"] = {"media_keys": keys}
        self.tweets[tid] = tweet
        if self._stream_queue is not None:
            self._stream_queue.put_nowait(tweet)
        return tweet

    def dm_from(self, sender: dict[str, Any], text: str) -> dict[str, Any]:
        event = {
            "id": self._id(),
            "event_type": "MessageCreate",
            "text": text,
            "sender_id": sender["id"],
            "dm_conversation_id": "-".join(sorted((sender["id"], self.me["id"]))),
            "created_at": _iso(self.clock()),
        }
        self.dm_events.append(event)
        return event

    def set_limit(self, method: str, route: str, limit: int, window: float = WINDOW) -> None:
        """Shorten an endpoint's limit and window (both per app and per user)."""
        self.limits[(method, route)] = (limit, limit)
        self.window_seconds[(method, route)] = window

    def spend_next(self, method: str, route: str, seconds: float) -> None:
        """The next request to an endpoint finds its window spent (by other clients of the same
        app): 429 with a reset ``seconds`` later."""
        self.spent_next[(method, route)] = seconds

    def usage(self, day: str | None = None) -> dict[str, int]:
        """What X would bill for ``day`` (default: today, UTC), by kind."""
        return self.meter.get(day or _day(self.clock()), Usage()).counts()

    # --- dispatch ------------------------------------------------------------------------

    ROUTES: tuple[tuple[str, re.Pattern[str], str, str], ...] = tuple(
        (m, re.compile(p), r, h)
        for m, p, r, h in (
            ("GET", r"/2/users/by/username/(?P<username>[^/]+)", "/2/users/by/username/:username", "_user_by_name"),
            ("GET", r"/2/users/me", "/2/users/me", "_users_me"),
            ("GET", r"/2/users/(?P<id>\d+)/tweets", "/2/users/:id/tweets", "_timeline"),
            ("GET", r"/2/users/(?P<id>\d+)/mentions", "/2/users/:id/mentions", "_mentions"),
            ("GET", r"/2/users/(?P<id>\d+)", "/2/users/:id", "_user_by_id"),
            ("GET", r"/2/tweets/search/recent", "/2/tweets/search/recent", "_search"),
            ("GET", r"/2/tweets/search/stream/rules", "/2/tweets/search/stream/rules", "_get_rules"),
            ("POST", r"/2/tweets/search/stream/rules", "/2/tweets/search/stream/rules", "_change_rules"),
            ("GET", r"/2/tweets/search/stream", STREAM, "_stream"),
            ("POST", r"/2/tweets", "/2/tweets", "_create_post"),
            ("POST", r"/2/users/(?P<id>\d+)/likes", "/2/users/:id/likes", "_enterprise_only"),
            ("POST", r"/2/users/(?P<id>\d+)/following", "/2/users/:id/following", "_enterprise_only"),
            ("POST", r"/2/users/(?P<id>\d+)/retweets", "/2/users/:id/retweets", "_repost"),
            ("GET", r"/2/dm_events", "/2/dm_events", "_dm_events"),
            (
                "POST",
                r"/2/dm_conversations/with/(?P<participant_id>\d+)/messages",
                "/2/dm_conversations/with/:participant_id/messages",
                "_send_dm",
            ),
        )
    )

    async def _dispatch(self, request: web.Request) -> web.Response:
        found = next(
            (
                (r, h, m)
                for method, pattern, r, h in self.ROUTES
                if method == request.method and (m := pattern.fullmatch(request.path))
            ),
            None,
        )
        if found is None:
            return web.json_response(
                {"title": "Not Found", "detail": f"no route {request.path}", "type": "about:blank", "status": 404}, status=404
            )
        route, handler, m = found
        self.queries.append((request.method, route, dict(request.query)))
        if self.stall:
            await asyncio.sleep(self.stall)
        auth, caller = "none", ""
        headers: dict[str, str] = {}
        status = 500
        try:
            raw = await request.read()
            auth, caller = self._authenticate(request, raw, route)
            headers = self._count(request.method, route, auth, caller)
            if self.fail_next:
                status = self.fail_next.pop(0)
                raise Problem(status, "Service Unavailable", "Service Unavailable")
            body = json.loads(raw) if raw and request.content_type == "application/json" else {}
            if self.canned.get((request.method, route)):
                # A hostile or broken answer a test wants, as X's 200 would carry it.
                payload = self.canned[(request.method, route)].pop(0)
                self.requests.append((request.method, route, auth, 200))
                return web.json_response(payload, status=200, headers=headers)
            if route == STREAM:
                self.requests.append((request.method, route, auth, 200))
                return await self._stream(request, headers)
            status, payload = getattr(self, handler)(request, dict(m.groupdict()), body, auth)
        except Problem as p:
            status = p.status
            self.requests.append((request.method, route, auth, status))
            return web.json_response(p.body, status=p.status, headers=getattr(p, "headers", headers))
        self.requests.append((request.method, route, auth, status))
        if 200 <= status < 300:
            self._bill(route, caller, payload, request)
        return web.json_response(payload, status=status, headers=headers)

    def _authenticate(self, request: web.Request, raw: bytes, route: str) -> tuple[str, str]:
        header = request.headers.get("Authorization", "")
        unauthorized = Problem(401, "Unauthorized", "Unauthorized")
        if header.startswith("Bearer "):
            if not hmac.compare_digest(header[7:], self.bearer_token):
                raise unauthorized
            if (request.method, route) in USER_ONLY:
                raise Problem(
                    403,
                    "Unsupported Authentication",
                    "Authenticating with OAuth 2.0 Application-Only is forbidden for this endpoint.  "
                    "Supported authentication types are [OAuth 1.0a User Context, OAuth 2.0 User Context].",
                    PROBLEMS + "unsupported-authentication",
                )
            return "app", ""
        if header.startswith("OAuth "):
            try:
                fields = parse_oauth_header(header)
            except ValueError:
                raise unauthorized from None
            if fields.get("oauth_consumer_key") != self.consumer_key or fields.get("oauth_token") != self.access_token:
                raise unauthorized
            if fields.get("oauth_signature_method") != "HMAC-SHA1" or "oauth_signature" not in fields:
                raise unauthorized
            try:
                ts = int(fields.get("oauth_timestamp", ""))
            except ValueError:
                raise unauthorized from None
            if abs(self.clock() - ts) > 300:
                raise unauthorized
            nonce = fields.get("oauth_nonce", "")
            if not nonce or nonce in self.nonces:
                raise unauthorized
            params = [(k, v) for k, v in fields.items() if k != "oauth_signature"]
            params += parse_qsl(request.url.raw_query_string, keep_blank_values=True)
            if request.content_type == "application/x-www-form-urlencoded":
                params += parse_qsl(raw.decode(), keep_blank_values=True)
            url = f"{request.url.scheme}://{request.host}{request.url.raw_path}"
            key = f"{percent(self.consumer_secret)}&{percent(self.access_token_secret)}".encode()
            expected = base64.b64encode(hmac.new(key, base_string(request.method, url, params).encode(), hashlib.sha1).digest())
            if not hmac.compare_digest(expected.decode(), fields["oauth_signature"]):
                raise unauthorized
            self.nonces.add(nonce)
            return "user", self.me["id"]
        raise unauthorized

    def _count(self, method: str, route: str, auth: str, caller: str) -> dict[str, str]:
        per_app, per_user = self.limits[(method, route)]
        limit = per_user if auth == "user" else per_app
        length = self.window_seconds.get((method, route), WINDOW)
        now = self.clock()
        key = (method, route, caller or "app")
        w = self.windows.get(key)
        spent = self.spent_next.pop((method, route), None)
        if spent is not None:
            w = self.windows[key] = Window(limit, 0, now + spent)
        elif w is None or now >= w.reset:
            w = self.windows[key] = Window(limit, limit, now + length)
        headers = {"x-rate-limit-limit": str(w.limit), "x-rate-limit-reset": str(int(w.reset + 0.999))}
        if w.remaining <= 0:
            headers["x-rate-limit-remaining"] = "0"
            raise _with_headers(Problem(429, "Too Many Requests", "Too Many Requests", PROBLEMS + "rate-limit-exceeded"), headers)
        w.remaining -= 1
        headers["x-rate-limit-remaining"] = str(w.remaining)
        return headers

    # --- billing -------------------------------------------------------------------------

    def _usage(self) -> Usage:
        return self.meter.setdefault(_day(self.clock()), Usage())

    def _read(self, kind: str, rid: str) -> None:
        self._usage().reads.setdefault(kind, set()).add(rid)

    def _write(self, kind: str) -> None:
        u = self._usage()
        u.writes[kind] = u.writes.get(kind, 0) + 1

    def _bill(self, route: str, caller: str, payload: dict[str, Any], request: web.Request) -> None:
        if route.startswith(STREAM + "/rules"):
            return  # rules are not billable resources; the Posts a stream delivers are
        if route.startswith("/2/dm_conversations"):
            self._write("dm_create")
            return
        if route == "/2/tweets":
            self._write(payload.pop("_kind"))
            return
        if route == "/2/users/:id/retweets":
            self._write("interaction_create")
            return
        if route.endswith("/likes") or route.endswith("/following"):
            self._write("interaction_create")
            return
        owned = (
            route in ("/2/users/:id/tweets", "/2/users/:id/mentions")
            and request.match_info.get("tail", "").split("/")[2] == self.me["id"]
        )
        data = payload.get("data")
        items = data if isinstance(data, list) else [data] if data else []
        primary = (
            "dm_event_read"
            if route == "/2/dm_events"
            else "user_read"
            if route.startswith("/2/users") and "tweets" not in route and "mentions" not in route
            else "post_read"
        )
        for item in items:
            self._read("owned_read" if owned else primary, item["id"])
        includes = payload.get("includes", {})
        for t in includes.get("tweets", []):
            self._read("post_read", t["id"])
        for u in includes.get("users", []):
            self._read("user_read", u["id"])
        for m in includes.get("media", []):
            self._read("media_read", m["media_key"])

    # --- handlers ------------------------------------------------------------------------

    def _public_user(self, user: dict[str, Any], fields: set[str]) -> dict[str, Any]:
        out = {k: user[k] for k in ("id", "username", "name")}
        if "protected" in fields:
            out["protected"] = user["protected"]
        return out

    def _user_by_name(self, request: web.Request, args: dict[str, str], _body: Any, _auth: str) -> tuple[int, dict[str, Any]]:
        name = args["username"]
        if not re.fullmatch(r"\w{1,15}", name):
            raise Problem(
                400,
                "Invalid Request",
                "One or more parameters to your request was invalid.",
                PROBLEMS + "invalid-request",
                errors=[
                    {
                        "parameters": {"username": [name]},
                        "message": f"The `username` query parameter value [{name}] does not match ^[A-Za-z0-9_]{{1,15}}$",
                    }
                ],
            )
        user = self.user_named(name)
        if user is None:
            return 200, {"errors": [_not_found("user", "username", name, f"Could not find user with username: [{name}].")]}
        return 200, {"data": self._public_user(user, _fields(request, "user.fields"))}

    def _user_by_id(self, request: web.Request, args: dict[str, str], _body: Any, _auth: str) -> tuple[int, dict[str, Any]]:
        user = self.users.get(args["id"])
        if user is None:
            return 200, {"errors": [_not_found("user", "id", args["id"], f"Could not find user with id: [{args['id']}].")]}
        return 200, {"data": self._public_user(user, _fields(request, "user.fields"))}

    def _users_me(self, request: web.Request, _args: Any, _body: Any, _auth: str) -> tuple[int, dict[str, Any]]:
        return 200, {"data": self._public_user(self.me, _fields(request, "user.fields"))}

    def _page(
        self, request: web.Request, tweets: list[dict[str, Any]], lo: int, hi: int, default: int, token: str
    ) -> dict[str, Any]:
        q = request.query
        max_results = _int_param(q, "max_results", default, lo, hi)
        since, until = q.get("since_id"), q.get("until_id")
        tweets = sorted(tweets, key=lambda t: int(t["id"]), reverse=True)
        if since:
            tweets = [t for t in tweets if int(t["id"]) > int(since)]
        if until:
            tweets = [t for t in tweets if int(t["id"]) < int(until)]
        start = 0
        if q.get(token):
            try:
                start = int(base64.urlsafe_b64decode(q[token].encode()).decode())
            except ValueError:
                raise Problem(
                    400, "Invalid Request", f"The `{token}` query parameter value is invalid.", PROBLEMS + "invalid-request"
                ) from None
        page = tweets[start : start + max_results]
        if not page:
            return {"meta": {"result_count": 0}}
        out: dict[str, Any] = {"data": [self._render(t, request) for t in page]}
        for t in page:
            self.served[t["id"]] = self.served.get(t["id"], 0) + 1
        meta: dict[str, Any] = {"result_count": len(page), "newest_id": page[0]["id"], "oldest_id": page[-1]["id"]}
        if start + max_results < len(tweets):
            meta["next_token"] = base64.urlsafe_b64encode(str(start + max_results).encode()).decode()
        includes = self._includes(page, request)
        if includes:
            out["includes"] = includes
        out["meta"] = meta
        return out

    def _render(self, tweet: dict[str, Any], request: web.Request) -> dict[str, Any]:
        fields = _fields(request, "tweet.fields")
        out = {"id": tweet["id"], "text": tweet["text"], "edit_history_tweet_ids": [tweet["id"]]}
        for name in (
            "author_id",
            "created_at",
            "conversation_id",
            "entities",
            "attachments",
            "referenced_tweets",
            "in_reply_to_user_id",
        ):
            if name in fields and name in tweet:
                out[name] = tweet[name]
        expansions = _fields(request, "expansions")
        if "attachments.media_keys" in expansions and "attachments" in tweet:
            out["attachments"] = tweet["attachments"]
        if "referenced_tweets.id" in expansions and "referenced_tweets" in tweet:
            out["referenced_tweets"] = tweet["referenced_tweets"]
        if "author_id" in expansions:
            out["author_id"] = tweet["author_id"]
        return out

    def _includes(self, page: list[dict[str, Any]], request: web.Request) -> dict[str, Any]:
        expansions = _fields(request, "expansions")
        users: dict[str, dict[str, Any]] = {}
        tweets: dict[str, dict[str, Any]] = {}
        media: dict[str, dict[str, Any]] = {}
        user_fields = _fields(request, "user.fields")
        for t in page:
            if "author_id" in expansions:
                users[t["author_id"]] = self._public_user(self.users[t["author_id"]], user_fields)
            if "referenced_tweets.id" in expansions:
                for ref in t.get("referenced_tweets", []):
                    if ref["id"] in self.tweets:
                        tweets[ref["id"]] = self._render(self.tweets[ref["id"]], request)
                        if "referenced_tweets.id.author_id" in expansions:
                            a = self.tweets[ref["id"]]["author_id"]
                            users[a] = self._public_user(self.users[a], user_fields)
            if "attachments.media_keys" in expansions:
                media_fields = _fields(request, "media.fields")
                for key in t.get("attachments", {}).get("media_keys", []):
                    m = self.media[key]
                    media[key] = {
                        "media_key": key,
                        "type": m.get("type", "photo"),
                        **{k: v for k, v in m.items() if k in media_fields},
                    }
        out: dict[str, Any] = {}
        if users:
            out["users"] = list(users.values())
        if tweets:
            out["tweets"] = list(tweets.values())
        if media:
            out["media"] = list(media.values())
        return out

    def _timeline(self, request: web.Request, args: dict[str, str], _body: Any, _auth: str) -> tuple[int, dict[str, Any]]:
        uid = args["id"]
        if uid not in self.users:
            return 200, {"errors": [_not_found("user", "id", uid, f"Could not find user with id: [{uid}].")]}
        exclude = _fields(request, "exclude")
        if exclude - {"replies", "retweets"}:
            raise Problem(
                400,
                "Invalid Request",
                f"The `exclude` query parameter value [{','.join(sorted(exclude))}] is not one of [replies,retweets]",
                PROBLEMS + "invalid-request",
            )
        self.timeline_reads[uid] = self.timeline_reads.get(uid, 0) + 1
        tweets = [t for t in self.tweets.values() if t["author_id"] == uid]
        if "replies" in exclude:
            tweets = [t for t in tweets if not any(r["type"] == "replied_to" for r in t.get("referenced_tweets", []))]
        if "retweets" in exclude:
            tweets = [t for t in tweets if not any(r["type"] == "retweeted" for r in t.get("referenced_tweets", []))]
        return 200, self._page(request, tweets, 5, 100, 10, "pagination_token")

    def _mentions(self, request: web.Request, args: dict[str, str], _body: Any, _auth: str) -> tuple[int, dict[str, Any]]:
        uid = args["id"]
        tweets = [t for t in self.tweets.values() if any(m["id"] == uid for m in t.get("entities", {}).get("mentions", []))]
        return 200, self._page(request, tweets, 5, 100, 10, "pagination_token")

    def _search(self, request: web.Request, _args: Any, _body: Any, _auth: str) -> tuple[int, dict[str, Any]]:
        query = request.query.get("query", "")
        if not query:
            raise Problem(400, "Invalid Request", "The `query` query parameter can not be empty", PROBLEMS + "invalid-request")
        if len(query) > 512:
            raise Problem(
                400,
                "Invalid Request",
                "The `query` query parameter value must be 512 characters or fewer",
                PROBLEMS + "invalid-request",
            )
        horizon = self.clock() - SEARCH_DAYS * 86400
        match = _query_matcher(query, self.users)
        tweets = [
            t
            for t in self.tweets.values()
            if t["_at"] >= horizon and not any(r["type"] == "retweeted" for r in t.get("referenced_tweets", [])) and match(t)
        ]
        return 200, self._page(request, tweets, 10, 100, 10, "next_token")

    def _create_post(self, _request: web.Request, _args: Any, body: dict[str, Any], _auth: str) -> tuple[int, dict[str, Any]]:
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise Problem(
                400, "Invalid Request", "One or more parameters to your request was invalid.", PROBLEMS + "invalid-request"
            )
        quote_id = body.get("quote_tweet_id")
        if quote_id and not self.enterprise:
            raise Problem(
                403,
                "Forbidden",
                "Quote posts are not available to self-serve apps; they are included with Enterprise access.",
                "about:blank",
            )
        reply_to = (body.get("reply") or {}).get("in_reply_to_tweet_id")
        if reply_to:
            parent = self.tweets.get(str(reply_to))
            if parent is None:
                raise Problem(400, "Invalid Request", "Invalid 'in_reply_to_tweet_id' parameter.", PROBLEMS + "invalid-request")
            if not self.enterprise and not self._summoned(parent):
                raise Problem(
                    403,
                    "Forbidden",
                    "Reply to this conversation is not allowed because you have not been mentioned or otherwise engaged "
                    "by the author of the post you are replying to.",
                    "about:blank",
                )
        tweet = self.post(
            self.me, text, reply_to=str(reply_to) if reply_to else None, quote_of=str(quote_id) if quote_id else None
        )
        self.created.append(tweet)
        kind = "post_create_url" if _URL.search(text) else "reply_create" if reply_to else "post_create"
        return 201, {"data": {"id": tweet["id"], "text": tweet["text"], "edit_history_tweet_ids": [tweet["id"]]}, "_kind": kind}

    def _summoned(self, parent: dict[str, Any]) -> bool:
        """The 2026 rule: the parent's author mentioned the account or quoted its post."""
        if any(m["id"] == self.me["id"] for m in parent.get("entities", {}).get("mentions", [])):
            return True
        return any(
            r["type"] == "quoted" and self.tweets.get(r["id"], {}).get("author_id") == self.me["id"]
            for r in parent.get("referenced_tweets", [])
        )

    def _enterprise_only(self, request: web.Request, _args: Any, body: dict[str, Any], _auth: str) -> tuple[int, dict[str, Any]]:
        if not self.enterprise:
            raise Problem(
                403,
                "Client Forbidden",
                "This endpoint is available to Enterprise apps only.",
                PROBLEMS + "client-forbidden",
                reason="client-not-enrolled",
                required_enrollment="Enterprise",
                registration_url="https://docs.x.com/enterprise",
            )
        if request.path.endswith("/likes"):
            self.likes.append((self.me["id"], str(body.get("tweet_id"))))
            return 200, {"data": {"liked": True}}
        return 200, {"data": {"following": True, "pending_follow": False}}

    def _repost(self, _request: web.Request, _args: Any, body: dict[str, Any], _auth: str) -> tuple[int, dict[str, Any]]:
        if str(body.get("tweet_id")) not in self.tweets:
            raise Problem(400, "Invalid Request", "Invalid 'tweet_id' parameter.", PROBLEMS + "invalid-request")
        return 200, {"data": {"retweeted": True}}

    def _dm_events(self, request: web.Request, _args: Any, _body: Any, _auth: str) -> tuple[int, dict[str, Any]]:
        q = request.query
        max_results = _int_param(q, "max_results", 100, 1, 100)
        events = sorted(self.dm_events, key=lambda e: int(e["id"]), reverse=True)
        start = int(base64.urlsafe_b64decode(q["pagination_token"].encode()).decode()) if q.get("pagination_token") else 0
        page = events[start : start + max_results]
        meta: dict[str, Any] = {"result_count": len(page)}
        if start + max_results < len(events):
            meta["next_token"] = base64.urlsafe_b64encode(str(start + max_results).encode()).decode()
        return 200, ({"data": page, "meta": meta} if page else {"meta": meta})

    def _send_dm(
        self, _request: web.Request, args: dict[str, str], body: dict[str, Any], _auth: str
    ) -> tuple[int, dict[str, Any]]:
        other = args["participant_id"]
        if other not in self.users:
            raise Problem(
                400, "Invalid Request", "One or more parameters to your request was invalid.", PROBLEMS + "invalid-request"
            )
        text = body.get("text")
        if not isinstance(text, str) or not text:
            raise Problem(400, "Invalid Request", "Either text or media_id must be provided.", PROBLEMS + "invalid-request")
        conv = "-".join(sorted((other, self.me["id"])))
        event = {
            "id": self._id(),
            "event_type": "MessageCreate",
            "text": text,
            "sender_id": self.me["id"],
            "dm_conversation_id": conv,
        }
        self.sent_dms.append({**event, "to": other})
        return 201, {"data": {"dm_conversation_id": conv, "dm_event_id": event["id"]}}

    # --- filtered stream ---------------------------------------------------------------

    def drop_stream(self) -> None:
        """Close the stream connection as X does for operational reasons; what is posted until
        the client reconnects is not delivered on the stream (no backfill on pay-per-use)."""
        if self._stream_queue is not None:
            self._stream_queue.put_nowait(None)

    def stream_raw(self, line: bytes) -> None:
        """Write ``line`` on the open stream as is (a broken or hostile message)."""
        if self._stream_queue is not None:
            self._stream_queue.put_nowait({"_raw": line})

    @property
    def stream_connected(self) -> bool:
        return self._stream_queue is not None

    def _get_rules(self, _request: web.Request, _args: Any, _body: Any, _auth: str) -> tuple[int, dict[str, Any]]:
        rules = list(self.stream_rules.values())
        meta = {"sent": _iso(self.clock()), "result_count": len(rules)}
        return 200, ({"data": rules, "meta": meta} if rules else {"meta": meta})

    def _change_rules(self, _request: web.Request, _args: Any, body: dict[str, Any], _auth: str) -> tuple[int, dict[str, Any]]:
        """``{"add": [{"value", "tag"}]}`` or ``{"delete": {"ids": [...]}}``, as
        POST /2/tweets/search/stream/rules takes them."""
        if "delete" in body:
            ids = [str(i) for i in (body.get("delete") or {}).get("ids") or []]
            gone = [i for i in ids if self.stream_rules.pop(i, None) is not None]
            summary = {"deleted": len(gone), "not_deleted": len(ids) - len(gone)}
            return 200, {"meta": {"sent": _iso(self.clock()), "summary": summary}}
        add = body.get("add")
        if not isinstance(add, list) or not add:
            raise Problem(
                400, "Invalid Request", "One or more parameters to your request was invalid.", PROBLEMS + "invalid-request"
            )
        for rule in add:
            value = str((rule or {}).get("value") or "")
            if not value or len(value) > STREAM_RULE_LENGTH:
                raise Problem(
                    400,
                    "Invalid Request",
                    f"Rule value must be 1 to {STREAM_RULE_LENGTH} characters.",
                    PROBLEMS + "invalid-request",
                )
        if len(self.stream_rules) + len(add) > STREAM_RULES:
            raise Problem(
                403,
                "RulesCapExceeded",
                f"Rule cap of {STREAM_RULES} reached.",
                PROBLEMS + "rule-cap",
            )
        made, errors = [], []
        held = {r["value"] for r in self.stream_rules.values()}
        for rule in add:
            value = str(rule["value"])
            if value in self.refused_rules:  # e.g. an operator the plan's stream does not take
                errors.append({"value": value, "title": self.refused_rules[value], "type": PROBLEMS + "invalid-rules"})
                continue
            if value in held:  # X refuses a rule whose value it already holds, with a 200
                errors.append(
                    {
                        "value": value,
                        "id": next(i for i, r in self.stream_rules.items() if r["value"] == value),
                        "title": "DuplicateRule",
                        "type": PROBLEMS + "duplicate-rules",
                    }
                )
                continue
            rid = self._id()
            made.append({"id": rid, "value": value, "tag": str(rule.get("tag") or "")})
            self.stream_rules[rid] = made[-1]
            held.add(value)
        summary = {"created": len(made), "not_created": len(errors), "valid": len(made), "invalid": len(errors)}
        out: dict[str, Any] = {"meta": {"sent": _iso(self.clock()), "summary": summary}}
        if made:
            out["data"] = made
        if errors:
            out["errors"] = errors
        return (201 if made else 200), out

    async def _stream(self, request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
        """One connection at a time; each new post that matches a rule is written as one JSON
        line with ``matching_rules``, a blank line every ``heartbeat`` seconds otherwise."""
        if self._stream_queue is not None:
            body = {
                "title": "ConnectionException",
                "detail": "This stream is currently at the maximum allowed connection limit.",
                "connection_issue": "TooManyConnections",
                "type": PROBLEMS + "streaming-connection",
            }
            return web.json_response(body, status=429, headers=headers)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._stream_queue = queue
        self.stream_connections += 1
        response = web.StreamResponse(status=200, headers={**headers, "Content-Type": "application/json"})
        try:
            await response.prepare(request)
            while True:
                try:
                    tweet = await asyncio.wait_for(queue.get(), self.heartbeat)
                except TimeoutError:
                    await response.write(b"\r\n")
                    continue
                if tweet is None:
                    break
                if "_raw" in tweet:
                    await response.write(tweet["_raw"] + b"\r\n")
                    continue
                matched = [
                    {"id": r["id"], "tag": r["tag"]}
                    for r in list(self.stream_rules.values())
                    if _query_matcher(r["value"], self.users)(tweet)
                ]
                if not matched:
                    continue
                payload: dict[str, Any] = {"data": self._render(tweet, request)}
                includes = self._includes([tweet], request)
                if includes:
                    payload["includes"] = includes
                self._bill(STREAM, "", payload, request)
                payload["matching_rules"] = matched
                self.stream_delivered.append(tweet["id"])
                await response.write(json.dumps(payload).encode() + b"\r\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            if self._stream_queue is queue:
                self._stream_queue = None
        return response


def _with_headers(problem: Problem, headers: dict[str, str]) -> Problem:
    problem.headers = headers  # type: ignore[attr-defined]
    return problem


def _not_found(rtype: str, parameter: str, value: str, detail: str) -> dict[str, Any]:
    return {
        "value": value,
        "detail": detail,
        "title": "Not Found Error",
        "resource_type": rtype,
        "parameter": parameter,
        "resource_id": value,
        "type": PROBLEMS + "resource-not-found",
    }


def _fields(request: web.Request, name: str) -> set[str]:
    return {f for f in request.query.get(name, "").split(",") if f}


def _int_param(q: Any, name: str, default: int, lo: int, hi: int) -> int:
    if name not in q:
        return default
    try:
        value = int(q[name])
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise Problem(
            400,
            "Invalid Request",
            f"The `{name}` query parameter value [{q[name]}] is not between {lo} and {hi}",
            PROBLEMS + "invalid-request",
        )
    return value


def _query_matcher(query: str, users: dict[str, dict[str, Any]]) -> Callable[[dict[str, Any]], bool]:
    """Terms ANDed: words and "phrases" (case-insensitive), ``from:user``, ``-term``, a
    parenthesised group of terms joined by ``OR`` (any of them), ``is:reply`` and
    ``is:retweet``; the other ``is:``, ``has:`` and ``lang:`` operators are accepted and not
    modelled."""
    tokens = re.findall(r'-?\([^)]*\)|-?"[^"]*"|\S+', query)

    def term(t: dict[str, Any], token: str) -> bool | None:
        token = token.lower()
        kinds = {r["type"] for r in t.get("referenced_tweets", [])}
        if token == "is:reply":
            return "replied_to" in kinds
        if token in ("is:retweet", "is:repost"):
            return "retweeted" in kinds
        if token.startswith(("is:", "has:", "lang:")):
            return None
        if token.startswith("from:"):
            return users[t["author_id"]]["username"].lower() == token[5:]
        return token.strip('"') in t["text"].lower()

    def match(t: dict[str, Any]) -> bool:
        for token in tokens:
            neg = token.startswith("-")
            token = token.removeprefix("-")
            if token.startswith("("):
                # Alternatives joined by OR, each a run of ANDed terms.
                inner = re.findall(r'"[^"]*"|\S+', token[1:-1])
                alternatives, run = [], []
                for o in inner:
                    if o == "OR":
                        alternatives.append(run)
                        run = []
                    else:
                        run.append(o)
                alternatives.append(run)
                hit: bool | None = any(
                    all(
                        term(t, o.removeprefix("-")) != o.startswith("-") for o in alt if term(t, o.removeprefix("-")) is not None
                    )
                    for alt in alternatives
                    if alt
                )
            else:
                hit = term(t, token)
            if hit is None:
                continue
            if hit == neg:
                return False
        return True

    return match


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")
