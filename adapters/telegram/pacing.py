"""Pace sends to Telegram's limits, one chat at a time.

Telegram (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this):
about 30 messages per second overall, 1 per second in a private chat, 20 per minute in a
group or channel. A 429 names how long to wait; it concerns the chat it was answered for.

python-telegram-bot's AIORateLimiter pauses every request on one 429. Here each chat has its
own schedule: a chat that must wait reserves its own next slot and only the overall spacing
is shared, so a slow or penalised chat never delays another one.

Several processes sending for one bot (several workers on one database) divide the overall
rate among them: each spaces its sends by ``share`` times the interval, re-read at every send,
so the bot stays under 30 per second together, and a process left alone gets the whole rate back
within a lease. A chat is served by one process at a time, so its own limits need no share.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

from bridge.errors import RateLimited

# Margins keep us just under the limits despite clock and network jitter.
GLOBAL_PER_SECOND = 29.0
PRIVATE_INTERVAL = 1.05
GROUP_PER_MINUTE = 20
GROUP_WINDOW = 61.0


def is_private(chat_id: int | str) -> bool:
    """Telegram: private chats have positive ids (the user's id); groups and channels negative,
    and a chat named by its @username is a public channel or group."""
    return isinstance(chat_id, int) and chat_id > 0


class Pacer:
    """Hands out send slots: a global spacing plus a per-chat schedule.

    ``acquire(chat_id)`` returns when a message may be sent to that chat. When the wait for
    that chat would exceed ``max_wait`` it raises RateLimited instead (scope = the chat id),
    so a caller with other work can come back later instead of holding a worker.
    """

    def __init__(
        self,
        per_second: float | None = None,
        private_interval: float | None = None,
        group_per_minute: int | None = None,
        group_window: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        share: Callable[[], int] = lambda: 1,
    ) -> None:
        # None: the module's limits, read now (a test may scale the group window down).
        self._interval = 1.0 / (GLOBAL_PER_SECOND if per_second is None else per_second)
        self._private_interval = PRIVATE_INTERVAL if private_interval is None else private_interval
        self._group_per_minute = GROUP_PER_MINUTE if group_per_minute is None else group_per_minute
        self._group_window = GROUP_WINDOW if group_window is None else group_window
        self._clock = clock
        self._sleep = sleep
        # How many processes send for this bot (Host.workers): the overall rate is per bot, so
        # each takes its part. Per-chat limits need no share: one process serves a chat.
        self._share = share
        self._next_global = 0.0
        self._next_private: dict[int, float] = {}
        self._group_slots: dict[int | str, deque[float]] = {}
        self._blocked_until: dict[int | str, float] = {}

    @classmethod
    def unlimited(cls) -> Pacer:
        """A pacer that never waits on its own (a 429 still holds its chat): for a Bot API
        server without Telegram's limits, such as a benchmark's emulator."""
        return cls(per_second=float("inf"), private_interval=0.0, group_per_minute=2**31, group_window=0.0)

    def penalize(self, chat_id: int | str, retry_after: float) -> None:
        """The server answered 429 for ``chat_id``: hold that chat (only) for ``retry_after`` s."""
        until = self._clock() + retry_after
        self._blocked_until[chat_id] = max(self._blocked_until.get(chat_id, 0.0), until)

    def chat_wait(self, chat_id: int | str) -> float:
        """Seconds until ``chat_id`` has a free slot (0 when it may send now)."""
        return max(0.0, self._chat_slot(chat_id, self._clock()) - self._clock())

    def _chat_slot(self, chat_id: int | str, now: float) -> float:
        slot = max(now, self._blocked_until.get(chat_id, 0.0))
        if is_private(chat_id):
            return max(slot, self._next_private.get(chat_id, 0.0))
        slots = self._group_slots.get(chat_id)
        if slots is not None and len(slots) >= self._group_per_minute:
            slot = max(slot, slots[0] + self._group_window)
        return slot

    def _forget_idle(self, now: float) -> None:
        """Drop the schedules of chats that are free again, so memory follows the active chats."""
        self._next_private = {c: t for c, t in self._next_private.items() if t > now}
        self._group_slots = {c: q for c, q in self._group_slots.items() if q and q[-1] + self._group_window > now}
        self._blocked_until = {c: t for c, t in self._blocked_until.items() if t > now}

    async def acquire(self, chat_id: int | str, max_wait: float | None = None) -> None:
        """Wait for a slot to send one message to ``chat_id``; raise RateLimited when the chat's
        own wait is longer than ``max_wait`` (None: wait as long as needed)."""
        now = self._clock()
        if len(self._next_private) + len(self._group_slots) > 10_000:
            self._forget_idle(now)
        slot = self._chat_slot(chat_id, now)
        if max_wait is not None and slot - now > max_wait:
            raise RateLimited(slot - now, scope=str(chat_id), message=f"chat {chat_id} is paced for {slot - now:.1f}s")
        # Reserve the chat's slot before sleeping so concurrent sends to one chat queue up.
        if is_private(chat_id):
            self._next_private[chat_id] = slot + self._private_interval
        elif self._group_window > 0:  # no window (unlimited): nothing to remember
            slots = self._group_slots.setdefault(chat_id, deque())
            slots.append(slot)
            while len(slots) > self._group_per_minute:
                slots.popleft()
        if slot > now:
            await self._sleep(slot - now)
        # The overall spacing is taken only once the chat's own slot has come, so that it is
        # handed out in time order and a chat that waits holds nothing for the others.
        now = self._clock()
        global_slot = max(now, self._next_global)
        self._next_global = global_slot + self._interval * max(1, self._share())
        if is_private(chat_id):
            # The chat's next slot counts from when this message really goes out: waiting for
            # the overall spacing must not shorten the gap Telegram measures in that chat.
            self._next_private[chat_id] = max(self._next_private.get(chat_id, 0.0), global_slot + self._private_interval)
        if global_slot > now:
            await self._sleep(global_slot - now)
