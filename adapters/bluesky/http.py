"""The Bluesky adapter's one request path: the SDK's transport with the server's rate-limit
headers honoured, and every failure mapped into ``bridge.errors``.

Every call the adapter makes goes through ``Api`` (``query``/``procedure``), which uses the
``atproto`` SDK's AsyncClient underneath (its auth headers, its session, its base URL that
follows the account's PDS) and:

* waits when a previous response said ``ratelimit-remaining: 0`` until ``ratelimit-reset``
  (or fails at once with RateLimited when that is further away than ``max_wait``);
* maps 429 → RateLimited (retry_after from ``retry-after`` or ``ratelimit-reset``), 5xx,
  timeouts and dropped connections → Transient (reads are retried a few times first, with
  exponential backoff and jitter), 400 → Permanent (NotFound for missing records and
  accounts), an expired or invalid token → one refresh through the session keeper and one
  retry, 401 with refused credentials → AuthFailed;
* never logs a token or the password: only the method name and the server's error code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import httpx
from atproto_client import AsyncClient
from atproto_client import exceptions as sdk
from atproto_client.client.base import InvokeType
from atproto_client.models.common import XrpcError
from atproto_client.models.dot_dict import DotDict
from atproto_client.request import AsyncRequest

from bridge.errors import AuthFailed, BridgeError, NotFound, Permanent, RateLimited, Transient

log = logging.getLogger("bridge.adapters.bluesky")

# The XRPC error names that mean "this token is no good, refresh or log in again".
TOKEN_ERRORS = frozenset({"ExpiredToken", "InvalidToken"})
# The XRPC error names a missing record or account comes back with.
NOT_FOUND_ERRORS = frozenset({"NotFound", "RecordNotFound", "ProfileNotFound", "ActorNotFound", "ConvoNotFound"})
_NOT_FOUND_MESSAGES = ("not found", "could not locate record", "unable to resolve handle")

# Reads that fail for a transient reason are tried this many times in all.
READ_ATTEMPTS = 3


class RateState:
    """What the server's ``ratelimit-*`` headers said last; shared by the client and its clones
    (the chat proxy client counts against the same PDS)."""

    def __init__(self) -> None:
        self.blocked_until = 0.0  # epoch seconds
        self.remaining: int | None = None

    def observe(self, headers: Mapping[str, str]) -> None:
        remaining = _int(headers.get("ratelimit-remaining"))
        if remaining is None:
            return
        self.remaining = remaining
        if remaining <= 0:
            reset = _int(headers.get("ratelimit-reset"))
            # Bluesky sends reset as epoch seconds; without one, wait a conservative minute.
            self.blocked_until = float(reset) if reset is not None else time.time() + 60.0

    def wait_needed(self) -> float:
        return max(0.0, self.blocked_until - time.time())


class PacedRequest(AsyncRequest):
    """The SDK's AsyncRequest (httpx) that remembers the rate-limit headers of each response
    and waits, before the next request, when the budget is spent."""

    def __init__(self, rate: RateState | None = None, max_wait: float = 15.0, **kwargs: Any) -> None:
        kwargs.setdefault("timeout", httpx.Timeout(20.0, connect=10.0))
        super().__init__(**kwargs)
        self.rate = rate or RateState()
        self.max_wait = max_wait

    def reopen(self) -> None:
        """A new HTTP client after ``close`` (the core starts an adapter again after a failed start)."""
        if self._client.is_closed:
            self._client = httpx.AsyncClient(follow_redirects=True, **self._client_kwargs)

    def _new_instance(self) -> PacedRequest:
        return type(self)(rate=self.rate, max_wait=self.max_wait, **self._client_kwargs)

    async def _send_request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        wait = self.rate.wait_needed()
        if wait > self.max_wait:
            raise RateLimited(wait, scope="bluesky", message=f"Bluesky rate limit spent; it resets in {wait:.0f}s")
        if wait > 0:
            log.info("rate limit spent, waiting seconds=%.1f", wait)
            await asyncio.sleep(wait)
        headers = self.get_headers(kwargs.pop("headers", None))
        try:
            response = await self._client.request(method=method, url=url, headers=headers, **kwargs)
        except Exception as e:  # transport failures, as the SDK maps them
            sdk_request_error(e)
            raise
        self.rate.observe(response.headers)
        if response.status_code == 429:
            reset = _int(response.headers.get("ratelimit-reset"))
            if reset is not None:
                self.rate.blocked_until = max(self.rate.blocked_until, float(reset))
        return sdk_handle_response(response)


def sdk_request_error(e: Exception) -> None:
    from atproto_client.request import _handle_request_errors

    _handle_request_errors(e)


def sdk_handle_response(response: httpx.Response) -> httpx.Response:
    from atproto_client.request import _handle_response

    return _handle_response(response)


class Reauth(Protocol):
    async def __call__(self, failed_token: str) -> None: ...


def xrpc_error(exc: BaseException) -> tuple[int | None, str, str]:
    """(status, XRPC error name, message) of an SDK request error."""
    response = getattr(exc, "response", None)
    if response is None:
        return None, "", ""
    content = response.content
    if isinstance(content, bytes | str):  # the SDK keeps the raw body when it is not its error model
        try:
            content = json.loads(content)
        except ValueError:
            return response.status_code, "", ""
    if isinstance(content, DotDict):  # what the SDK makes of an error body it cannot model
        content = content.to_dict()
    if isinstance(content, XrpcError):
        return response.status_code, content.error or "", content.message or ""
    if isinstance(content, dict):
        return response.status_code, str(content.get("error") or ""), str(content.get("message") or "")
    return response.status_code, "", ""


def retry_after(exc: BaseException, default: float = 60.0) -> float:
    """Seconds to wait after a 429: ``retry-after`` if given, else until ``ratelimit-reset``."""
    if isinstance(exc, sdk.RateLimitExceededError):
        if exc.retry_after is not None:
            return exc.retry_after
        if exc.reset_at is not None:
            return max(0.0, exc.reset_at.timestamp() - time.time())
    return default


def map_error(exc: BaseException, what: str) -> BridgeError:
    """The bridge error for an SDK failure of request ``what`` (an NSID)."""
    if isinstance(exc, BridgeError):
        return exc
    status, name, message = xrpc_error(exc)
    detail = f"{name}: {message}" if name and message else (name or message or type(exc).__name__)
    if isinstance(exc, sdk.RateLimitExceededError) or status == 429:
        return RateLimited(retry_after(exc), scope="bluesky", message=f"{what}: rate limited by Bluesky")
    if isinstance(exc, sdk.InvokeTimeoutError):
        return Transient(f"{what}: Bluesky did not answer in time")
    if status is None:
        return Transient(f"{what}: could not reach Bluesky ({type(exc).__name__})")
    if status == 401 or name in TOKEN_ERRORS:
        return AuthFailed(f"{what}: Bluesky refused our credentials ({detail})")
    if status >= 500 or status in (408, 409, 502):
        return Transient(f"{what}: Bluesky answered {status} ({detail})")
    if name in NOT_FOUND_ERRORS or (status in (400, 404) and any(m in message.lower() for m in _NOT_FOUND_MESSAGES)):
        return NotFound(f"{what}: {message or name}")
    return Permanent(f"{what}: Bluesky answered {status} ({detail})")


# chat.bsky.* goes through the PDS, which forwards it to Bluesky's chat service when asked to.
CHAT_PROXY = "did:web:api.bsky.chat#bsky_chat"


class Api:
    """Queries and procedures by NSID, as plain JSON, through the SDK client.

    ``ensure_session`` is awaited before every call (it logs in or refreshes when needed) and
    ``reauth`` once when the server says the token is expired or invalid. ``chat=True`` sends
    a chat.bsky.* call with the ``atproto-proxy`` header, to the PDS or to ``chat_base`` when
    set (tests: an emulator of the chat service).
    """

    def __init__(
        self,
        client: AsyncClient,
        ensure_session: Callable[[], Awaitable[None]],
        reauth: Reauth,
        *,
        chat_base: str = "",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        count: Callable[[str, int | str], None] = lambda _endpoint, _status: None,
    ) -> None:
        self.client = client
        self._count = count  # every request's outcome, for /metrics (host.count_request)
        self.chat_base = chat_base.rstrip("/")
        self._ensure = ensure_session
        self._reauth = reauth
        self._sleep = sleep

    async def query(self, nsid: str, *, chat: bool = False, **params: Any) -> dict[str, Any]:
        """A GET (idempotent: retried on transient failures)."""
        clean = {k: v for k, v in params.items() if v is not None}
        return await self._call(nsid, chat, InvokeType.QUERY, params=DotDict(clean) if clean else None)

    async def procedure(self, nsid: str, data: Mapping[str, Any] | None = None, *, chat: bool = False) -> dict[str, Any]:
        """A POST (not retried: a write that timed out may have happened)."""
        return await self._call(
            nsid,
            chat,
            InvokeType.PROCEDURE,
            data=DotDict(dict(data)) if data is not None else None,
            headers={"Content-Type": "application/json"},
        )

    def _url(self, nsid: str, chat: bool) -> str:
        if chat and self.chat_base:
            return f"{self.chat_base}/xrpc/{nsid}"
        return self.client._build_url(nsid)  # the account's PDS, once logged in

    async def _call(self, nsid: str, chat: bool, kind: InvokeType, **kwargs: Any) -> dict[str, Any]:
        if chat:
            kwargs["headers"] = {**kwargs.get("headers", {}), "atproto-proxy": CHAT_PROXY}
        read = kind is InvokeType.QUERY
        reauthed = False
        attempt = 0
        while True:
            attempt += 1
            await self._ensure()
            token = _access_token(self.client)
            try:
                response = await self.client._invoke(kind, url=self._url(nsid, chat), **kwargs)
            except Exception as exc:  # every SDK failure is mapped below
                status, name, message = xrpc_error(exc)
                self._count(nsid, status or "error")
                if chat and "scope" in message.lower():
                    # An app password made without DM access: refreshing will not help.
                    raise Permanent(
                        "the app password has no access to direct messages; create one with "
                        "'Allow access to your direct messages' ticked"
                    ) from exc
                if not reauthed and (name in TOKEN_ERRORS or (status == 401 and name != "AuthenticationRequired")):
                    reauthed = True
                    log.info("token refused, refreshing method=%s error=%s", nsid, name or status)
                    await self._reauth(token)
                    continue
                err = map_error(exc, nsid)
                if read and type(err) is Transient and attempt < READ_ATTEMPTS:
                    delay = min(8.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random())
                    log.info(
                        "transient failure, retrying method=%s attempt=%d in=%.2fs reason=%r", nsid, attempt, delay, str(err)
                    )
                    await self._sleep(delay)
                    continue
                raise err from exc
            self._count(nsid, getattr(response, "status_code", 200))
            content = response.content
            return content if isinstance(content, dict) else {}


def _access_token(client: AsyncClient) -> str:
    session = client._session  # the SDK keeps it on the (shared) session dispatcher
    return session.access_jwt if session else ""


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
