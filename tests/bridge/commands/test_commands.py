"""The command layer: what each person may do, what bad input gets, and what is recorded."""

from __future__ import annotations

import pytest

from bridge.errors import NotFound, RateLimited
from bridge.storage.store import Store
from tests.conftest import BridgeFactory

BAD_INPUT = [
    ("/follow", "Usage: /follow <handle>"),
    ("/follow two words.fake", "Usage: /follow <handle>"),
    ("/follow missing.fake", "no fakenet account @missing.fake"),
    ("/follow nothandle", "is not a fakenet handle"),
    ("/follow othernet:alice.fake", "is not a fakenet handle"),
    ("/watch", "Usage: /watch <query>"),
    ("/watch " + "x" * 300, "at most 256"),
    ("/unfollow nobody.fake", "No follow matching"),
    ("/unwatch 999", "No watch matching"),
    ("/filter", "Usage: /filter <id>"),
    ("/filter 999 replies:off", "No subscription #999 in this room"),
    ("/inbox", "Usage: /inbox on"),
    ("/inbox maybe", "Usage: /inbox on"),
    ("/frobnicate", "Unknown command /frobnicate"),
    ("/dm alice.fake", "Usage: /dm <handle> <text>"),
    ("/post", "Not sent: the text is empty"),
    ("/post " + "y" * 301, "Not sent: the text is 301 characters; fakenet allows 300"),
]


@pytest.mark.parametrize(("text", "message"), BAD_INPUT)
async def test_bad_input_gets_one_line_and_changes_nothing(make_bridge: BridgeFactory, text: str, message: str) -> None:
    b = await make_bridge()
    chat, net = b.chats["fakechat"], b.networks["fakenet"]
    answer = await chat.command("r", "boss", text)
    assert not answer.ok
    assert message in answer.text
    assert "\n" not in answer.text
    assert await Store().subscriptions() == [] and net.actions == []


async def test_non_admin_cannot_change_feeds_but_can_list(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    chat = b.chats["fakechat"]
    for text in ("/follow alice.fake", "/watch pricing", "/inbox on", "/unfollow alice.fake", "/filter 1 replies:off"):
        answer = await chat.command("r", "member", text)
        assert not answer.ok and "Only this room's admins" in answer.text
    assert await Store().subscriptions() == []
    assert "No subscriptions" in (await chat.command("r", "member", "/subs")).text
    assert "/follow <handle>" in (await chat.command("r", "member", "/help")).text


async def test_bridge_admin_manages_any_room(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    answer = await b.chats["fakechat"].command("any", "boss", "/follow alice.fake")  # boss is in [bridge] admins
    assert answer.ok


async def test_subs_and_filter(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    chat = b.chats["fakechat"]
    await chat.command("r", "boss", "/follow alice.fake")
    await chat.command("r", "boss", '/watch "Home Depot"')
    answer = await chat.command("r", "boss", "/filter 1 replies:off include:pricing")
    assert answer.ok and answer.public and "replies:off" in answer.text
    subs = (await chat.command("r", "u", "/subs")).text
    assert "#1 follow @alice.fake (fakenet) – include:pricing replies:off" in subs
    assert "#2 watch '\"Home Depot\"' (fakenet)" in subs
    other_room = await chat.command("elsewhere", "boss", "/filter 1 replies:on")
    assert not other_room.ok  # a room cannot touch another room's subscription


async def test_non_sender_is_refused_everything_and_it_is_recorded(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    chat, net = b.chats["fakechat"], b.networks["fakenet"]
    await chat.command("r", "boss", "/follow alice.fake")
    post = await net.publish("alice.fake", "hello")
    await chat.wait_sent(1)
    mid = chat.message_id_of(post.ref.id, "r")
    tokens = {btn.action.value: btn.token for btn in chat.sent[0].buttons if btn.token}
    answers = [
        await chat.command("r", "member", "/post hi"),
        await chat.command("r", "member", "/dm bob.fake hi"),
        await chat.reply("r", "member", mid, "a reply"),
        *[await chat.press("r", "member", tokens[a]) for a in ("reply", "like", "repost", "follow")],
    ]
    assert all(not a.ok and "Only the bridge's senders" in a.text for a in answers)
    assert net.actions == []
    recorded = await Store().actions()
    assert len(recorded) == 7 and {r["status"] for r in recorded} == {"refused"}
    assert {r["actor"] for r in recorded} == {"fakechat:member"}


async def test_sender_replies_posts_and_uses_buttons(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    chat, net = b.chats["fakechat"], b.networks["fakenet"]
    await chat.command("r", "boss", "/follow alice.fake")
    post = await net.publish("alice.fake", "hello")
    await chat.wait_sent(1)
    mid = chat.message_id_of(post.ref.id, "r")
    tokens = {btn.action.value: btn.token for btn in chat.sent[0].buttons if btn.token}

    answer = await chat.reply("r", "sender", mid, "thanks!")
    assert answer.ok and "Replied to @alice.fake: https://fake.example/" in answer.text
    assert (await chat.command("r", "sender", "/post launch day")).ok
    assert (await chat.command("r", "sender", "/dm bob.fake hello bob")).ok
    for action in ("like", "repost", "follow"):
        assert (await chat.press("r", "sender", tokens[action])).ok
    prompt = await chat.press("r", "sender", tokens["reply"])
    assert prompt.ask_text_for == tokens["reply"]
    assert (await chat.answer_prompt("r", "sender", tokens["reply"], "via button")).ok
    assert net.actions == [
        ("reply", post.ref.id, "thanks!"),
        ("post", "launch day"),
        ("dm", "bob.fake", "hello bob"),
        ("like", post.ref.id),
        ("repost", post.ref.id),
        ("follow", "id:alice.fake"),
        ("reply", post.ref.id, "via button"),
    ]
    done = await Store().actions()
    assert {r["status"] for r in done} == {"done"} and {r["actor"] for r in done} == {"fakechat:sender"}


async def test_buttons_and_replies_only_work_in_their_own_chat(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    chat, net = b.chats["fakechat"], b.networks["fakenet"]
    await chat.command("r", "boss", "/follow alice.fake")
    post = await net.publish("alice.fake", "hello")
    await chat.wait_sent(1)
    like = next(btn.token for btn in chat.sent[0].buttons if btn.action.value == "like")
    answer = await chat.press("other", "sender", like)  # e.g. a forwarded message
    assert not answer.ok and "another chat" in answer.text
    forged = await chat.press("r", "sender", "like:99999")
    assert not forged.ok
    garbage = await chat.press("r", "sender", "'; DROP TABLE deliveries; --")
    assert not garbage.ok
    silent = await chat.reply("r", "sender", "424242", "a reply to some human message")
    assert silent.text == ""
    assert net.actions == [] and post


async def test_network_failures_become_clear_answers(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    chat, net = b.chats["fakechat"], b.networks["fakenet"]
    net.fail_next = [RateLimited(42, "writes"), NotFound("no such post")]
    first = await chat.command("r", "sender", "/post hi")
    second = await chat.command("r", "sender", "/post hi")
    assert "rate-limiting" in first.text and "42 s" in first.text
    assert "no such post" in second.text
    assert [r["status"] for r in await Store().actions()] == ["failed", "failed"]


async def test_inbox_on_and_off(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    chat, net = b.chats["fakechat"], b.networks["fakenet"]
    assert (await chat.command("inbox", "boss", "/inbox on")).public
    mention = await net.publish("bob.fake", "@team.fake are you there?", reason="mention")
    await chat.wait_sent(1)
    assert chat.sent_to("inbox") == [mention.ref.id]
    assert (await chat.command("inbox", "boss", "/inbox fakenet off")).ok
    assert b.matcher.sources("fakenet") == frozenset()
