"""The Mastodon adapter's one request path: aiohttp straight on the client API (no maintained
asyncio Mastodon client exists; Mastodon.py is synchronous), with the server's rate limits
honoured and every failure mapped into ``bridge.errors``.

Every call goes through ``MastodonHttp.request`` (``get``/``get_page``/``post``/``delete``
are its shapes), which:

* sends ``Authorization: Bearer <token>`` and never logs it: log lines carry the method, the
  path and the status, never headers, and no error message includes them;
* reads ``X-RateLimit-Limit/Remaining/Reset`` of every answer (Mastodon: 300 requests per 5
  minutes per account by default; the reset is an ISO 8601 timestamp — docs: api/rate-limits)
  and paces itself *before* the budget runs out: below half the budget the requests are spread
  evenly over what is left of the window, and the last ``reserve`` requests of a window are
  kept for writes (a person's reply must not queue behind polling);
* on 429 waits until the reset and tries again when that is within ``max_wait``, else raises
  ``RateLimited`` with the seconds to the reset (a 429 is refused before the server acts, so
  a write is safe to repeat);
* retries 5xx, timeouts and dropped connections with exponential backoff and jitter — reads
  always, writes only when they carry an ``Idempotency-Key`` (the server answers a repeated key
  with the status it already made), since a write that timed out may have happened;
* maps 401 → ``AuthFailed``, 403 "outside the authorized scopes" → ``MissingScope`` (an
  ``AuthFailed`` that names the scope and how to grant it), other 403 → ``Permanent``, 404 and
  410 → ``NotFound``, 422 → ``Permanent`` with the server's ``error`` text;
* parses the ``Link`` header into the query of the next and previous pages, never following
  a link to another host (the token must only ever go to the configured server).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from multidict import CIMultiDict

from bridge.errors import AuthFailed, BridgeError, NotFound, Permanent, RateLimited, Transient

log = logging.getLogger("bridge.adapters.mastodon")

# Requests that fail for a transient reason are tried this many times in all.
ATTEMPTS = 3
# Mastodon: "* /api/*  Account access  5 minutes  300" (docs: api/rate-limits).
DEFAULT_LIMIT = 300
DEFAULT_WINDOW = 300.0
SCOPE_ERROR = "outside the authorized scopes"
# No page of the client API comes near this (40 statuses with their accounts: ~200 KiB).
MAX_BODY = 8 * 2**20

Params = Sequence[tuple[str, str]] | Mapping[str, Any]


class MissingScope(AuthFailed):
    """The token lacks OAuth scopes a request needs. ``scope`` names them (space-separated
    when several, as OAuth writes scopes)."""

    def __init__(self, scope: str, what: str, server: str) -> None:
        self.scope = scope
        names = scope.split()
        if names:
            tops = sorted({n.split(":", 1)[0] for n in names})
            plural = "s" if len(names) > 1 else ""
            needed = f"the scope{plural} {', '.join(names)} ({what} needs {'them' if plural else 'it'})"
            tick = f"tick {', '.join(names)} (or all of {' and '.join(tops)})"
        else:
            needed = f"a scope that {what} needs"
            tick = "tick read, write and follow"
        super().__init__(
            f"the Mastodon access token lacks {needed}; on {server} open Preferences → Development → the "
            f"bridge's application, {tick}, save, press 'Regenerate access token' and put the new token in [mastodon] access_token"
        )


@dataclass(frozen=True, slots=True)
class Response:
    """A decoded answer: ``data`` is the JSON body; ``next``/``prev`` are the query of the
    pages the ``Link`` header points to (empty when there is none)."""

    status: int
    data: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    next: tuple[tuple[str, str], ...] = ()
    prev: tuple[tuple[str, str], ...] = ()


def parse_link_header(value: str) -> dict[str, str]:
    """``rel`` → URL of an RFC 8288 ``Link`` header, as Mastodon sends it for pagination:
    ``<https://host/api/v1/...?max_id=1>; rel="next", <...?min_id=9>; rel="prev"``.
    Malformed parts are skipped; it never raises."""
    links: dict[str, str] = {}
    for part in _split_links(value or ""):
        url_part, _, params = part.partition(">")
        url_part = url_part.strip()
        if not url_part.startswith("<"):
            continue
        url = url_part[1:].strip()
        for param in _split_params(params):
            name, _, val = param.strip().partition("=")
            if name.strip().lower() == "rel":
                for rel in val.strip().strip('"').split():
                    links.setdefault(rel.lower(), url)
    return links


def _split_links(value: str) -> list[str]:
    # Commas separate links but may appear inside <...> (a URL query) or a quoted parameter;
    # split only outside both.
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(value):
        if quoted:
            quoted = ch != '"'
        elif ch == '"' and depth == 0:
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    return [p for p in parts if p.strip()]


def _split_params(params: str) -> list[str]:
    out, quoted, start = [], False, 0
    for i, ch in enumerate(params):
        if ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            out.append(params[start:i])
            start = i + 1
    out.append(params[start:])
    return out


def page_query(url: str, expected_path: str) -> tuple[tuple[str, str], ...]:
    """The query of a pagination link, when it points at ``expected_path`` (the host is not
    trusted: only the query is kept, and the next request goes to the configured server)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ()
    if parts.path.rstrip("/") != expected_path.rstrip("/"):
        return ()
    return tuple(parse_qsl(parts.query, keep_blank_values=True))


def parse_reset(value: str | None, now: float) -> float | None:
    """Epoch seconds of ``X-RateLimit-Reset``: Mastodon sends an ISO 8601 timestamp; some
    compatible servers send epoch seconds or seconds from now. None when unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    if number > 1e9:  # an epoch timestamp
        return number
    return now + max(0.0, number)  # a delta


class RateBudget:
    """What the server's ``X-RateLimit-*`` headers said last, and the pacing that follows."""

    def __init__(self, reserve: int = 10, clock: Callable[[], float] = time.time) -> None:
        self.limit: int | None = None
        self.remaining: int | None = None
        self.reset_at = 0.0  # epoch seconds
        self.blocked_until = 0.0  # after a 429
        self.reserve = reserve
        self.last_sent = 0.0
        self._clock = clock

    def observe(self, headers: Mapping[str, str]) -> None:
        limit = _int(headers.get("X-RateLimit-Limit"))
        remaining = _int(headers.get("X-RateLimit-Remaining"))
        reset = parse_reset(headers.get("X-RateLimit-Reset"), self._clock())
        if remaining is None or reset is None:
            return
        self.limit, self.remaining, self.reset_at = limit, remaining, reset

    def block(self, until: float) -> None:
        self.blocked_until = max(self.blocked_until, until)

    def delay(self, write: bool) -> float:
        """Seconds to wait before the next request (0 when it may go now). Called under the
        client's lock; it counts the request as spent, so concurrent callers pace too."""
        now = self._clock()
        if self.blocked_until > now:
            return self.blocked_until - now
        if self.remaining is None or self.reset_at <= now:
            return 0.0
        left = self.reset_at - now
        if write:  # writes are what people asked for: they may spend the reserve, unspaced
            if self.remaining <= 0:
                return left
            self.remaining -= 1
            return 0.0
        floor = min(self.reserve, (self.limit or DEFAULT_LIMIT) // 2)
        if self.remaining <= floor:
            return left  # the rest of the window is kept for writes
        wait = 0.0
        if self.limit and self.remaining < self.limit // 2:
            # spread what is left evenly over the window so it lasts until the reset
            spacing = left / max(1, self.remaining - floor)
            wait = max(0.0, self.last_sent + spacing - now)
        self.remaining -= 1
        return wait


class MastodonHttp:
    """The client API of one server for one access token.

    ``instance`` is the server's root URL (``https://mastodon.social``); paths are absolute
    (``/api/v1/...``). ``max_wait`` is how long a request may wait for the rate limit before
    it gives up with ``RateLimited`` (the caller then schedules it later).
    """

    def __init__(
        self,
        instance: str,
        token: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 20.0,
        max_wait: float = 30.0,
        reserve: int = 10,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        user_agent: str = "microblog-chat-bridge",
        count: Callable[[str, int | str], None] | None = None,
    ) -> None:
        self.instance = instance.rstrip("/")
        self.server = urlsplit(self.instance).hostname or self.instance
        self._token = token
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 10.0))
        self.max_wait = max_wait
        self.budget = RateBudget(reserve=reserve, clock=clock)
        self._sleep = sleep
        self._clock = clock
        self._lock = asyncio.Lock()
        self._user_agent = user_agent
        self.requests_sent = 0
        self._count = count  # host.count_request: (endpoint template, status)

    def __repr__(self) -> str:  # never the token
        return f"MastodonHttp({self.instance!r})"

    @property
    def auth_headers(self) -> dict[str, str]:
        """The headers that carry the token (for the streaming websocket, which goes to the
        host the instance names)."""
        return {"Authorization": f"Bearer {self._token}", "User-Agent": self._user_agent}

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()

    # --- shapes ------------------------------------------------------------------------------

    async def get(self, path: str, params: Params | None = None, *, scope: str = "") -> Any:
        """GET ``path``; the decoded JSON body."""
        return (await self.request("GET", path, params=params, scope=scope)).data

    async def get_page(self, path: str, params: Params | None = None, *, scope: str = "") -> Response:
        """GET a paginated list; ``Response.next``/``prev`` hold the query of the pages
        around it (pass them back as ``params``)."""
        return await self.request("GET", path, params=params, scope=scope)

    async def post(self, path: str, data: Mapping[str, Any] | None = None, *, idempotency_key: str = "", scope: str = "") -> Any:
        """POST ``data`` as JSON. With ``idempotency_key`` the server makes at most one status
        for it (docs: methods/statuses.md, ``Idempotency-Key``), so the write is retried on
        transient failures; without one it is tried once."""
        return (await self.request("POST", path, json_body=data or {}, idempotency_key=idempotency_key, scope=scope)).data

    async def delete(self, path: str, *, scope: str = "") -> Any:
        return (await self.request("DELETE", path, scope=scope)).data

    # --- the one path ------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json_body: Mapping[str, Any] | None = None,
        idempotency_key: str = "",
        scope: str = "",
    ) -> Response:
        """Send one API request as the class docstring describes; ``scope`` is the OAuth scope
        the route needs, named in the error when the token lacks it."""
        if not path.startswith("/"):
            raise ValueError(f"API paths are absolute: {path!r}")
        write = method != "GET"
        retry_safe = not write or bool(idempotency_key)
        what = f"{method} {path}"
        headers = dict(self.auth_headers)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        query = _query(params)
        attempt = 0
        while True:
            attempt += 1
            await self._pace(write, what)
            try:
                async with self.session().request(
                    method,
                    self.instance + path,
                    params=query or None,
                    json=dict(json_body) if json_body is not None else None,
                    headers=headers,
                    timeout=self._timeout,
                    allow_redirects=False,
                ) as resp:
                    self.requests_sent += 1
                    self._counted(method, path, resp.status)
                    self.budget.observe(resp.headers)
                    body = await _read_capped(resp)
                    status = resp.status
                    resp_headers = CIMultiDict(resp.headers)  # proxies may lower-case the names
            except (TimeoutError, aiohttp.ClientError) as exc:
                self._counted(method, path, "error")
                err: BridgeError = Transient(f"{what}: could not reach {self.server} ({type(exc).__name__})")
                if retry_safe and attempt < ATTEMPTS:
                    await self._backoff(attempt, what, err)
                    continue
                raise err from None
            if 200 <= status < 300:
                return self._ok(status, body, resp_headers, path)
            err = self._error(status, body, resp_headers, what, scope)
            if isinstance(err, RateLimited):
                if err.retry_after <= self.max_wait and attempt < ATTEMPTS:
                    log.info("rate limited, waiting request=%s seconds=%.1f", what, err.retry_after)
                    await self._sleep(err.retry_after)
                    continue
                raise err
            if type(err) is Transient and retry_safe and attempt < ATTEMPTS:
                await self._backoff(attempt, what, err)
                continue
            raise err

    def _counted(self, method: str, path: str, status: int | str) -> None:
        if self._count is not None:
            try:
                self._count(endpoint_name(method, path), status)
            except Exception:  # metrics must never break a request
                log.debug("request count failed", exc_info=True)

    async def _pace(self, write: bool, what: str) -> None:
        # The slot is reserved under the lock and waited for outside it: a write is never
        # queued behind a read that is sleeping for its slot.
        async with self._lock:
            wait = self.budget.delay(write)
            if wait > self.max_wait:
                raise RateLimited(
                    wait, scope="mastodon", message=f"{what}: the Mastodon rate limit is spent; it resets in {wait:.0f}s"
                )
            self.budget.last_sent = self._clock() + wait
        if wait > 0:
            log.debug("pacing request=%s seconds=%.2f remaining=%s", what, wait, self.budget.remaining)
            await self._sleep(wait)

    async def _backoff(self, attempt: int, what: str, err: BridgeError) -> None:
        delay = min(8.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random())
        log.info("transient failure, retrying request=%s attempt=%d in=%.2fs reason=%r", what, attempt, delay, str(err))
        await self._sleep(delay)

    def _ok(self, status: int, body: bytes, headers: Mapping[str, str], path: str) -> Response:
        data: Any = None
        if body:
            try:
                data = json.loads(body)
            except ValueError:
                raise Transient(f"{path}: {self.server} answered {status} with a body that is not JSON") from None
        links = parse_link_header(headers.get("Link", ""))
        return Response(
            status=status,
            data=data,
            headers=headers,
            next=page_query(links["next"], path) if "next" in links else (),
            prev=page_query(links["prev"], path) if "prev" in links else (),
        )

    def _error(self, status: int, body: bytes, headers: Mapping[str, str], what: str, scope: str) -> BridgeError:
        message = _error_text(body)
        detail = f" ({message})" if message else ""
        if status == 429:
            now = self._clock()
            retry_after = _float(headers.get("Retry-After"))
            reset = parse_reset(headers.get("X-RateLimit-Reset"), now)
            wait = retry_after if retry_after is not None else (reset - now if reset is not None else 60.0)
            wait = min(max(0.0, wait), 3600.0)  # a hostile reset far ahead must not park us for days
            self.budget.block(now + wait)
            return RateLimited(wait, scope="mastodon", message=f"{what}: rate limited by {self.server}; retry in {wait:.0f}s")
        if status == 401:
            return AuthFailed(
                f"{self.server} refused the Mastodon access token{detail}; create a new one under Preferences → "
                "Development and put it in [mastodon] access_token"
            )
        if status == 403 and SCOPE_ERROR in message.lower():
            return MissingScope(scope, what, self.server)
        if status in (404, 410):
            return NotFound(f"{what}: {message or 'not found'}")
        if status == 422:
            return Permanent(f"{self.server} refused it: {message or 'unprocessable'}")
        if status >= 500 or status in (408, 425):
            return Transient(f"{what}: {self.server} answered {status}{detail}")
        return Permanent(f"{what}: {self.server} answered {status}{detail}")


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    """The body, refused past MAX_BODY (a hostile or broken server must not fill memory)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_BODY:
            raise Permanent(f"{resp.method} {resp.url.path}: the answer is larger than {MAX_BODY // 2**20} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


_ROUTE_WORD = re.compile(r"[a-z_]+")


def endpoint_name(method: str, path: str) -> str:
    """The route of a request for metrics, without ids, tags or other user data:
    ``GET /api/v1/accounts/:id/statuses``, ``GET /api/v1/timelines/tag/:tag``."""
    out: list[str] = []
    for i, seg in enumerate(path.split("?", 1)[0].split("/")):
        if seg.isdigit() or (i > 0 and out[-1] == "tag"):
            out.append(":tag" if i > 0 and out[-1] == "tag" else ":id")
        elif i > 0 and out[-1] in ("accounts", "statuses", "lists", "list", "conversations", "notifications") and not _ROUTE_WORD.fullmatch(seg):
            out.append(":id")  # ids that are not numbers (GoToSocial ULIDs, Pleroma flake ids)
        else:
            out.append(seg)
    return f"{method} {'/'.join(out)}"


def _query(params: Params | None) -> list[tuple[str, str]]:
    if params is None:
        return []
    items = params.items() if isinstance(params, Mapping) else params
    out: list[tuple[str, str]] = []
    for k, v in items:
        if v is None:
            continue
        if isinstance(v, list | tuple):
            out.extend((k, _text(x)) for x in v)
        else:
            out.append((k, _text(v)))
    return out


def _text(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def _error_text(body: bytes) -> str:
    """The server's ``error`` text (Mastodon: ``{"error": "..."}``), short and one line."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    text = data.get("error")
    if not isinstance(text, str):
        return ""
    text = " ".join(text.split())
    return text[:300] + ("…" if len(text) > 300 else "")


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
