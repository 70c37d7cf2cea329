"""Pacing to Telegram's limits: per chat, with a 429 holding only its own chat."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from adapters.telegram.pacing import Pacer
from bridge.errors import RateLimited


class FakeClock:
    """A clock that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sends: list[tuple[float, int]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


async def send_all(pacer: Pacer, clock: FakeClock, chats: list[int]) -> None:
    for chat in chats:
        await pacer.acquire(chat)
        clock.sends.append((clock.now, chat))


async def test_private_chat_gets_one_message_per_second() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    await send_all(pacer, clock, [5, 5, 5])
    times = [t for t, _ in clock.sends]
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(times))


async def test_group_gets_twenty_messages_per_minute() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    await send_all(pacer, clock, [-100] * 21)
    times = [t for t, _ in clock.sends]
    assert times[19] - times[0] < 1.0  # a burst of 20 is allowed
    assert times[20] - times[0] >= 60.0  # the 21st waits for the minute


async def test_overall_rate_stays_under_thirty_per_second() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    await send_all(pacer, clock, list(range(1, 91)))  # 90 different private chats
    times = [t for t, _ in clock.sends]
    for i in range(len(times) - 30):
        assert times[i + 30] - times[i] >= 1.0


async def test_a_penalised_chat_does_not_hold_up_another() -> None:
    pacer = Pacer()
    pacer.penalize(-100, 30)
    with pytest.raises(RateLimited) as caught:
        await pacer.acquire(-100, max_wait=5)
    assert caught.value.scope == "-100" and caught.value.retry_after > 25
    # Another chat sends at once, while the first one is held.
    await asyncio.wait_for(pacer.acquire(-200, max_wait=5), 0.5)
    await asyncio.wait_for(pacer.acquire(7, max_wait=5), 0.5)


async def test_waiting_chat_and_free_chat_run_concurrently() -> None:
    pacer = Pacer()
    pacer.penalize(11, 1.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    done: dict[int, float] = {}

    async def go(chat: int) -> None:
        await pacer.acquire(chat)
        done[chat] = loop.time() - started

    await asyncio.gather(go(11), go(12))
    assert done[12] < 0.2
    assert done[11] >= 0.95


async def test_workers_sharing_a_bot_divide_the_overall_rate_and_take_it_back_alone() -> None:
    """Three processes send for one bot: each sends at a third of the rate, so together they
    stay under 30 per second; when the others are gone, the one left has the whole rate."""
    clock = FakeClock()
    live = [3]
    pacer = Pacer(clock=clock, sleep=clock.sleep, share=lambda: live[0])
    await send_all(pacer, clock, list(range(1, 31)))  # 30 chats, one message each
    times = [t for t, _ in clock.sends]
    assert times[-1] - times[0] >= 29 * 3 / 29.5  # about three seconds for thirty: a third of the rate
    live[0] = 1
    clock.sends.clear()
    await send_all(pacer, clock, list(range(31, 61)))
    times = [t for t, _ in clock.sends]
    assert times[-1] - times[0] < 1.2  # alone again: thirty in about a second
