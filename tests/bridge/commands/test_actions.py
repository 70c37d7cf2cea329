"""Actions taken as the team account: written down before the network call with a key, finished
once after a lost answer; refused with the network's reason where the network does not allow
them; network prefixes only for configured accounts; a second account of one network type."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from bridge.app import Bridge
from bridge.config import config_from_dict
from bridge.model import ButtonAction, Source, SourceKind
from bridge.storage.store import Store
from tests.fakes import FakeChat, FakeNetwork

FAKES = {"fakenet": FakeNetwork, "fakechat": FakeChat}
Factory = Callable[..., Awaitable[Bridge]]


@pytest.fixture
async def bridge_with(db_url: str) -> AsyncIterator[Factory]:
    """A bridge on fake adapters with the given network sections (on SQLite and Postgres)."""
    running: list[Bridge] = []

    async def make(**networks: dict[str, Any]) -> Bridge:
        data = {
            "database": {"url": db_url},
            "bridge": {"admins": ["fakechat:boss"], "senders": ["fakechat:sender"]},
            "fakechat": {},
            **(networks or {"fakenet": {}}),
        }
        b = Bridge(config_from_dict(data, adapter_classes=FAKES), adapter_classes=FAKES)
        await b.start()
        running.append(b)
        return b

    yield make
    for b in running:
        await b.stop()


async def test_an_action_whose_answer_was_lost_is_finished_once_with_its_key(bridge_with: Factory) -> None:
    b = await bridge_with()
    chat, net = b.chats["fakechat"], b.networks["fakenet"]
    net.lose_answers = 1
    answer = await chat.command("r", "sender", "/post launch day")
    assert not answer.ok and "tries again by itself" in answer.text and "cannot be done twice" in answer.text
    [row] = await Store().actions()
    assert row["status"] == "pending" and row["key"] and row["actor"] == "fakechat:sender" and row["text"] == "launch day"

    assert await b.commands.actions.finish_pending(timedelta(0)) == 1
    assert net.actions == [("post", "launch day")]  # the retry with the same key created nothing new
    [row] = await Store().actions()
    assert row["status"] == "done" and row["result_url"] == "https://fake.example/out1"
    [(target, notice)] = chat.notices
    assert str(target) == "fakechat:r" and "'launch day'" in notice and "is done: https://fake.example/out1" in notice
    assert await b.commands.actions.finish_pending(timedelta(0)) == 0  # nothing left to finish


async def test_the_action_row_is_written_before_the_network_call(bridge_with: Factory) -> None:
    b = await bridge_with()
    chat, net = b.chats["fakechat"], b.networks["fakenet"]
    seen: list[list[dict[str, Any]]] = []
    original = net.post

    async def post(text: str, key: str) -> Any:
        seen.append(await Store().actions())
        return await original(text, key)

    net.post = post  # type: ignore[method-assign]
    assert (await chat.command("r", "sender", "/post hello")).ok
    [[during]] = seen
    assert during["status"] == "pending" and during["action"] == "post" and during["key"]
    [after] = await Store().actions()
    assert after["status"] == "done" and after["key"] == during["key"]


async def test_a_network_that_refuses_likes_gets_no_like_button_and_a_press_is_refused_with_its_reason(
    bridge_with: Factory,
) -> None:
    b = await bridge_with(fakenet={"refuse": {"like": "likes are Enterprise-only since April 2026"}})
    chat, net = b.chats["fakechat"], b.networks["fakenet"]
    await b.subscribe(Source("fakenet", SourceKind.FOLLOW, "id:alice.fake"), "alice.fake", chat.target("r"), "boss")
    await net.publish("alice.fake", "hello")
    [delivery] = await chat.wait_sent(1)
    actions = [button.action for button in delivery.buttons]
    assert ButtonAction.LIKE not in actions and ButtonAction.REPOST in actions and ButtonAction.REPLY in actions

    answer = await chat.press("r", "sender", f"like:{delivery.id}")  # a button from before the change
    assert not answer.ok and answer.text == "Not done: fakenet does not allow it: likes are Enterprise-only since April 2026."
    assert net.actions == []
    [row] = await Store().actions()
    assert row["status"] == "refused" and "Enterprise-only" in row["error"]
    assert (await chat.press("r", "sender", f"repost:{delivery.id}")).ok


async def test_a_prefix_is_a_configured_account_name_only(bridge_with: Factory) -> None:
    b = await bridge_with(fakenet={}, x={"type": "fakenet"})
    chat, fake, x = b.chats["fakechat"], b.networks["fakenet"], b.networks["x"]
    answer = await chat.command("r", "sender", "/post X: launch")  # text about X, not a post to x
    assert not answer.ok and "Say which network" in answer.text
    assert fake.actions == [] and x.actions == []
    assert (await chat.command("r", "sender", "/post x: launch")).ok
    assert x.actions == [("post", "launch")] and fake.actions == []
    assert (await chat.command("r", "sender", "/post fakenet: https://example.com is live")).ok
    assert fake.actions == [("post", "https://example.com is live")]


async def test_a_second_account_of_one_network_type_carries_its_own_name(bridge_with: Factory) -> None:
    b = await bridge_with(fakenet={}, fake_sales={"type": "fakenet", "max_length": 10})
    chat, sales = b.chats["fakechat"], b.networks["fake_sales"]
    assert isinstance(sales, FakeNetwork) and sales.name == "fake_sales"
    answer = await chat.command("r", "boss", "/follow fake_sales:alice.fake")
    assert answer.ok and "on fake_sales" in answer.text
    await sales.publish("alice.fake", "from the sales account")
    [delivery] = await chat.wait_sent(1)
    assert delivery.post.ref.network == "fake_sales"
    assert "allows 10" in (await chat.command("r", "sender", "/post fake_sales: a bit too long")).text
    rows = await Store().actions()
    assert rows[0]["network"] == "fake_sales"
