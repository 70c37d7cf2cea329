"""The user stories of the Mastodon adapter, end to end: the real core (bridge.app.Bridge) with
the Mastodon adapter against the Mastodon emulator (over real sockets), and tests.fakes.FakeChat
as the room where people type commands, reply and press buttons."""

from __future__ import annotations

import re
from typing import Any

from bridge.model import ButtonAction, Delivery
from tests.adapters.mastodon.conftest import BridgeFactory, World
from tests.fakes import FakeChat

ROOM = "room1"


def sub_id(answer_text: str) -> str:
    m = re.search(r"\(#(\d+)\)", answer_text)
    assert m, answer_text
    return m.group(1)


async def cycle(b: Any) -> int:
    return await b.networks["mastodon"].poll_once()


def token(delivery: Delivery, action: ButtonAction) -> str:
    return next(button.token for button in delivery.buttons if button.action is action)


async def test_follow_relays_html_content_warning_boost_and_media(world: World, mastodon_bridge: BridgeFactory) -> None:
    server, alice, bob = world.server, world.alice, world.bob
    b = await mastodon_bridge()
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    answer = await chat.command(ROOM, "boss", "/follow @alice@other.example", admin=True)
    assert answer.ok, answer.text
    old = server.post(alice, "before the follow")
    await cycle(b)  # the subscription starts from now
    first = server.post(
        alice,
        html_content='<p>Launch <b>day</b> &amp; more: <a href="https://example.com/launch" rel="nofollow">'
        '<span class="invisible">https://</span><span class="">example.com/launch</span></a></p>'
        "<p>see you <script>alert(1)</script>there</p>",
        media=[("image", "https://files.example/logo.png", "our logo")],
    )
    cw = server.post(alice, "the ending of the film", spoiler_text="film spoilers")
    boost = server.boost(alice, server.post(bob, "bob's own words"))
    await cycle(b)
    sent = await chat.wait_sent(3, timeout=10)
    assert old.id not in chat.sent_to(ROOM)
    p = sent[0].post
    assert p.ref.id == first.id and p.ref.network == "mastodon"
    assert p.text == "Launch day & more: example.com/launch\n\nsee you there"
    assert [(lk.url, p.text[lk.start : lk.end]) for lk in p.links] == [("https://example.com/launch", "example.com/launch")]
    assert [(m.kind, m.alt) for m in p.media] == [("image", "our logo")]
    assert p.author.label == "Alice (@alice@other.example)"
    assert p.url == first.url
    assert sent[1].post.spoiler == "film spoilers" and sent[1].post.text == "the ending of the film"
    assert sent[1].post.ref.id == cw.id
    assert sent[2].post.reposted_by is not None and sent[2].post.reposted_by.handle == "alice@other.example"
    assert sent[2].post.ref.id == boost.reblog.id  # type: ignore[union-attr]

    # the room's filters: no boosts
    assert (await chat.command(ROOM, "boss", f"/filter {sub_id(answer.text)} reposts:off", admin=True)).ok
    server.boost(alice, server.post(bob, "again"))
    plain = server.post(alice, "a plain post")
    await cycle(b)
    await chat.wait_sent(4, timeout=10)
    await cycle(b)
    assert chat.sent_to(ROOM)[3:] == [plain.id]


async def test_hashtag_watch_and_phrase_refused_without_full_text_search(world: World, mastodon_bridge: BridgeFactory) -> None:
    server = world.server
    server.full_text_search = False
    b = await mastodon_bridge()
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    refused = await chat.command(ROOM, "boss", '/watch "home depot"', admin=True)
    assert not refused.ok
    assert "no full-text search" in refused.text and "hashtag" in refused.text and "/watch #home" in refused.text
    answer = await chat.command(ROOM, "boss", "/watch #quokka", admin=True)
    assert answer.ok, answer.text
    await cycle(b)
    hit = server.post(world.bob, "spotted a #Quokka today")
    server.post(world.bob, "nothing about marsupials")
    await cycle(b)
    await chat.wait_sent(1, timeout=10)
    await cycle(b)
    assert chat.sent_to(ROOM) == [hit.id]


async def test_phrase_watch_where_the_server_searches(world: World, mastodon_bridge: BridgeFactory) -> None:
    server = world.server
    b = await mastodon_bridge(full_text_search=True)
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    assert (await chat.command(ROOM, "boss", "/watch home depot", admin=True)).ok
    await cycle(b)
    hit = server.post(world.bob, "I love Home Depot")
    await cycle(b)
    await chat.wait_sent(1, timeout=10)
    assert chat.sent_to(ROOM) == [hit.id]


async def test_reply_threads_with_the_parents_visibility_and_buttons_act(world: World, mastodon_bridge: BridgeFactory) -> None:
    server, alice, team = world.server, world.alice, world.team
    b = await mastodon_bridge()
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    assert (await chat.command(ROOM, "boss", "/follow alice@other.example", admin=True)).ok
    await cycle(b)
    root = server.post(alice, "what do you all think?", visibility="unlisted")
    await cycle(b)
    [delivery] = await chat.wait_sent(1, timeout=10)
    answer = await chat.reply(ROOM, "sender", chat.message_id_of(root.id, ROOM), "we think it's great")
    assert answer.ok, answer.text
    [ours] = server.statuses_by(team)
    assert ours.in_reply_to is root and ours.visibility == "unlisted" and ours.text == "we think it's great"
    keys = [
        h.get("Idempotency-Key", "") for m, path, h in server.requests if m == "POST" and path.split("?")[0] == "/api/v1/statuses"
    ]
    assert len(keys) == 1 and len(keys[0]) == 32

    for action in (ButtonAction.LIKE, ButtonAction.REPOST, ButtonAction.FOLLOW):
        answer = await chat.press(ROOM, "sender", token(delivery, action))
        assert answer.ok, answer.text
    assert team.id in root.favourited_by
    assert team.id in root.reblogged_by
    assert alice.id in team.following


async def test_direct_message_in_and_reply_stays_direct(world: World, mastodon_bridge: BridgeFactory) -> None:
    server, bob, team = world.server, world.bob, world.team
    b = await mastodon_bridge()
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    assert (await chat.command(ROOM, "boss", "/inbox on", admin=True)).ok
    await cycle(b)
    dm = server.dm(bob, [team], "can you help with my order?")
    await cycle(b)
    [delivery] = await chat.wait_sent(1, timeout=10)
    assert delivery.post.ref.id == dm.id and delivery.post.reason == "dm"
    answer = await chat.reply(ROOM, "sender", chat.message_id_of(dm.id, ROOM), "sure, what's the number?")
    assert answer.ok, answer.text
    [ours] = server.statuses_by(team)
    assert ours.visibility == "direct" and ours.in_reply_to is dm
    assert ours.text == "@bob sure, what's the number?" or ours.text.startswith("@bob@team.example ")
    assert bob in ours.mentions
