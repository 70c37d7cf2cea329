"""The adapter's one request path (adapters/bluesky/http.py) against a scripted XRPC server
on 127.0.0.1: rate-limit headers, 429, 5xx retries, error mapping, token refresh."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from adapters.bluesky.http import Api, PacedRequest
from adapters.bluesky.session import SessionClient
from bridge.errors import AuthFailed, NotFound, Permanent, RateLimited, Transient


class Script:
    """Answers each request with the next scripted (status, body, headers); records requests."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, Any], dict[str, str]]] = []
        self.seen: list[tuple[str, str, float]] = []  # (method, nsid, monotonic time)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, request.match_info["nsid"], time.monotonic()))
        status, body, headers = self.answers.pop(0) if self.answers else (200, {}, {})
        return web.json_response(body, status=status, headers=headers)


@pytest.fixture
async def server() -> AsyncIterator[tuple[Script, str]]:
    script = Script()
    app = web.Application()
    app.router.add_route("*", "/xrpc/{nsid}", script.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield script, f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


class Calls:
    def __init__(self) -> None:
        self.ensure = 0
        self.reauth: list[str] = []
        self.sleeps: list[float] = []


def make_api(url: str, max_wait: float = 15.0) -> tuple[Api, Calls]:
    calls = Calls()
    client = SessionClient(url, request=PacedRequest(max_wait=max_wait))

    async def ensure() -> None:
        calls.ensure += 1

    async def reauth(token: str) -> None:
        calls.reauth.append(token)

    async def sleep(seconds: float) -> None:
        calls.sleeps.append(seconds)

    return Api(client, ensure, reauth, sleep=sleep), calls


async def test_429_becomes_rate_limited_with_the_reset_time(server: tuple[Script, str]) -> None:
    script, url = server
    reset = int(time.time()) + 42
    script.answers = [(429, {"error": "RateLimitExceeded"}, {"ratelimit-remaining": "0", "ratelimit-reset": str(reset)})]
    api, _ = make_api(url)
    with pytest.raises(RateLimited) as info:
        await api.query("app.bsky.feed.getTimeline")
    assert 35 <= info.value.retry_after <= 43
    # the next request is not even sent while the window is spent (and 42 s > max_wait)
    with pytest.raises(RateLimited):
        await api.query("app.bsky.feed.getTimeline")
    assert len(script.seen) == 1


async def test_retry_after_header_wins(server: tuple[Script, str]) -> None:
    script, url = server
    script.answers = [(429, {"error": "RateLimitExceeded"}, {"retry-after": "7"})]
    api, _ = make_api(url)
    with pytest.raises(RateLimited) as info:
        await api.procedure("com.atproto.repo.createRecord", {"repo": "x"})
    assert info.value.retry_after == 7


async def test_spent_budget_waits_until_reset_before_the_next_request(server: tuple[Script, str]) -> None:
    script, url = server
    reset = int(time.time()) + 2
    script.answers = [(200, {"ok": 1}, {"ratelimit-remaining": "0", "ratelimit-reset": str(reset)}), (200, {"ok": 2}, {})]
    api, _ = make_api(url)
    assert await api.query("app.bsky.feed.getTimeline") == {"ok": 1}
    assert await api.query("app.bsky.feed.getTimeline") == {"ok": 2}
    assert time.time() >= reset - 0.05, "the second request waited for the reset"


async def test_5xx_reads_are_retried_with_backoff_writes_are_not(server: tuple[Script, str]) -> None:
    script, url = server
    script.answers = [(502, {}, {}), (503, {"error": "Unavailable"}, {}), (200, {"feed": []}, {})]
    api, calls = make_api(url)
    assert await api.query("app.bsky.feed.getTimeline") == {"feed": []}
    assert len(script.seen) == 3 and len(calls.sleeps) == 2
    assert calls.sleeps[1] > calls.sleeps[0] * 0.6  # grows (with jitter)

    script.answers = [(500, {}, {})] * 3
    with pytest.raises(Transient):
        await api.query("app.bsky.feed.getTimeline")
    script.seen.clear()
    script.answers = [(503, {}, {})]
    with pytest.raises(Transient):
        await api.procedure("com.atproto.repo.createRecord", {"repo": "x"})
    assert len(script.seen) == 1, "a write that may have happened is not repeated"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, {"error": "InvalidRequest", "message": "Input/text must be a string"}, Permanent),
        (400, {"error": "RecordNotFound", "message": "Could not locate record"}, NotFound),
        (400, {"error": "InvalidRequest", "message": "Profile not found"}, NotFound),
        (413, {"error": "PayloadTooLarge"}, Permanent),
        (401, {"error": "AuthenticationRequired", "message": "Invalid identifier or password"}, AuthFailed),
    ],
)
async def test_errors_map_to_the_bridge_hierarchy(
    server: tuple[Script, str], status: int, body: dict[str, str], error: type[Exception]
) -> None:
    script, url = server
    script.answers = [(status, body, {})]
    api, calls = make_api(url)
    with pytest.raises(error):
        await api.query("app.bsky.actor.getProfile", actor="x.test")
    assert calls.reauth == []


async def test_expired_token_refreshes_once_and_retries(server: tuple[Script, str]) -> None:
    script, url = server
    script.answers = [(400, {"error": "ExpiredToken", "message": "Token has expired"}, {}), (200, {"did": "did:plc:x"}, {})]
    api, calls = make_api(url)
    assert await api.query("com.atproto.server.getSession") == {"did": "did:plc:x"}
    assert len(calls.reauth) == 1
    script.answers = [(400, {"error": "ExpiredToken"}, {})] * 2
    with pytest.raises(AuthFailed):
        await api.query("com.atproto.server.getSession")
    assert len(calls.reauth) == 2, "one refresh per call, not a loop"


async def test_connection_refused_is_transient() -> None:
    api, calls = make_api("http://127.0.0.1:9")
    with pytest.raises(Transient, match="could not reach Bluesky"):
        await api.query("app.bsky.feed.getTimeline")
    assert len(calls.sleeps) == 2


async def test_every_request_is_counted_by_method_and_status(server: tuple[Script, str]) -> None:
    """What /metrics shows as bridge_network_requests_total: the NSID and the HTTP status of
    each attempt (retries included), never the URL."""
    script, url = server
    script.answers = [(502, {"error": "Bad"}, {}), (200, {"feed": []}, {}), (400, {"error": "InvalidRequest"}, {})]
    counted: list[tuple[str, int | str]] = []
    client = SessionClient(url, request=PacedRequest())

    async def noop(*_: Any) -> None:
        return None

    api = Api(client, noop, noop, sleep=noop, count=lambda endpoint, status: counted.append((endpoint, status)))
    await api.query("app.bsky.feed.getTimeline")
    with pytest.raises(Permanent):
        await api.query("app.bsky.actor.getProfile", actor="nobody")
    assert counted == [
        ("app.bsky.feed.getTimeline", 502),
        ("app.bsky.feed.getTimeline", 200),
        ("app.bsky.actor.getProfile", 400),
    ]
