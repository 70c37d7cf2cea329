"""The order in which incoming updates are handled: each chat's in order, chats side by side."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any

from telegram.ext import BaseUpdateProcessor

# Updates python-telegram-bot may hold at once while they wait for their chat's turn (a bound
# on memory, not on speed: the handling itself is bounded by ``slots``).
BACKLOG = 4096


class ChatOrderedUpdates(BaseUpdateProcessor):
    """Handles at most ``slots`` updates at a time, never two of one chat at once, and one
    chat's in the order Telegram sent them: "/follow x" then "/unfollow x" must not swap.

    An update waiting for its chat's turn holds no slot, so a burst in one chat (everyone
    pressing Like on one post) does not hold up the other chats.
    """

    def __init__(self, slots: int = 16) -> None:
        super().__init__(max_concurrent_updates=BACKLOG)
        self._slots = asyncio.Semaphore(slots)
        self._turns: dict[int, tuple[asyncio.Lock, int]] = {}  # per chat: its lock, updates using it

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Await ``coroutine`` once the update's chat and a slot are free."""
        chat = getattr(update, "effective_chat", None)
        chat_id = getattr(chat, "id", None)
        if not isinstance(chat_id, int):
            await self._run(coroutine, None)
            return
        lock, users = self._turns.get(chat_id, (asyncio.Lock(), 0))
        self._turns[chat_id] = (lock, users + 1)
        try:
            await self._run(coroutine, lock)
        finally:
            lock, users = self._turns[chat_id]
            if users == 1:
                del self._turns[chat_id]
            else:
                self._turns[chat_id] = (lock, users - 1)

    async def _run(self, coroutine: Awaitable[Any], lock: asyncio.Lock | None) -> None:
        started = False
        try:
            async with lock or contextlib.nullcontext(), self._slots:
                started = True
                await coroutine
        finally:
            close = getattr(coroutine, "close", None)
            if not started and close is not None:
                close()  # cancelled while waiting for its turn: never awaited, and says so quietly

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to free: python-telegram-bot waits for the updates in flight itself."""
