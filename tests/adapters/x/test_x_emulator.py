"""The X API v2 emulator (tests/emulators/x.py) keeps X's documented rules, driven through the
adapter's request path: timelines with since_id, exclude and pagination, recent search's 7
days without reposts, the 2026 reply and Enterprise rules, DMs, rate-limit headers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from adapters.x.cost import Ledger, Prices
from adapters.x.http import XApi
from adapters.x.oauth1 import Credentials
from bridge.errors import Permanent
from tests.emulators.x import XEmulator

TIMELINE = "/2/users/:id/tweets"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def world() -> AsyncIterator[tuple[XEmulator, XApi, Clock]]:
    clock = Clock()
    emu = XEmulator(clock=clock)
    await emu.start()
    api = XApi(
        api_url=emu.url,
        ledger=Ledger(Prices.from_config(), 25),
        bearer_token=emu.bearer_token,
        credentials=Credentials(emu.consumer_key, emu.consumer_secret, emu.access_token, emu.access_token_secret),
        account_id=emu.me["id"],
        clock=clock,
    )
    yield emu, api, clock
    await api.close()
    await emu.stop()


async def test_timeline_since_id_exclude_and_pagination(world: Any) -> None:
    emu, api, _ = world
    alice, bob = emu.add_user("alice"), emu.add_user("bob")
    other = emu.post(bob, "bob's post")
    posts = [emu.post(alice, f"p{i}") for i in range(7)]
    emu.post(alice, "a reply", reply_to=other["id"])
    emu.post(alice, "", repost_of=other["id"])
    body = await api.get(TIMELINE, args={"id": alice["id"]}, params={"exclude": "replies,retweets", "max_results": 5})
    assert [t["text"] for t in body["data"]] == ["p6", "p5", "p4", "p3", "p2"]
    assert body["meta"]["newest_id"] == posts[6]["id"] and "next_token" in body["meta"]
    rest = await api.get(
        TIMELINE,
        args={"id": alice["id"]},
        params={"exclude": "replies,retweets", "max_results": 5, "pagination_token": body["meta"]["next_token"]},
    )
    assert [t["text"] for t in rest["data"]] == ["p1", "p0"] and "next_token" not in rest["meta"]
    everything = await api.get(TIMELINE, args={"id": alice["id"]}, params={"since_id": posts[6]["id"], "max_results": 5})
    assert [t["text"] for t in everything["data"]] == ["RT @bob: bob's post", "a reply"]
    nothing = await api.get(
        TIMELINE, args={"id": alice["id"]}, params={"since_id": everything["meta"]["newest_id"], "max_results": 5}
    )
    assert nothing == {"meta": {"result_count": 0}}


async def test_links_are_t_co_in_text_and_expanded_in_entities(world: Any) -> None:
    emu, api, _ = world
    alice = emu.add_user("alice")
    emu.post(alice, "launch: https://example.com/launch?utm=x")
    body = await api.get(TIMELINE, args={"id": alice["id"]}, params={"tweet.fields": "entities"})
    (post,) = body["data"]
    assert "https://t.co/" in post["text"] and "example.com" not in post["text"]
    (url,) = post["entities"]["urls"]
    assert url["expanded_url"] == "https://example.com/launch?utm=x"
    assert post["text"][url["start"] : url["end"]] == url["url"]


async def test_recent_search_covers_seven_days_and_no_reposts(world: Any) -> None:
    emu, api, clock = world
    alice, bob = emu.add_user("alice"), emu.add_user("bob")
    emu.post(alice, "biotech CEO hiring", at=clock.now - 8 * 86400)
    recent = emu.post(alice, "biotech CEO interview", at=clock.now - 6 * 86400)
    emu.post(bob, "", repost_of=recent["id"])
    emu.post(bob, "biotech news without the other word")
    body = await api.get("/2/tweets/search/recent", params={"query": "biotech CEO -is:retweet", "max_results": 10})
    assert [t["id"] for t in body["data"]] == [recent["id"]]
    by_bob = await api.get("/2/tweets/search/recent", params={"query": "from:bob biotech", "max_results": 10})
    assert [t["text"] for t in by_bob["data"]] == ["biotech news without the other word"]
    with pytest.raises(Permanent, match="not between 10 and 100"):
        await api.get("/2/tweets/search/recent", params={"query": "x", "max_results": 5})


async def test_a_reply_is_allowed_to_a_post_quoting_the_account(world: Any) -> None:
    emu, api, _ = world
    ours = emu.post(emu.me, "our announcement")
    carol = emu.add_user("carol")
    quoting = emu.post(carol, "interesting", quote_of=ours["id"])
    await api.post("/2/tweets", {"text": "thank you", "reply": {"in_reply_to_tweet_id": quoting["id"]}})
    assert emu.created[-1]["in_reply_to_user_id"] == carol["id"]
    with pytest.raises(Permanent, match="X refused"):
        await api.post("/2/tweets", {"text": "quoting", "quote_tweet_id": quoting["id"]})


async def test_enterprise_lifts_the_self_serve_rules(world: Any) -> None:
    emu, api, _ = world
    emu.enterprise = True
    dave = emu.add_user("dave")
    post = emu.post(dave, "no mention")
    await api.post("/2/tweets", {"text": "reply", "reply": {"in_reply_to_tweet_id": post["id"]}})
    await api.post("/2/tweets", {"text": "quote", "quote_tweet_id": post["id"]})
    await api.post("/2/users/:id/likes", {"tweet_id": post["id"]}, args={"id": emu.me["id"]})
    assert emu.likes == [(emu.me["id"], post["id"])]


async def test_direct_messages_both_ways(world: Any) -> None:
    emu, api, _ = world
    erin = emu.add_user("erin")
    emu.dm_from(erin, "are you free on Tuesday?")
    body = await api.get("/2/dm_events", params={"max_results": 10}, user=True)
    assert [(e["text"], e["sender_id"]) for e in body["data"]] == [("are you free on Tuesday?", erin["id"])]
    sent = await api.post(
        "/2/dm_conversations/with/:participant_id/messages", {"text": "yes"}, args={"participant_id": erin["id"]}
    )
    assert emu.sent_dms[-1]["text"] == "yes" and sent["data"]["dm_event_id"] == emu.sent_dms[-1]["id"]


async def test_user_context_endpoints_refuse_the_bearer_token(world: Any) -> None:
    _, api, _ = world
    with pytest.raises(Permanent, match="Application-Only is forbidden"):
        await api.get("/2/dm_events", user=False)


async def test_every_answer_carries_the_rate_limit_headers(world: Any) -> None:
    emu, _, _ = world
    alice = emu.add_user("alice")
    async with aiohttp.ClientSession() as s:
        url = f"{emu.url}/2/users/{alice['id']}/tweets"
        async with s.get(url, headers={"Authorization": f"Bearer {emu.bearer_token}"}) as r:
            assert r.headers["x-rate-limit-limit"] == "10000"
            assert r.headers["x-rate-limit-remaining"] == "9999"
            assert int(r.headers["x-rate-limit-reset"]) >= time.time() + 899
        async with s.get(url, headers={"Authorization": "Bearer nope"}) as r:
            assert r.status == 401
            assert (await r.json())["title"] == "Unauthorized"
