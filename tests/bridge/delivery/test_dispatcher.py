"""The dispatcher against the real store (SQLite): how often it asks the database while rooms
wait, and what happens to a send whose record fails."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bridge.app import Bridge
from bridge.errors import RateLimited
from bridge.model import ChatTarget
from bridge.storage.store import Store
from tests.conftest import BridgeFactory, until
from tests.fakes import FakeChat, FakeNetwork


def count_calls(obj: Any, *names: str) -> dict[str, int]:
    """Count calls of ``obj``'s methods ``names`` (they keep working)."""
    counts = dict.fromkeys(names, 0)
    for name in names:
        method = getattr(obj, name)

        async def counted(*args: Any, _name: str = name, _method: Any = method, **kwargs: Any) -> Any:
            counts[_name] += 1
            return await _method(*args, **kwargs)

        setattr(obj, name, counted)
    return counts


async def follow(bridge: Bridge, chat_id: str) -> None:
    chat: FakeChat = bridge.chats["fakechat"]  # type: ignore[assignment]
    answer = await chat.command(chat_id, "boss", "/follow alice.fake", admin=True)
    assert answer.ok, answer.text


async def test_one_room_sitting_out_a_429_is_not_polled_for(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    chat: FakeChat = bridge.chats["fakechat"]  # type: ignore[assignment]
    net: FakeNetwork = bridge.networks["fakenet"]  # type: ignore[assignment]
    for room in ("waiting", "idle-1", "idle-2"):
        await follow(bridge, room)
    chat.fail["waiting"] = [RateLimited(10, scope="waiting")]
    for n in range(5):
        await net.publish("alice.fake", f"post {n}")
    await until(lambda: len(chat.sent_to("idle-1")) == 5 and len(chat.sent_to("idle-2")) == 5)
    await asyncio.sleep(0.2)  # the 429 has been answered; the room now waits 10 s
    counts = count_calls(bridge.store, "due_destinations", "next_due", "pending_for")
    started = time.monotonic()
    await asyncio.sleep(2.0)
    per_second = sum(counts.values()) / (time.monotonic() - started)
    assert chat.sent_to("waiting") == []  # still waiting
    assert per_second <= 3, f"{counts} in 2 s while one room sits out a 429"


async def test_a_send_whose_record_fails_is_recorded_not_resent(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    chat: FakeChat = bridge.chats["fakechat"]  # type: ignore[assignment]
    net: FakeNetwork = bridge.networks["fakenet"]  # type: ignore[assignment]
    await follow(bridge, "room")
    real = bridge.store.mark_sent_many
    failures = {"left": 4}

    async def flaky(confirmed: Any) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("database is restarting")
        await real(confirmed)

    bridge.store.mark_sent_many = flaky  # type: ignore[method-assign]
    await net.publish("alice.fake", "sent once")
    await until(lambda: failures["left"] == 0, timeout=10)
    [row] = await bridge.store.status_rows()
    for _ in range(100):
        [row] = await bridge.store.status_rows()
        if row["sent"]:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # a resend would show up now
    assert chat.sent_to("room") == [net.published[0].ref.id]  # one message in the chat
    [row] = await bridge.store.status_rows()
    assert (row["sent"], row["pending"], row["failed"]) == (1, 0, 0)


async def test_a_room_paused_from_elsewhere_gets_nothing_more_of_its_backlog(make_bridge: BridgeFactory) -> None:
    """`bridge pause` typed while the room's worker holds a batch: it stops before its next
    send, not after the batch."""
    bridge = await make_bridge()
    chat: FakeChat = bridge.chats["fakechat"]  # type: ignore[assignment]
    net: FakeNetwork = bridge.networks["fakenet"]  # type: ignore[assignment]
    await follow(bridge, "room")
    chat.fail["room"] = [RateLimited(0.5, scope="room")]  # the backlog builds up meanwhile
    for n in range(10):
        await net.publish("alice.fake", f"post {n}")
    chat.send_delay = 0.2
    await until(lambda: len(chat.sent_to("room")) >= 1, timeout=5)
    await Store().pause_destination(ChatTarget("fakechat", "room"), "paused by the command line")  # another process
    await asyncio.sleep(3.5)  # the change reaches the bridge; a batch of 10 would take 2 s
    assert 1 <= len(chat.sent_to("room")) < 10 - 3, chat.sent_to("room")
