"""A small Host for adapter-level tests: records what the adapter hands the core and answers
with scripted Answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bridge.model import Answer, ChatEvent, ChatTarget


class FakeHost:
    """Records events and unavailable destinations; ``answer`` decides the Answer per event."""

    def __init__(self) -> None:
        self.log = logging.getLogger("test.discord")
        self.state: dict[str, str] = {}
        self.events: list[ChatEvent] = []
        self.unavailable: list[tuple[ChatTarget, str]] = []
        self.linked: list[tuple[ChatTarget, str, str]] = []
        self.answer: Callable[[ChatEvent], Answer] = lambda event: Answer(f"ok {event.command or event.kind}")
        self.changed = asyncio.Event()

    async def load_state(self, key: str) -> str | None:
        return self.state.get(key)

    async def save_state(self, key: str, value: str | None) -> None:
        if value is None:
            self.state.pop(key, None)
        else:
            self.state[key] = value

    async def handle(self, event: ChatEvent) -> Answer:
        self.events.append(event)
        self.changed.set()
        return self.answer(event)

    async def link_message(self, target: ChatTarget, message_id: str, token: str) -> None:
        self.linked.append((target, message_id, token))

    async def chat_moved(self, old: ChatTarget, new: ChatTarget) -> None:
        raise AssertionError("Discord channels never move")

    async def destination_unavailable(self, target: ChatTarget, reason: str) -> None:
        self.unavailable.append((target, reason))
        self.changed.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()
