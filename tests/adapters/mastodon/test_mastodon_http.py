"""The adapter's one request path (adapters/mastodon/http.py) against the Mastodon emulator
over real sockets: rate limits paced and 429 storms honoured, Link paging, the idempotency
key, error mapping with messages a person can act on, and a token that never reaches a log."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from aiohttp import web

from adapters.mastodon.http import MastodonHttp, MissingScope, RateBudget, page_query, parse_link_header, parse_reset
from bridge.errors import AuthFailed, NotFound, Permanent, RateLimited, Transient
from tests.adapters.mastodon.conftest import HttpFactory, World
from tests.emulators.mastodon import Fault, MastodonEmulator


class Sleeps:
    """Records the waits the client asks for and really waits (so the emulator's clock moves)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        import asyncio

        self.calls.append(seconds)
        await asyncio.sleep(seconds)


def api_requests(server: MastodonEmulator, path: str) -> int:
    return sum(1 for _, p, _ in server.requests if p.split("?")[0] == path)


async def test_a_429_storm_is_waited_out_not_hammered(world: World, make_http: HttpFactory) -> None:
    sleeps = Sleeps()
    http = await make_http(sleep=sleeps)
    world.server.storm_429(2, reset_in=0.5)
    started = time.monotonic()
    assert await http.get("/api/v1/timelines/home") == []
    assert api_requests(world.server, "/api/v1/timelines/home") == 3, "one request per reset, not a loop"
    assert time.monotonic() - started >= 0.9
    assert all(0.3 <= s <= 0.6 for s in sleeps.calls[:2]), sleeps.calls


async def test_a_long_429_raises_rate_limited_and_holds_later_requests(world: World, make_http: HttpFactory) -> None:
    http = await make_http(max_wait=2.0)
    world.server.storm_429(1, reset_in=120)
    with pytest.raises(RateLimited) as info:
        await http.get("/api/v1/timelines/home")
    assert 100 <= info.value.retry_after <= 121
    with pytest.raises(RateLimited):
        await http.get("/api/v1/timelines/home")
    assert api_requests(world.server, "/api/v1/timelines/home") == 1, "nothing is sent before the reset"


async def test_the_budget_is_paced_so_no_429_is_ever_met() -> None:
    server = MastodonEmulator(rate_limit=12, rate_window=3.0)
    await server.start()
    http = MastodonHttp(server.url, server.add_token(server.add_account("team")), max_wait=5.0, reserve=2)
    try:
        started = time.monotonic()
        for _ in range(16):
            await http.get("/api/v1/timelines/home")
        statuses = [r for r in server.requests if r[1].startswith("/api/v1/timelines/home")]
        # 16 requests against 12 per window cross a reset; a 429 would have been retried (17+)
        assert len(statuses) == 16 == http.requests_sent, "every request went through once: none was refused"
        assert time.monotonic() - started > 0.0
    finally:
        await http.close()
        await server.stop()


async def test_writes_may_use_the_reserve_reads_may_not() -> None:
    server = MastodonEmulator(rate_limit=4, rate_window=600.0)
    await server.start()
    http = MastodonHttp(server.url, server.add_token(server.add_account("team")), max_wait=1.0, reserve=2)
    try:
        await http.get("/api/v1/timelines/home")
        await http.get("/api/v1/timelines/home")  # remaining: 2, the reserve
        with pytest.raises(RateLimited):
            await http.get("/api/v1/timelines/home")
        posted = await http.post("/api/v1/statuses", {"status": "a reply a person wrote"}, idempotency_key="k1")
        assert posted["content"]
    finally:
        await http.close()
        await server.stop()


async def test_link_paging_walks_every_status_once(world: World, make_http: HttpFactory) -> None:
    made = [world.server.post(world.alice, f"n{i}").id for i in range(7)]
    http = await make_http()
    path = f"/api/v1/accounts/{world.alice.id}/statuses"
    seen: list[str] = []
    page = await http.get_page(path, {"limit": 3})
    while page.data:
        seen.extend(s["id"] for s in page.data)
        page = await http.get_page(path, page.next)
    assert seen == list(reversed(made))
    # forward from the newest seen: the prev link (min_id) finds only what is new
    newest = await http.get_page(path, {"limit": 3})
    fresh = world.server.post(world.alice, "new").id
    later = await http.get_page(path, newest.prev)
    assert [s["id"] for s in later.data] == [fresh]


async def test_idempotency_key_survives_a_lost_answer(world: World, make_http: HttpFactory) -> None:
    """A write whose answer is lost (503 after the fact, a timeout) is retried with the same
    key, and the server makes one status."""
    http = await make_http(sleep=Sleeps())
    world.server.inject(Fault(status=503, path="/api/v1/statuses"))
    first = await http.post("/api/v1/statuses", {"status": "exactly once"}, idempotency_key="delivery-7")
    again = await http.post("/api/v1/statuses", {"status": "exactly once"}, idempotency_key="delivery-7")
    assert first["id"] == again["id"]
    assert [s.text for s in world.server.statuses_by(world.team)] == ["exactly once"]
    keys = [h.get("Idempotency-Key") for m, p, h in world.server.requests if m == "POST"]
    assert keys == ["delivery-7"] * 3


async def test_a_write_without_a_key_is_not_repeated(world: World, make_http: HttpFactory) -> None:
    http = await make_http(sleep=Sleeps())
    world.server.inject(Fault(status=502, path="/favourite"))
    s = world.server.post(world.alice, "fav me")
    with pytest.raises(Transient):
        await http.post(f"/api/v1/statuses/{s.id}/favourite")
    assert api_requests(world.server, f"/api/v1/statuses/{s.id}/favourite") == 1


async def test_reads_retry_5xx_and_timeouts_with_backoff(world: World, make_http: HttpFactory) -> None:
    sleeps = Sleeps()
    http = await make_http(sleep=sleeps, timeout=0.5)
    world.server.inject(Fault(status=500), Fault(delay=1.0))
    assert await http.get("/api/v1/timelines/home") == []
    assert len(sleeps.calls) == 2, "two backoffs: after the 500 and after the timeout"
    world.server.inject(Fault(status=503), Fault(status=503), Fault(status=503))
    with pytest.raises(Transient, match="503"):
        await http.get("/api/v1/timelines/home")


async def test_a_missing_scope_is_named_with_the_fix(world: World, make_http: HttpFactory) -> None:
    write_only = await make_http(token=world.server.add_token(world.team, ("write",)))
    with pytest.raises(MissingScope) as info:
        await write_only.get("/api/v1/accounts/verify_credentials", scope="read:accounts")
    assert isinstance(info.value, AuthFailed), "the operator must fix the token: the engine stops and says so"
    read_only = await make_http(token=world.server.add_token(world.team, ("read",)))
    with pytest.raises(MissingScope) as info:
        await read_only.post("/api/v1/statuses", {"status": "hi"}, scope="write:statuses")
    message = str(info.value)
    assert info.value.scope == "write:statuses"
    assert (
        "the scope write:statuses (POST /api/v1/statuses needs it)" in message
        and "Preferences → Development" in message
        and "[mastodon] access_token" in message
    )
    assert "\n" not in message


async def test_error_mapping(world: World, make_http: HttpFactory) -> None:
    http = await make_http()
    with pytest.raises(NotFound, match="Record not found"):
        await http.get("/api/v1/accounts/lookup", {"acct": "ghost@nowhere.example"})
    with pytest.raises(Permanent, match="Text character limit of 500 exceeded") as info:
        await http.post("/api/v1/statuses", {"status": "x" * 600})
    assert not isinstance(info.value, NotFound)
    bad = await make_http(token="revoked")
    with pytest.raises(AuthFailed, match="refused the Mastodon access token") as auth:
        await bad.get("/api/v1/accounts/verify_credentials")
    assert not isinstance(auth.value, MissingScope)


async def test_the_token_never_reaches_a_log_or_an_error(
    world: World, make_http: HttpFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    http = await make_http(sleep=Sleeps())
    world.server.inject(Fault(status=500), Fault(status=429, headers={"_reset_in": "0.1"}))
    await http.get("/api/v1/timelines/home")
    errors: list[str] = []
    for path in ("/api/v1/accounts/lookup?acct=x@y.example", "/api/v1/notifications"):
        try:
            await (await make_http(token="secret-team-token-wrong")).get(path)
        except Exception as exc:
            errors.append(repr(exc) + str(exc))
    assert errors
    assert "secret-team-token" not in caplog.text
    assert all("secret-team-token" not in e for e in errors)
    assert "secret" not in repr(http)


async def test_link_to_another_host_or_path_is_not_followed() -> None:
    links = parse_link_header(
        '<https://evil.example/steal?max_id=1>; rel="next", <https://team.example/api/v1/timelines/home?min_id=9>; rel="prev"'
    )
    assert page_query(links["next"], "/api/v1/timelines/home") == ()
    assert page_query(links["prev"], "/api/v1/timelines/home") == (("min_id", "9"),)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('<https://a.example/x?max_id=1>; rel="next"', {"next": "https://a.example/x?max_id=1"}),
        (
            '<https://a.example/x?max_id=1&a=b,c>; rel="next", <https://a.example/x?min_id=2>; rel="prev"',
            {"next": "https://a.example/x?max_id=1&a=b,c", "prev": "https://a.example/x?min_id=2"},
        ),
        ("<https://a.example/x>; rel=next", {"next": "https://a.example/x"}),
        ('<https://a.example/x>; rel="prev next"', {"prev": "https://a.example/x", "next": "https://a.example/x"}),
        ("", {}),
        ("garbage", {}),
        ('https://no-brackets.example; rel="next"', {}),
        ("<<<>>>;;;rel=", {}),
        ('<https://a.example/x>; title="a,b"; rel="next"', {"next": "https://a.example/x"}),
    ],
)
def test_parse_link_header(header: str, expected: dict[str, str]) -> None:
    assert parse_link_header(header) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2030-01-01T00:00:00.000Z", 1893456000.0),
        ("2030-01-01T00:00:00+00:00", 1893456000.0),
        ("1893456000", 1893456000.0),
        ("30", 1030.0),  # seconds from now
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_reset(value: str | None, expected: float | None) -> None:
    assert parse_reset(value, now=1000.0) == expected


class Clock:
    def __init__(self) -> None:
        self.now = 2_000_000_000.0  # an epoch time, as servers send the reset

    def __call__(self) -> float:
        return self.now


def budget_at(remaining: int, reset_in: float, clock: Clock, limit: int = 300) -> RateBudget:
    budget = RateBudget(reserve=10, clock=clock)
    budget.observe(
        {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": str(clock.now + reset_in)}
    )
    return budget


def test_pacing_rules() -> None:
    clock = Clock()
    # plenty left: no wait
    assert budget_at(250, 200, clock).delay(write=False) == 0.0
    # below half: spread evenly over the window (100 s for the 139 requests above the reserve)
    low = budget_at(149, 100, clock)
    low.last_sent = clock.now
    assert low.delay(write=False) == pytest.approx(100 / 139)
    # the reserve is for writes: a read waits for the reset, a write goes now
    spent = budget_at(10, 42, clock)
    assert spent.delay(write=False) == pytest.approx(42)
    assert spent.delay(write=True) == 0.0 and spent.remaining == 9
    assert budget_at(0, 42, clock).delay(write=True) == pytest.approx(42)
    # an old window is over
    assert budget_at(0, -1, clock).delay(write=False) == 0.0
    # a 429 blocks until its reset, whatever the headers said
    blocked = budget_at(250, 200, clock)
    blocked.block(clock.now + 5)
    assert blocked.delay(write=True) == pytest.approx(5)


async def scripted(handler: Any) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_redirects_are_not_followed_and_huge_answers_refused() -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        if request.path == "/api/v1/redirect":
            raise web.HTTPFound("http://127.0.0.2:9/steal")
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(9):
            await response.write(b" " * 2**20)
        return response

    runner, url = await scripted(handler)
    http = MastodonHttp(url, "tok")
    try:
        with pytest.raises(Permanent, match="302"):
            await http.get("/api/v1/redirect")
        with pytest.raises(Permanent, match="larger than 8 MiB"):
            await http.get("/api/v1/huge")
        assert seen == ["/api/v1/redirect", "/api/v1/huge"]
    finally:
        await http.close()
        await runner.cleanup()
