"""The Mastodon emulator behaves as the documentation says a server does, over real sockets
with plain aiohttp: the adapter's tests are only as good as these semantics."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from tests.adapters.mastodon.conftest import World
from tests.emulators.mastodon import Fault, MastodonEmulator


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    session: aiohttp.ClientSession, world: World, method: str, path: str, token: str | None = None, **kw: Any
) -> tuple[int, Any, Any]:
    headers = dict(kw.pop("headers", {}))
    if token != "":
        headers["Authorization"] = f"Bearer {token or world.token}"
    async with session.request(method, world.server.url + path, headers=headers, **kw) as resp:
        body = await resp.json(content_type=None)
        return resp.status, body, resp.headers


async def test_instance_says_the_limits_and_the_streaming_host(world: World, client: aiohttp.ClientSession) -> None:
    status, v2, _ = await call(client, world, "GET", "/api/v2/instance", token="")
    assert status == 200
    assert v2["configuration"]["statuses"] == {
        "max_characters": 500,
        "max_media_attachments": 4,
        "characters_reserved_per_url": 23,
    }
    assert v2["configuration"]["urls"]["streaming"].startswith("ws://127.0.0.1:")
    _, v1, _ = await call(client, world, "GET", "/api/v1/instance", token="")
    assert v1["urls"]["streaming_api"] == v2["configuration"]["urls"]["streaming"]


async def test_credentials_and_tokens(world: World, client: aiohttp.ClientSession) -> None:
    status, me, _ = await call(client, world, "GET", "/api/v1/accounts/verify_credentials")
    assert (status, me["acct"], me["display_name"]) == (200, "team", "The Team")
    status, body, _ = await call(client, world, "GET", "/api/v1/accounts/verify_credentials", token="nope")
    assert (status, body) == (401, {"error": "The access token is invalid"})
    status, body, _ = await call(client, world, "GET", "/api/v1/timelines/home", token="")
    assert status == 401


async def test_a_token_without_the_scope_gets_403(world: World, client: aiohttp.ClientSession) -> None:
    read_only = world.server.add_token(world.team, ("read",))
    status, body, _ = await call(client, world, "POST", "/api/v1/statuses", token=read_only, json={"status": "hi"})
    assert (status, body) == (403, {"error": "This action is outside the authorized scopes"})
    narrow = world.server.add_token(world.team, ("read:statuses", "write:statuses"))
    status, _, _ = await call(client, world, "GET", "/api/v1/notifications", token=narrow)
    assert status == 403
    status, _, _ = await call(client, world, "GET", "/api/v1/timelines/home", token=narrow)
    assert status == 200


async def test_remote_accounts_need_resolve(world: World, client: aiohttp.ClientSession) -> None:
    carol = world.server.add_account("carol", "far.example", display_name="Carol", known=False)
    status, _, _ = await call(client, world, "GET", "/api/v1/accounts/lookup", params={"acct": "carol@far.example"})
    assert status == 404
    _, found, _ = await call(client, world, "GET", "/api/v2/search", params={"q": "@carol@far.example", "type": "accounts"})
    assert found["accounts"] == []
    _, found, _ = await call(
        client, world, "GET", "/api/v2/search", params={"q": "@carol@far.example", "type": "accounts", "resolve": "true"}
    )
    assert [a["acct"] for a in found["accounts"]] == ["carol@far.example"]
    status, account, _ = await call(client, world, "GET", "/api/v1/accounts/lookup", params={"acct": "carol@far.example"})
    assert (status, account["id"]) == (200, carol.id)
    # resolve needs a user token
    status, _, _ = await call(client, world, "GET", "/api/v2/search", token="", params={"q": "x", "resolve": "true"})
    assert status == 401


async def test_full_text_search_can_be_off(world: World, client: aiohttp.ClientSession) -> None:
    world.server.post(world.alice, "the quarterly results are in")
    _, found, _ = await call(client, world, "GET", "/api/v2/search", params={"q": "quarterly results", "type": "statuses"})
    assert len(found["statuses"]) == 1
    world.server.full_text_search = False
    _, found, _ = await call(client, world, "GET", "/api/v2/search", params={"q": "quarterly results", "type": "statuses"})
    assert found["statuses"] == []


async def test_account_statuses_paginate_with_link_headers(world: World, client: aiohttp.ClientSession) -> None:
    posts = [world.server.post(world.alice, f"post {i}") for i in range(5)]
    ids = [p.id for p in posts]
    path = f"/api/v1/accounts/{world.alice.id}/statuses"
    _, page, headers = await call(client, world, "GET", path, params={"limit": "2"})
    assert [s["id"] for s in page] == [ids[4], ids[3]]  # newest first
    link = headers["Link"]
    assert f"max_id={ids[3]}" in link and 'rel="next"' in link and f"min_id={ids[4]}" in link
    _, page, _ = await call(client, world, "GET", path, params={"limit": "2", "max_id": ids[3]})
    assert [s["id"] for s in page] == [ids[2], ids[1]]
    # since_id: the newest ones after it; min_id: the ones just after it (both newest first)
    _, page, _ = await call(client, world, "GET", path, params={"limit": "2", "since_id": ids[0]})
    assert [s["id"] for s in page] == [ids[4], ids[3]]
    _, page, _ = await call(client, world, "GET", path, params={"limit": "2", "min_id": ids[0]})
    assert [s["id"] for s in page] == [ids[2], ids[1]]
    _, page, headers = await call(client, world, "GET", path, params={"min_id": ids[4]})
    assert page == [] and "Link" not in headers


async def test_exclude_replies_and_reblogs(world: World, client: aiohttp.ClientSession) -> None:
    own = world.server.post(world.alice, "thread start")
    world.server.post(world.alice, "thread continues", in_reply_to=own)
    world.server.post(world.alice, "@bob answer", in_reply_to=world.server.post(world.bob, "question"))
    world.server.boost(world.alice, world.server.post(world.bob, "boost me"))
    path = f"/api/v1/accounts/{world.alice.id}/statuses"
    _, all_, _ = await call(client, world, "GET", path)
    assert len(all_) == 4
    _, page, _ = await call(client, world, "GET", path, params={"exclude_replies": "true", "exclude_reblogs": "true"})
    assert sorted(s["id"] for s in page) == sorted([own.id, *[s["id"] for s in all_ if s["in_reply_to_id"] == own.id]])


async def test_home_tag_and_list_timelines(world: World, client: aiohttp.ClientSession) -> None:
    world.server.follow(world.team, world.alice)
    seen = world.server.post(world.alice, "hello #Cats")
    world.server.post(world.bob, "not followed #cats")
    _, home, _ = await call(client, world, "GET", "/api/v1/timelines/home")
    assert [s["id"] for s in home] == [seen.id]
    _, tagged, _ = await call(client, world, "GET", "/api/v1/timelines/tag/cats")
    assert len(tagged) == 2
    _, lst, _ = await call(client, world, "POST", "/api/v1/lists", json={"title": "followed"})
    status, body, _ = await call(
        client, world, "POST", f"/api/v1/lists/{lst['id']}/accounts", json={"account_ids": [world.bob.id]}
    )
    assert (status, body) == (404, {"error": "Record not found"}), "only followed accounts can be in a list"
    status, _, _ = await call(
        client, world, "POST", f"/api/v1/lists/{lst['id']}/accounts", json={"account_ids": [world.alice.id]}
    )
    assert status == 200
    _, members, _ = await call(client, world, "GET", f"/api/v1/lists/{lst['id']}/accounts")
    assert [m["acct"] for m in members] == ["alice@other.example"]
    _, timeline, _ = await call(client, world, "GET", f"/api/v1/timelines/list/{lst['id']}")
    assert [s["id"] for s in timeline] == [seen.id]
    _, lists, _ = await call(client, world, "GET", "/api/v1/lists")
    assert [x["title"] for x in lists] == ["followed"]


async def test_notifications_and_conversations(world: World, client: aiohttp.ClientSession) -> None:
    mention = world.server.post(world.alice, "@team@team.example hello")
    world.server.follow(world.alice, world.team)
    dm = world.server.dm(world.bob, [world.team], "psst")
    theirs = world.server.post(world.team, "ours")
    await call(client, world, "POST", f"/api/v1/statuses/{theirs.id}/favourite", token=world.server.add_token(world.bob))
    _, notes, _ = await call(client, world, "GET", "/api/v1/notifications")
    assert sorted(n["type"] for n in notes) == ["favourite", "mention", "mention"]
    _, mentions, _ = await call(client, world, "GET", "/api/v1/notifications", params=[("types[]", "mention")])
    assert {n["status"]["id"] for n in mentions} == {mention.id, dm.id}
    _, convos, _ = await call(client, world, "GET", "/api/v1/conversations")
    assert len(convos) == 1 and convos[0]["last_status"]["id"] == dm.id
    assert [a["acct"] for a in convos[0]["accounts"]] == ["bob"]
    assert convos[0]["last_status"]["visibility"] == "direct"


async def test_idempotency_key_makes_one_status(world: World, client: aiohttp.ClientSession) -> None:
    headers = {"Idempotency-Key": "action-42"}
    _, first, _ = await call(client, world, "POST", "/api/v1/statuses", json={"status": "once"}, headers=headers)
    _, again, _ = await call(client, world, "POST", "/api/v1/statuses", json={"status": "once"}, headers=headers)
    assert first["id"] == again["id"]
    assert [s.text for s in world.server.statuses_by(world.team)] == ["once"]
    _, other, _ = await call(client, world, "POST", "/api/v1/statuses", json={"status": "once"}, headers={"Idempotency-Key": "b"})
    assert other["id"] != first["id"]


async def test_status_length_and_replies(world: World, client: aiohttp.ClientSession) -> None:
    url = "https://example.com/" + "x" * 200
    text = ("a" * 470) + " " + url  # 470 + 1 + 23 = 494: fits, as the server counts URLs
    status, body, _ = await call(client, world, "POST", "/api/v1/statuses", json={"status": text})
    assert status == 200, body
    status, body, _ = await call(client, world, "POST", "/api/v1/statuses", json={"status": "a" * 501})
    assert (status, body) == (422, {"error": "Validation failed: Text character limit of 500 exceeded"})
    parent = world.server.post(world.alice, "question?")
    _, reply, _ = await call(
        client, world, "POST", "/api/v1/statuses", json={"status": "@alice@other.example answer", "in_reply_to_id": parent.id}
    )
    assert reply["in_reply_to_id"] == parent.id
    status, _, _ = await call(client, world, "POST", "/api/v1/statuses", json={"status": "x", "in_reply_to_id": "999"})
    assert status == 404


async def test_favourite_reblog_follow(world: World, client: aiohttp.ClientSession) -> None:
    s = world.server.post(world.alice, "nice")
    _, fav, _ = await call(client, world, "POST", f"/api/v1/statuses/{s.id}/favourite")
    assert fav["favourited"] is True and fav["favourites_count"] == 1
    _, boost, _ = await call(client, world, "POST", f"/api/v1/statuses/{s.id}/reblog")
    _, again, _ = await call(client, world, "POST", f"/api/v1/statuses/{s.id}/reblog")
    assert boost["reblog"]["id"] == s.id and again["id"] == boost["id"]
    _, rel, _ = await call(client, world, "POST", f"/api/v1/accounts/{world.alice.id}/follow")
    assert rel["following"] is True
    dm = world.server.dm(world.alice, [world.team], "private")
    status, _, _ = await call(client, world, "POST", f"/api/v1/statuses/{dm.id}/reblog")
    assert status == 422


async def test_rate_limit_headers_and_429() -> None:
    server = MastodonEmulator(rate_limit=3, rate_window=60.0)
    await server.start()
    try:
        team = server.add_account("team")
        token = server.add_token(team)
        other = server.add_token(server.add_account("other"))
        async with aiohttp.ClientSession() as session:
            seen = []
            for _ in range(4):
                async with session.get(f"{server.url}/api/v1/timelines/home", headers={"Authorization": f"Bearer {token}"}) as r:
                    seen.append((r.status, r.headers["X-RateLimit-Limit"], r.headers["X-RateLimit-Remaining"]))
                    reset = datetime.fromisoformat(r.headers["X-RateLimit-Reset"].replace("Z", "+00:00")).timestamp()
            assert seen == [(200, "3", "2"), (200, "3", "1"), (200, "3", "0"), (429, "3", "0")]
            assert time.time() < reset <= time.time() + 60
            async with session.get(f"{server.url}/api/v1/timelines/home", headers={"Authorization": f"Bearer {other}"}) as r:
                assert r.status == 200, "the budget is per token"
    finally:
        await server.stop()


async def test_injected_faults(world: World, client: aiohttp.ClientSession) -> None:
    world.server.inject(Fault(status=503), Fault(delay=0.3))
    status, _, _ = await call(client, world, "GET", "/api/v1/timelines/home")
    assert status == 503
    started = time.monotonic()
    status, _, _ = await call(client, world, "GET", "/api/v1/timelines/home")
    assert status == 200 and time.monotonic() - started >= 0.3
    world.server.storm_429(2, reset_in=5)
    for _ in range(2):
        status, _, headers = await call(client, world, "GET", "/api/v1/timelines/home")
        assert status == 429 and headers["X-RateLimit-Remaining"] == "0"
    status, _, _ = await call(client, world, "GET", "/api/v1/timelines/home")
    assert status == 200


async def recv(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def test_streaming_sends_payloads_as_strings_and_can_drop(world: World, client: aiohttp.ClientSession) -> None:
    world.server.follow(world.team, world.alice)
    base = world.server.url.replace("http", "ws")
    auth = {"Authorization": f"Bearer {world.token}"}
    async with client.ws_connect(f"{base}/api/v1/streaming?stream=user", headers=auth) as user_ws:
        async with client.ws_connect(f"{base}/api/v1/streaming", headers=auth) as tag_ws:
            await tag_ws.send_str(json.dumps({"type": "subscribe", "stream": "hashtag", "tag": "News"}))
            await tag_ws.send_str(json.dumps({"type": "subscribe", "stream": "direct"}))
            await asyncio.sleep(0.1)
            s = world.server.post(world.alice, "breaking #news")
            frame = await recv(user_ws)
            assert frame["event"] == "update" and frame["stream"] == ["user"]
            assert isinstance(frame["payload"], str) and json.loads(frame["payload"])["id"] == s.id
            frame = await recv(tag_ws)
            assert frame["event"] == "update" and json.loads(frame["payload"])["id"] == s.id
            world.server.post(world.bob, "@team hi")
            frame = await recv(user_ws)
            assert frame["event"] == "notification" and json.loads(frame["payload"])["type"] == "mention"
            dm = world.server.dm(world.bob, [world.team], "secret")
            frames = [await recv(user_ws)]
            assert frames[0]["event"] == "notification"
            convo = await recv(tag_ws)
            assert convo["event"] == "conversation" and json.loads(convo["payload"])["last_status"]["id"] == dm.id
            world.server.delete(s)
            assert (await recv(user_ws)) == {"stream": ["user"], "event": "delete", "payload": s.id}
            await world.server.drop_streams()
            msg = await asyncio.wait_for(user_ws.receive(), 5)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_streaming_checks_the_token(world: World, client: aiohttp.ClientSession) -> None:
    base = world.server.url.replace("http", "ws")
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect(f"{base}/api/v1/streaming?stream=user", headers={"Authorization": "Bearer nope"})
    assert info.value.status == 401
    narrow = world.server.add_token(world.team, ("write",))
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect(f"{base}/api/v1/streaming?stream=user", headers={"Authorization": f"Bearer {narrow}"})
    assert info.value.status == 403
