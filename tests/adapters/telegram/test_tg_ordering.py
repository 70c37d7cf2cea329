"""ChatOrderedUpdates on its own: one chat's updates in order, chats side by side, no chat's
backlog holding up the others (end to end it runs under every Telegram adapter test)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from adapters.telegram.ordering import ChatOrderedUpdates


@dataclass
class Chat:
    id: int


@dataclass
class FakeUpdate:
    effective_chat: Chat | None


async def handle(log: list[tuple[int, int]], chat: int, n: int, seconds: float) -> None:
    await asyncio.sleep(seconds)
    log.append((chat, n))


def submit(p: ChatOrderedUpdates, log: list[tuple[int, int]], chat: int, n: int, seconds: float) -> asyncio.Task[None]:
    # As python-telegram-bot does: one task per update, created in the order updates arrive.
    return asyncio.create_task(p.process_update(FakeUpdate(Chat(chat)), handle(log, chat, n, seconds)))


async def test_one_chat_in_order_while_another_chat_is_not_held_up() -> None:
    p = ChatOrderedUpdates(slots=2)
    log: list[tuple[int, int]] = []
    started = time.monotonic()
    busy = [submit(p, log, 1, n, 0.02) for n in range(40)]  # everyone pressing Like in chat 1
    other = submit(p, log, 2, 0, 0.02)
    await other
    assert time.monotonic() - started < 0.3, "chat 2 waited for chat 1's backlog"
    await asyncio.gather(*busy)
    assert [n for chat, n in log if chat == 1] == list(range(40))
    assert not p._turns  # nothing kept for chats that went quiet


async def test_at_most_slots_at_once() -> None:
    p = ChatOrderedUpdates(slots=3)
    running, most = 0, 0

    async def one() -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1

    await asyncio.gather(*(p.process_update(FakeUpdate(Chat(c)), one()) for c in range(10)))
    assert most == 3


async def test_an_update_without_a_chat_is_handled_too() -> None:
    p = ChatOrderedUpdates(slots=1)
    log: list[tuple[int, int]] = []
    await p.process_update(FakeUpdate(None), handle(log, 0, 7, 0))
    assert log == [(0, 7)]


async def test_cancelled_while_waiting_its_turn_is_closed_quietly() -> None:
    p = ChatOrderedUpdates(slots=1)
    log: list[tuple[int, int]] = []
    first = submit(p, log, 1, 0, 0.1)
    waiting = handle(log, 1, 1, 0)
    second = asyncio.create_task(p.process_update(FakeUpdate(Chat(1)), waiting))
    await asyncio.sleep(0.01)
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)
    # Closed, not left to be garbage-collected with "coroutine ... was never awaited".
    assert waiting.cr_frame is None
    await first
    assert log == [(1, 0)] and not p._turns
