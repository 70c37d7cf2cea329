"""The streaming API as the adapter reads it: connected through the request path's token, the
streaming host chosen safely, frames decoded, and a dropped stream noticed."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from adapters.mastodon.http import MissingScope
from adapters.mastodon.streaming import Frame, open_stream, parse_frame, streaming_base
from bridge.errors import AuthFailed
from tests.adapters.mastodon.conftest import HttpFactory, World


async def next_frame(ws: aiohttp.ClientWebSocketResponse) -> Frame | None:
    msg = await asyncio.wait_for(ws.receive(), 5)
    if msg.type != aiohttp.WSMsgType.TEXT:
        return None
    return parse_frame(msg.data)


async def test_user_hashtag_list_and_direct_streams_then_a_drop(world: World, make_http: HttpFactory) -> None:
    http = await make_http()
    instance = await http.get("/api/v2/instance")
    base = streaming_base(world.server.url, instance["configuration"]["urls"]["streaming"])
    assert base == world.server.url.replace("http://", "ws://")
    world.server.follow(world.team, world.alice)
    lst = await http.post("/api/v1/lists", {"title": "people"})
    await http.post(f"/api/v1/lists/{lst['id']}/accounts", {"account_ids": [world.alice.id]})
    user = await open_stream(http, base, "user")
    tag = await open_stream(http, base, "hashtag", tag="launch")
    listed = await open_stream(http, base, "list", list=lst["id"])
    direct = await open_stream(http, base, "direct")
    await asyncio.sleep(0.1)
    s = world.server.post(world.alice, "we have #launch")
    for ws, stream in ((user, ("user",)), (tag, ("hashtag", "launch")), (listed, ("list", lst["id"]))):
        frame = await next_frame(ws)
        assert frame is not None and frame.event == "update" and frame.stream == stream
        assert frame.payload["id"] == s.id and frame.payload["account"]["acct"] == "alice@other.example"
    dm = world.server.dm(world.bob, [world.team], "hello in private")
    frame = await next_frame(direct)
    assert frame is not None and frame.event == "conversation" and frame.payload["last_status"]["id"] == dm.id
    frame = await next_frame(user)
    assert frame is not None and frame.event == "notification" and frame.payload["status"]["id"] == dm.id
    await world.server.drop_streams()
    for ws in (user, tag, listed, direct):
        assert await next_frame(ws) is None
        assert ws.closed


async def test_stream_refusals_are_mapped(world: World, make_http: HttpFactory) -> None:
    base = world.server.url.replace("http://", "ws://")
    with pytest.raises(AuthFailed):
        await open_stream(await make_http(token="wrong"), base, "user")
    narrow = await make_http(token=world.server.add_token(world.team, ("read:statuses", "write")))
    with pytest.raises(MissingScope) as info:
        await open_stream(narrow, base, "user")
    assert info.value.scope == "read:notifications" and "Preferences → Development" in str(info.value)


@pytest.mark.parametrize(
    ("instance", "advertised", "expected"),
    [
        ("https://mastodon.social", "wss://streaming.mastodon.social", "wss://streaming.mastodon.social"),
        ("https://mastodon.social", "wss://mastodon.social", "wss://mastodon.social"),
        ("https://social.example.com", "wss://streaming.example.com", "wss://streaming.example.com"),
        ("https://mastodon.social", "wss://evil.example", "wss://mastodon.social"),
        ("https://social.co.uk", "wss://evil.co.uk", "wss://social.co.uk"),
        ("https://mastodon.social", "wss://mastodon.social.evil.example", "wss://mastodon.social"),
        ("https://mastodon.social", "ws://streaming.mastodon.social", "wss://mastodon.social"),
        ("https://mastodon.social", "", "wss://mastodon.social"),
        ("https://mastodon.social", "javascript:alert(1)", "wss://mastodon.social"),
        ("https://mastodon.social", "wss://[::1", "wss://mastodon.social"),
        ("http://127.0.0.1:8080", "ws://127.0.0.1:8080", "ws://127.0.0.1:8080"),
    ],
)
def test_streaming_base(instance: str, advertised: str, expected: str) -> None:
    assert streaming_base(instance, advertised) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            json.dumps({"stream": ["user"], "event": "update", "payload": json.dumps({"id": "1"})}),
            Frame(("user",), "update", {"id": "1"}),
        ),
        (json.dumps({"stream": ["user"], "event": "delete", "payload": "1"}), Frame(("user",), "delete", "1")),
        (
            json.dumps({"stream": ["user"], "event": "notification", "payload": {"id": "2"}}),
            Frame(("user",), "notification", {"id": "2"}),
        ),
        (json.dumps({"stream": ["user"], "event": "filters_changed"}), None),
        (json.dumps({"stream": ["user"], "event": "update", "payload": "not json"}), None),
        (json.dumps({"stream": ["user"], "event": "update", "payload": "[1, 2]"}), None),
        (json.dumps({"event": "delete", "payload": 5}), None),
        (json.dumps({"error": "Missing access token"}), None),
        ("[]", None),
        ("{", None),
        (b"\xff", None),
        (None, None),
    ],
)
def test_parse_frame(raw: object, expected: Frame | None) -> None:
    assert parse_frame(raw) == expected
