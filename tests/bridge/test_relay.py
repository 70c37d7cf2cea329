"""The relay core end to end on fake adapters: subscribe, relay, filters, the ledger."""

from __future__ import annotations

from bridge.errors import DestinationUnavailable, Permanent
from tests.conftest import BridgeFactory


async def test_follow_then_post_is_relayed_once(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    net, chat = b.networks["fakenet"], b.chats["fakechat"]
    answer = await chat.command("room1", "u1", "/follow alice.fake", admin=True)
    assert answer.ok and answer.public and "Following @alice.fake" in answer.text
    post = await net.publish("alice.fake", "hello world")
    await net.deliver(post)  # the same post arriving twice
    await chat.wait_sent(1)
    await net.publish("bob.fake", "not followed")
    second = await net.publish("alice.fake", "second")
    await chat.wait_sent(2)
    assert chat.sent_to("room1") == [post.ref.id, second.ref.id]
