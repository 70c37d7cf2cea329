"""The X request path (adapters/x/http.py) against the X API v2 emulator over real sockets:
bearer and OAuth 1.0a accepted, a tampered signature refused, rate limits paced and 429s
waited out, X's refusals mapped with its reason, the budget cap refusing before anything is
sent, and the ledger's count equal to what the emulator would bill."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from adapters.x.cost import MICRO, BudgetExceeded, Ledger, Prices
from adapters.x.http import XApi, map_error
from adapters.x.oauth1 import Credentials, authorization
from bridge.errors import AuthFailed, NotFound, Permanent, RateLimited, Transient
from tests.emulators.x import XEmulator

TIMELINE = "/2/users/:id/tweets"
EXPANSIONS = "author_id,referenced_tweets.id,attachments.media_keys"


class MemoryStore:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def load_state(self, key: str) -> str | None:
        return self.values.get(key)

    async def save_state(self, key: str, value: str | None) -> None:
        if value is None:
            self.values.pop(key, None)
        else:
            self.values[key] = value


@pytest.fixture
async def emu() -> AsyncIterator[XEmulator]:
    e = XEmulator()
    await e.start()
    yield e
    await e.stop()


def credentials(emu: XEmulator) -> Credentials:
    return Credentials(emu.consumer_key, emu.consumer_secret, emu.access_token, emu.access_token_secret)


@pytest.fixture
async def make_api(emu: XEmulator) -> AsyncIterator[Any]:
    made: list[XApi] = []

    async def make(budget: float = 25.0, store: MemoryStore | None = None, **kwargs: Any) -> XApi:
        ledger = Ledger(Prices.from_config(), budget, store or MemoryStore())
        await ledger.load()
        kwargs.setdefault("bearer_token", emu.bearer_token)
        kwargs.setdefault("credentials", credentials(emu))
        api = XApi(api_url=emu.url, ledger=ledger, account_id=emu.me["id"], **kwargs)
        made.append(api)
        return api

    yield make
    for api in made:
        await api.close()


async def test_bearer_reads_a_user_timeline_with_expansions(emu: XEmulator, make_api: Any) -> None:
    alice = emu.add_user("alice", "Alice A")
    first = emu.post(alice, "hello")
    emu.post(alice, "read https://example.com/report now", media=[{"type": "photo", "url": "https://pbs/1.jpg"}])
    api = await make_api()
    body = await api.get(
        TIMELINE,
        args={"id": alice["id"]},
        params={
            "since_id": first["id"],
            "max_results": 5,
            "expansions": EXPANSIONS,
            "tweet.fields": "created_at,entities",
            "media.fields": "url",
        },
    )
    (post,) = body["data"]
    assert post["entities"]["urls"][0]["expanded_url"] == "https://example.com/report"
    assert body["includes"]["media"][0]["url"] == "https://pbs/1.jpg"
    assert body["includes"]["users"][0]["username"] == "alice"
    assert emu.requests[-1][2] == "app"


async def test_user_context_is_signed_and_accepted(emu: XEmulator, make_api: Any) -> None:
    api = await make_api()
    body = await api.post("/2/tweets", {"text": "hello from the team"})
    assert emu.created[-1]["text"] == "hello from the team"
    assert body["data"]["id"] == emu.created[-1]["id"]
    me = await api.get("/2/users/me", user=True)  # query-less GET, signed too
    assert me["data"]["username"] == "teamaccount"
    assert [r[2] for r in emu.requests] == ["user", "user"]


async def test_a_signed_query_string_is_verified(emu: XEmulator, make_api: Any) -> None:
    bob = emu.add_user("bob")
    emu.post(bob, "hey @teamaccount, what's your take?")
    api = await make_api()
    body = await api.get(
        "/2/users/:id/mentions",
        args={"id": emu.me["id"]},
        params={"max_results": 5, "tweet.fields": "author_id,entities"},
        user=True,
    )
    assert body["data"][0]["author_id"] == bob["id"]


async def test_a_tampered_signature_is_refused(emu: XEmulator) -> None:
    url = f"{emu.url}/2/users/me"
    header = authorization(credentials(emu), "GET", url)
    tampered = header.replace('oauth_signature="', 'oauth_signature="A', 1)
    wrong_secret = authorization(replace(credentials(emu), consumer_secret="not-the-secret"), "GET", url)
    async with aiohttp.ClientSession() as s:
        for h in (tampered, wrong_secret):
            async with s.get(url, headers={"Authorization": h}) as r:
                assert r.status == 401
        async with s.get(url, headers={"Authorization": header}) as r:
            assert r.status == 200
        async with s.get(url, headers={"Authorization": header}) as r:  # the same nonce again
            assert r.status == 401


async def test_wrong_credentials_are_auth_failed_with_the_fix(emu: XEmulator, make_api: Any) -> None:
    api = await make_api(bearer_token="revoked")
    with pytest.raises(AuthFailed, match=r"X refused our credentials .*Developer Console"):
        await api.get("/2/users/by/username/:username", args={"username": "alice"})
    api = await make_api(credentials=replace(credentials(emu), access_token_secret="old"))
    with pytest.raises(AuthFailed):
        await api.post("/2/tweets", {"text": "hi"})
    assert emu.created == []


async def test_a_missing_user_is_not_found(emu: XEmulator, make_api: Any) -> None:
    api = await make_api()
    with pytest.raises(NotFound, match=r"Could not find user with username: \[ghost\]"):
        await api.get("/2/users/by/username/:username", args={"username": "ghost"})
    assert api.ledger.spent == 0  # an answer without data bills nothing


async def test_the_2026_reply_rule_is_explained_in_one_line(emu: XEmulator, make_api: Any) -> None:
    carol = emu.add_user("carol")
    plain = emu.post(carol, "a post that does not mention anyone")
    summoning = emu.post(carol, "@teamaccount can you help?")
    api = await make_api()
    with pytest.raises(Permanent) as refused:
        await api.post("/2/tweets", {"text": "thanks!", "reply": {"in_reply_to_tweet_id": plain["id"]}})
    message = str(refused.value)
    assert "\n" not in message
    assert "may reply only to posts whose author mentioned or quoted this account" in message
    assert "not been mentioned" in message  # X's own words kept
    await api.post("/2/tweets", {"text": "happy to", "reply": {"in_reply_to_tweet_id": summoning["id"]}})
    assert emu.created[-1]["referenced_tweets"] == [{"type": "replied_to", "id": summoning["id"]}]


async def test_likes_and_follows_are_refused_with_the_enrollment_reason(emu: XEmulator, make_api: Any) -> None:
    dave = emu.add_user("dave")
    post = emu.post(dave, "like me")
    api = await make_api()
    with pytest.raises(Permanent, match=r"access level does not include it .*Enterprise.*\[client-not-enrolled\]"):
        await api.post("/2/users/:id/likes", {"tweet_id": post["id"]}, args={"id": emu.me["id"]})
    assert emu.likes == []


async def test_429_waits_for_the_reset_then_succeeds(emu: XEmulator, make_api: Any) -> None:
    alice = emu.add_user("alice")
    emu.post(alice, "one")
    emu.set_limit("GET", TIMELINE, 1, window=1.5)
    api = await make_api(max_wait=5.0)
    other = await make_api()  # another process of the same app spends the window unseen
    await other.get(TIMELINE, args={"id": alice["id"]})
    started = time.monotonic()
    body = await api.get(TIMELINE, args={"id": alice["id"]})
    assert body["data"][0]["text"] == "one"
    assert time.monotonic() - started >= 0.9  # waited for x-rate-limit-reset
    statuses = [r[3] for r in emu.requests if r[1] == TIMELINE]
    assert statuses == [200, 429, 200]


async def test_a_429_far_from_reset_is_rate_limited(emu: XEmulator, make_api: Any) -> None:
    alice = emu.add_user("alice")
    emu.set_limit("GET", TIMELINE, 1, window=900)
    api = await make_api(max_wait=2.0)
    await api.get(TIMELINE, args={"id": alice["id"]})
    with pytest.raises(RateLimited) as limited:
        await api.get(TIMELINE, args={"id": alice["id"]})
    assert 800 < limited.value.retry_after <= 901
    # The window is known spent: the next call fails at once, without asking X again.
    before = len(emu.requests)
    with pytest.raises(RateLimited):
        await api.get(TIMELINE, args={"id": alice["id"]})
    assert len(emu.requests) == before


async def test_requests_are_paced_before_the_window_is_spent(emu: XEmulator, make_api: Any) -> None:
    alice = emu.add_user("alice")
    emu.set_limit("GET", TIMELINE, 3, window=1.2)
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        import asyncio

        sleeps.append(s)
        await asyncio.sleep(s)

    api = await make_api(sleep=sleep, max_wait=5.0)
    for _ in range(5):
        await api.get(TIMELINE, args={"id": alice["id"]})
    assert all(r[3] == 200 for r in emu.requests)  # never a 429
    assert sleeps and sum(sleeps) >= 1.0


async def test_5xx_reads_are_retried_writes_are_not(emu: XEmulator, make_api: Any) -> None:
    alice = emu.add_user("alice")
    emu.post(alice, "still here")
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)

    api = await make_api(sleep=sleep)
    emu.fail_next = [503, 502]
    body = await api.get(TIMELINE, args={"id": alice["id"]})
    assert body["data"][0]["text"] == "still here"
    assert len(sleeps) == 2 and all(0.2 <= s <= 1.6 for s in sleeps)  # backoff with jitter
    emu.fail_next = [503]
    with pytest.raises(Transient, match="X answered 503"):
        await api.post("/2/tweets", {"text": "maybe"})
    assert sum(1 for r in emu.requests if r[1] == "/2/tweets") == 1


async def test_a_dead_server_is_transient(make_api: Any) -> None:
    api = await make_api()
    api.base = "http://127.0.0.1:9"  # nothing listens on the discard port
    api._sleep = _no_sleep
    with pytest.raises(Transient, match="could not reach X"):
        await api.get("/2/users/me", user=True)
    assert api.ledger.reserved == 0


async def test_a_stalled_answer_times_out_as_transient(emu: XEmulator, make_api: Any) -> None:
    emu.stall = 1.0
    api = await make_api(timeout=0.2, sleep=_no_sleep)
    with pytest.raises(Transient, match="could not reach X"):
        await api.get("/2/users/me", user=True)
    assert api.ledger.reserved == 0 and api.ledger.spent == 0


async def test_no_secret_is_logged(emu: XEmulator, make_api: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    alice = emu.add_user("alice")
    emu.post(alice, "hi")
    api = await make_api(sleep=_no_sleep)
    await api.get(TIMELINE, args={"id": alice["id"]})
    await api.post("/2/tweets", {"text": "signed"})
    emu.fail_next = [503]
    await api.get("/2/users/me", user=True)
    with pytest.raises(AuthFailed):
        await (await make_api(bearer_token="wrong-bearer")).get(TIMELINE, args={"id": alice["id"]})
    logged = caplog.text
    assert "GET /2/users/me" in logged  # the retry was logged
    for secret in (
        emu.bearer_token,
        emu.consumer_secret,
        emu.access_token_secret,
        emu.access_token,
        "wrong-bearer",
        "oauth_signature",
    ):
        assert secret not in logged


async def _no_sleep(_s: float) -> None:
    return None


async def test_the_budget_cap_refuses_before_any_request(emu: XEmulator, make_api: Any) -> None:
    alice = emu.add_user("alice")
    api = await make_api(budget=0.10)
    with pytest.raises(BudgetExceeded) as refused:
        await api.post("/2/tweets", {"text": "see https://example.com"})  # $0.20 with a link
    message = str(refused.value)
    assert "$0.00 of $0.10 spent" in message and "up to $0.20" in message and "monthly_budget_usd" in message
    with pytest.raises(BudgetExceeded):  # 100 posts with expansions could cost more than $0.10
        await api.get(TIMELINE, args={"id": alice["id"]}, params={"max_results": 100, "expansions": EXPANSIONS})
    assert emu.requests == []
    await api.post("/2/tweets", {"text": "no link"})  # $0.015 fits
    assert emu.usage() == {"post_create": 1}


async def test_the_ledger_bills_what_the_emulator_bills(emu: XEmulator, make_api: Any) -> None:
    store = MemoryStore()
    alice, bob = emu.add_user("alice"), emu.add_user("bob")
    quoted = emu.post(bob, "original thought")
    for i in range(7):
        emu.post(alice, f"post {i} https://example.com/{i}", media=[{"type": "photo"}] if i % 2 else ())
    emu.post(alice, "quoting", quote_of=quoted["id"])
    emu.post(bob, "@teamaccount hi")
    emu.dm_from(bob, "a private word")
    api = await make_api(store=store)
    params = {"max_results": 5, "expansions": EXPANSIONS}
    page = await api.get(TIMELINE, args={"id": alice["id"]}, params=params)
    await api.get(TIMELINE, args={"id": alice["id"]}, params={**params, "pagination_token": page["meta"]["next_token"]})
    await api.get(TIMELINE, args={"id": alice["id"]}, params=params)  # the same posts again: no new charge
    await api.get("/2/tweets/search/recent", params={"query": "post", "max_results": 10})
    await api.get("/2/users/:id/mentions", args={"id": emu.me["id"]}, params={"max_results": 5}, user=True)
    await api.get("/2/dm_events", params={"max_results": 10}, user=True)
    await api.get("/2/users/by/username/:username", args={"username": "bob"})
    await api.post("/2/tweets", {"text": "plain"})
    await api.post("/2/dm_conversations/with/:participant_id/messages", {"text": "hello"}, args={"participant_id": bob["id"]})
    billed = emu.usage()
    assert api.ledger.today == billed
    assert billed["post_read"] == 9 and billed["owned_read"] == 1 and billed["dm_event_read"] == 1
    prices = Prices.from_config()
    assert api.ledger.spent == sum(prices[k] * n for k, n in billed.items())
    # Persisted: a restart finds the month's spend and today's dedupe.
    again = Ledger(prices, 25.0, store)
    await again.load()
    assert again.spent == api.ledger.spent and again.today == billed
    assert api.ledger.spent < 1 * MICRO


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (
            401,
            {"title": "Unauthorized", "detail": "Unauthorized", "type": "about:blank"},
            AuthFailed,
            "X refused our credentials (Unauthorized)",
        ),
        (
            402,
            {"title": "Payment Required", "detail": "Your credits are depleted."},
            Permanent,
            "add credits or raise the spending limit",
        ),
        (
            403,
            {
                "title": "Client Forbidden",
                "detail": "Enterprise only.",
                "reason": "client-not-enrolled",
                "type": "https://api.x.com/2/problems/client-forbidden",
            },
            Permanent,
            "this app's access level does not include it (Enterprise only. [client-not-enrolled])",
        ),
        (
            403,
            {
                "title": "Forbidden",
                "detail": "Reply to this conversation is not allowed because you have not been mentioned\nor otherwise engaged.",
            },
            Permanent,
            "X refused the reply: self-serve X apps may reply only to posts whose author mentioned or quoted this account (Reply to this "
            "conversation is not allowed because you have not been mentioned or otherwise engaged.)",
        ),
        (
            403,
            {"title": "Forbidden", "detail": "You are not permitted to perform this action."},
            Permanent,
            "X refused (You are not permitted",
        ),
        (404, {"title": "Not Found Error", "detail": "Could not find tweet with id: [1]."}, NotFound, "Could not find tweet"),
        (
            400,
            {"errors": [{"message": "The `query` parameter can not be empty"}], "title": ""},
            Permanent,
            "X answered 400 (The `query`",
        ),
        (409, {}, Permanent, "X answered 409 (no reason given)"),
        (500, {"title": "Internal Server Error"}, Transient, "X answered 500 (Internal Server Error)"),
        (
            429,
            {"title": "Too Many Requests", "type": "https://api.x.com/2/problems/usage-capped"},
            RateLimited,
            "rate limited by X",
        ),
    ],
)
def test_x_errors_map_to_the_bridge_hierarchy(status: int, body: dict[str, Any], error: type, message: str) -> None:
    err = map_error(status, body, "POST /2/tweets")
    assert type(err) is error
    assert message in str(err) and "\n" not in str(err)


async def test_a_query_with_unicode_and_punctuation_is_signed_as_sent(emu: XEmulator, make_api: Any) -> None:
    bob = emu.add_user("bob")
    emu.post(bob, 'Tokyo 日本 "exact phrase" (a) #tag ~50%* + more')
    api = await make_api()
    body = await api.get(
        "/2/tweets/search/recent",
        params={"query": 'from:bob 日本 "exact phrase" #tag ~50%* +', "max_results": 10},
        user=True,
    )
    assert len(body["data"]) == 1
    assert emu.requests[-1][2:] == ("user", 200)
