"""The X adapter's one request path: every call to X API v2 goes through ``XApi``.

On aiohttp, with the base URL from config (``[x] api_url``; tests point it at the emulator).
Per call it:

* authenticates app-only (``Authorization: Bearer``) or as the team account (OAuth 1.0a
  HMAC-SHA1, signed afresh per attempt, ``adapters.x.oauth1``); the query string is sent
  byte for byte as it was signed;
* reserves the request's worst-case cost in the ``Ledger`` first, so a read or write that
  could cross ``monthly_budget_usd`` is refused (``BudgetExceeded``) before anything is sent;
  after a success it settles what the response held (each Post, User, media object and DM
  event in ``data`` and ``includes``, once per resource per UTC day; the account's own
  timeline and mentions as owned reads; each write at its price), after a failure it
  releases the reservation (X bills only successful responses);
* honours ``x-rate-limit-limit``/``-remaining``/``-reset`` per endpoint and auth (X counts
  limits per endpoint, per app or per user, https://docs.x.com/x-api/fundamentals/rate-limits):
  when the window is nearly spent it spreads the remaining requests over what is left of it,
  when spent it waits for the reset; a 429 blocks the endpoint until ``x-rate-limit-reset``
  and the call waits and retries when that is within ``max_wait``, else raises RateLimited;
* retries reads on 5xx, timeouts and dropped connections with exponential backoff and jitter;
  a write is not retried (it may have happened) except after a 429, which X did not act on;
* maps failures into ``bridge.errors`` with X's reason in one line (problem JSON ``title``,
  ``detail``, ``type``, ``reason``, https://docs.x.com/x-api/fundamentals/response-codes-and-errors):
  401 → AuthFailed, 403 → Permanent (an app not enrolled for the endpoint, the 2026 reply
  rule, ...), 404 or a lookup answered with only ``resource-not-found`` errors → NotFound,
  429 → RateLimited, 5xx/timeouts → Transient;
* logs the route template, status and remaining budget, never a token, key or signature.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from adapters.x.cost import Ledger, Reservation, worst_case
from adapters.x.oauth1 import Credentials, authorization, encode, percent
from adapters.x.text import has_url
from bridge.errors import AuthFailed, BridgeError, NotFound, Permanent, RateLimited, Transient

log = logging.getLogger("bridge.adapters.x")

READ_ATTEMPTS = 3
RATE_LIMIT_RETRIES = 3
PACE_BELOW = 0.1  # start spreading requests when less than this share of the window is left

# What a read returns, for billing: the kind of its ``data`` and how many it can hold.
READS: dict[str, tuple[str, int]] = {
    "/2/users/by/username/:username": ("user_read", 1),
    "/2/users/:id": ("user_read", 1),
    "/2/users/me": ("user_read", 1),
    "/2/tweets/:id": ("post_read", 1),
    "/2/users/:id/tweets": ("post_read", 10),  # default max_results
    "/2/users/:id/mentions": ("post_read", 10),
    "/2/tweets/search/recent": ("post_read", 10),
    "/2/dm_events": ("dm_event_read", 100),
}
# The account's own data, billed as Owned Reads since 2026-04-20 (https://docs.x.com/changelog).
OWNED = frozenset({"/2/users/:id/tweets", "/2/users/:id/mentions"})
WRITES: dict[str, str] = {
    "/2/dm_conversations/with/:participant_id/messages": "dm_create",
    "/2/users/:id/retweets": "interaction_create",
    "/2/users/:id/likes": "interaction_create",
    "/2/users/:id/following": "interaction_create",
}

# Filtered-stream rules are not billable resources (X bills the Posts a stream delivers, each
# as a Post read: https://docs.x.com/x-api/fundamentals/post-cap).
FREE = frozenset({"/2/tweets/search/stream/rules"})
STREAM_READ_TIMEOUT = 30.0  # X sends a keep-alive line every 20 s; silence past this is a dead stream


class StreamDropped(Transient):
    """An established or attempted stream connection failed at the network level (dropped,
    silent past the keep-alive, refused by the socket): X's docs ask for a linear backoff."""


REPLY_RULE = "self-serve X apps may reply only to posts whose author mentioned or quoted this account"


@dataclass
class Bucket:
    """One endpoint's rate-limit window as X last reported it."""

    limit: int | None = None
    remaining: int | None = None
    reset: float = 0.0  # epoch seconds
    lock: asyncio.Lock | None = None

    def observe(self, headers: Mapping[str, str]) -> None:
        limit, remaining, reset = (_int(headers.get(f"x-rate-limit-{n}")) for n in ("limit", "remaining", "reset"))
        if remaining is None or reset is None:
            return
        self.limit, self.remaining, self.reset = limit, remaining, float(reset)

    def block(self, reset: float) -> None:
        self.remaining, self.reset = 0, max(self.reset, reset)

    def wait_needed(self, now: float) -> float:
        if self.remaining is None or now >= self.reset:
            return 0.0
        if self.remaining <= 0:
            return self.reset - now
        if self.limit and self.remaining <= max(1, self.limit * PACE_BELOW):
            return (self.reset - now) / (self.remaining + 1)
        return 0.0


class XApi:
    """Calls X API v2 by route template (``"/2/users/:id/tweets"``) with path ``args``.

    ``user=True`` signs as the team account (OAuth 1.0a; posts, replies, DMs and its own
    timelines need it); otherwise the app's bearer token is used. Returns the decoded JSON
    body. Raises BudgetExceeded (nothing sent), RateLimited, Transient, NotFound, Permanent
    or AuthFailed.
    """

    def __init__(
        self,
        *,
        api_url: str,
        ledger: Ledger,
        bearer_token: str = "",
        credentials: Credentials | None = None,
        account_id: str = "",
        timeout: float = 20.0,
        max_wait: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        count: Callable[[str, int | str], None] | None = None,
    ) -> None:
        self.base = api_url.rstrip("/")
        self._count = count  # host.count_request: ("GET /2/users/:id/tweets", status), for /metrics
        self.ledger = ledger
        self.bearer_token = bearer_token
        self.credentials = credentials
        self.account_id = account_id  # the team account's id, once known: its own reads are owned reads
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(10.0, timeout))
        self.max_wait = max_wait
        self._sleep = sleep
        self._clock = clock
        self._buckets: dict[tuple[str, str, bool], Bucket] = {}
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def bucket(self, method: str, route: str, user: bool) -> Bucket:
        key = (method, route, user)
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = Bucket(lock=asyncio.Lock())
        return b

    async def get(
        self, route: str, *, args: Mapping[str, str] | None = None, params: Mapping[str, Any] | None = None, user: bool = False
    ) -> dict[str, Any]:
        """A read (retried on transient failures)."""
        return await self._call("GET", route, args or {}, params or {}, None, user)

    async def post(
        self, route: str, body: Mapping[str, Any], *, args: Mapping[str, str] | None = None, user: bool = True
    ) -> dict[str, Any]:
        """A write with a JSON body (not retried after a transient failure: it may have happened)."""
        return await self._call("POST", route, args or {}, {}, dict(body), user)

    # --- the one path --------------------------------------------------------------------

    async def stream(
        self,
        route: str,
        params: Mapping[str, Any],
        on_line: Callable[[bytes], Awaitable[None]],
        *,
        on_open: Callable[[], Awaitable[None]] | None = None,
        read_timeout: float = STREAM_READ_TIMEOUT,
    ) -> None:
        """Hold a streaming connection (app-only auth) and hand each non-blank line to
        ``on_line`` until it ends; it always ends in an error: StreamDropped when the connection
        closes, drops or stays silent longer than ``read_timeout`` (X sends a keep-alive line
        every 20 s,
        https://docs.x.com/x-api/fundamentals/handling-disconnections); RateLimited, AuthFailed,
        Permanent or Transient when X refuses the connection; whatever ``on_line`` raises.
        Billing is the caller's: each line may hold a Post. ``on_open`` is awaited once X accepted the
        connection (before the first line)."""
        url = self._url(route, {}, params)
        what = f"GET {route}"
        bucket = self.bucket("GET", route, False)
        await self._pace(bucket, what)
        headers = {"Authorization": self._auth("GET", url, False)}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=read_timeout)
        try:
            session = self._session or await self._open()
            async with session.get(URL(url, encoded=True), headers=headers, timeout=timeout) as response:
                bucket.observe(response.headers)
                if response.status != 200:
                    payload = _json(await response.text())
                    if response.status == 429:
                        reset = _int(response.headers.get("x-rate-limit-reset"))
                        wait = max((float(reset) - self._clock()) if reset is not None else 60.0, 0.0)
                        raise RateLimited(
                            wait, scope=f"x:{what}", message=f"{what}: X refused the connection ({reason(payload)})"
                        )
                    raise map_error(response.status, payload, what)
                log.info("stream connected route=%s", what)
                if on_open is not None:
                    await on_open()
                async for line in response.content:
                    if line.strip():
                        await on_line(line)
        except (TimeoutError, aiohttp.ClientError) as e:
            raise StreamDropped(f"{what}: the stream dropped ({type(e).__name__})") from e
        raise StreamDropped(f"{what}: X closed the stream")

    def _estimate(
        self, method: str, route: str, args: Mapping[str, str], params: Mapping[str, Any], body: dict[str, Any] | None
    ) -> tuple[str, int, bool]:
        """(kind, worst-case micro-dollars, owned) of a request."""
        prices = self.ledger.prices
        if route in FREE:
            return "free", 0, False
        if method == "GET":
            kind, default = READS.get(route, ("post_read", 100))
            owned = route in OWNED and bool(self.account_id) and args.get("id") == self.account_id
            if owned:
                kind = "owned_read"
            count = _int(params.get("max_results")) or default
            return kind, worst_case(prices, kind, count, str(params.get("expansions", ""))), owned
        if route == "/2/tweets":
            text = str((body or {}).get("text", ""))
            kind = "post_create_url" if has_url(text) else "reply_create" if (body or {}).get("reply") else "post_create"
        else:
            kind = WRITES.get(route, "interaction_create")
        return kind, prices[kind], False

    def _url(self, route: str, args: Mapping[str, str], params: Mapping[str, Any]) -> str:
        path = "/".join(percent(str(args[seg[1:]])) if seg.startswith(":") else seg for seg in route.split("/"))
        query = encode({k: _param(v) for k, v in params.items() if v is not None})
        return f"{self.base}{path}{'?' + query if query else ''}"

    def _auth(self, method: str, url: str, user: bool) -> str:
        if user:
            if self.credentials is None:
                raise AuthFailed(
                    "[x] consumer_key, consumer_secret, access_token and access_token_secret are needed to act as the team account"
                )
            return authorization(self.credentials, method, url)
        if not self.bearer_token:
            raise AuthFailed("[x] bearer_token is needed to read from X")
        return f"Bearer {self.bearer_token}"

    async def _call(
        self, method: str, route: str, args: Mapping[str, str], params: Mapping[str, Any], body: dict[str, Any] | None, user: bool
    ) -> dict[str, Any]:
        kind, worst, owned = self._estimate(method, route, args, params, body)
        what = f"{method} {route}"
        reservation = self.ledger.reserve(worst, what)  # BudgetExceeded: nothing is sent
        try:
            payload = await self._send(method, route, args, params, body, user)
        except BaseException:
            self.ledger.release(reservation)
            raise
        await self._settle(reservation, method, kind, owned, payload)
        return payload

    async def _settle(self, reservation: Reservation, method: str, kind: str, owned: bool, payload: dict[str, Any]) -> None:
        charges: list[tuple[str, str | None]]
        if kind == "free":
            charges = []
        elif method == "GET":
            charges = list(billable(kind, payload))
        else:
            charges = [(kind, None)]
        charged = await self.ledger.settle(reservation, charges)
        if charged:
            log.debug("billed route=%s micro_usd=%d resources=%d", reservation.what, charged, len(charges))

    async def _send(
        self, method: str, route: str, args: Mapping[str, str], params: Mapping[str, Any], body: dict[str, Any] | None, user: bool
    ) -> dict[str, Any]:
        url = self._url(route, args, params)
        what = f"{method} {route}"
        bucket = self.bucket(method, route, user)
        data = json.dumps(body).encode() if body is not None else None
        attempt = limited = 0
        while True:
            attempt += 1
            await self._pace(bucket, what)
            headers = {"Authorization": self._auth(method, url, user)}
            if data is not None:
                headers["Content-Type"] = "application/json"
            try:
                session = self._session or await self._open()
                async with session.request(
                    method, URL(url, encoded=True), data=data, headers=headers, timeout=self.timeout
                ) as response:
                    status = response.status
                    self._counted(what, status)
                    bucket.observe(response.headers)
                    reset = _int(response.headers.get("x-rate-limit-reset"))
                    text = await response.text()
            except (TimeoutError, aiohttp.ClientError) as e:
                self._counted(what, "error")
                err: BridgeError = Transient(f"{what}: could not reach X ({type(e).__name__})")
                if method == "GET" and attempt < READ_ATTEMPTS:
                    await self._backoff(what, attempt, err)
                    continue
                raise err from e
            payload = _json(text)
            if status == 429:
                wait = (float(reset) if reset is not None else self._clock() + 60.0) - self._clock()
                bucket.block(self._clock() + max(wait, 0.0))
                limited += 1
                log.info("rate limited route=%s reset_in=%.1fs", what, wait)
                if wait <= self.max_wait and limited <= RATE_LIMIT_RETRIES:
                    continue  # _pace waits for the reset
                raise RateLimited(
                    max(wait, 0.0), scope=f"x:{what}", message=f"{what}: X rate limit spent; it resets in {max(wait, 0):.0f}s"
                )
            if 200 <= status < 300:
                log.debug("ok route=%s status=%d remaining=%s", what, status, bucket.remaining)
                if method == "GET" and "data" not in payload and payload.get("errors"):
                    raise lookup_error(what, payload)
                return payload
            err = map_error(status, payload, what)
            log.info("failed route=%s status=%d error=%s", what, status, _one_line(str(err)))
            if isinstance(err, Transient) and method == "GET" and attempt < READ_ATTEMPTS:
                await self._backoff(what, attempt, err)
                continue
            raise err

    def _counted(self, what: str, status: int | str) -> None:
        """Count one request by its route template (never a URL: ids and queries stay out)."""
        if self._count is not None:
            try:
                self._count(what, status)
            except Exception:  # metrics must never break a request
                log.debug("request count failed", exc_info=True)

    async def _open(self) -> aiohttp.ClientSession:
        self._session = aiohttp.ClientSession()
        return self._session

    async def _pace(self, bucket: Bucket, what: str) -> None:
        assert bucket.lock is not None
        async with bucket.lock:
            wait = bucket.wait_needed(self._clock())
            if wait > self.max_wait:
                raise RateLimited(wait, scope=f"x:{what}", message=f"{what}: X rate limit spent; it resets in {wait:.0f}s")
            if wait > 0:
                log.info("pacing route=%s wait=%.2fs remaining=%s", what, wait, bucket.remaining)
                await self._sleep(wait)
            if bucket.remaining is not None and self._clock() < bucket.reset:
                bucket.remaining -= 1  # count our own request before X's answer says so
            elif bucket.remaining is not None:
                bucket.remaining = None  # a new window: X's next answer tells its size

    async def _backoff(self, what: str, attempt: int, err: BridgeError) -> None:
        delay = min(8.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random())
        log.info("transient failure, retrying route=%s attempt=%d in=%.2fs reason=%s", what, attempt, delay, _one_line(str(err)))
        await self._sleep(delay)


def billable(kind: str, payload: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """(kind, id) of every resource a read response holds: ``data`` as ``kind``, and
    ``includes`` by type (Posts, Users, media). X bills each once per UTC day."""
    data = payload.get("data")
    items = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
    for item in items:
        if isinstance(item, dict) and item.get("id"):
            yield kind, str(item["id"])
    includes = payload.get("includes")
    if not isinstance(includes, dict):
        return
    for name, ikind, idkey in (("tweets", "post_read", "id"), ("users", "user_read", "id"), ("media", "media_read", "media_key")):
        for item in includes.get(name) or []:
            if isinstance(item, dict) and item.get(idkey):
                yield ikind, str(item[idkey])


def reason(payload: Mapping[str, Any]) -> str:
    """X's reason for a failure, in one line: ``detail`` (or ``title``) of the problem, with
    its ``reason``; or the first entry of ``errors``."""
    parts = []
    detail = payload.get("detail") or payload.get("title")
    if detail:
        parts.append(str(detail))
    if payload.get("reason"):
        parts.append(f"[{payload['reason']}]")
    if not parts:
        errors = payload.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            parts.append(str(first.get("detail") or first.get("message") or first.get("title") or ""))
    return _one_line(" ".join(p for p in parts if p)) or "no reason given"


def map_error(status: int, payload: Mapping[str, Any], what: str) -> BridgeError:
    """The bridge error for X's answer ``status`` with problem body ``payload``."""
    why = reason(payload)
    ptype = str(payload.get("type", ""))
    if status == 401:
        return AuthFailed(f"{what}: X refused our credentials ({why}); check the [x] keys in the X Developer Console")
    if status == 402:
        return Permanent(
            f"{what}: X refused for billing ({why}); add credits or raise the spending limit in the X Developer Console"
        )
    if status == 403:
        if payload.get("reason") == "client-not-enrolled" or ptype.endswith("/client-forbidden"):
            return Permanent(f"{what}: X refused: this app's access level does not include it ({why})")
        if "not been mentioned" in why or ("not allowed" in why.lower() and "repl" in why.lower()):
            return Permanent(f"X refused the reply: {REPLY_RULE} ({why})")
        return Permanent(f"{what}: X refused ({why})")
    if status == 404 or ptype.endswith("/resource-not-found"):
        return NotFound(f"{what}: {why}")
    if status == 429:
        return RateLimited(60.0, scope="x", message=f"{what}: rate limited by X ({why})")
    if status >= 500 or status == 408:
        return Transient(f"{what}: X answered {status} ({why})")
    return Permanent(f"{what}: X answered {status} ({why})")


def lookup_error(what: str, payload: Mapping[str, Any]) -> BridgeError:
    """A 200 with only ``errors``: the looked-up user or post does not exist (or is hidden)."""
    errors = payload.get("errors") or []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    if str(first.get("type", "")).endswith("/resource-not-found"):
        return NotFound(f"{what}: {reason(payload)}")
    return Permanent(f"{what}: {reason(payload)}")


def _param(value: Any) -> str:
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(v) for v in value)
    return str(value)


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {"detail": _one_line(text[:200])}
    return value if isinstance(value, dict) else {}


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
