"""A Host that records what the Telegram adapter tells the core and answers from a script."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bridge.model import Answer, Batch, ChatEvent, ChatTarget, Source


class FakeHost:
    """Records events, links, moves and unavailable destinations. ``answer`` decides the Answer
    for each event (default: echo the command)."""

    def __init__(self, answer: Callable[[ChatEvent], Answer] | None = None) -> None:
        self.log = logging.getLogger("test.telegram.host")
        self.events: list[ChatEvent] = []
        self.links: list[tuple[ChatTarget, str, str]] = []
        self.moves: list[tuple[ChatTarget, ChatTarget]] = []
        self.unavailable: list[tuple[ChatTarget, str]] = []
        self.state: dict[str, str] = {}
        self.answer = answer or (lambda e: Answer(f"did {e.command or e.kind} {e.args}".strip()))
        self._changed = asyncio.Event()

    async def load_state(self, key: str) -> str | None:
        return self.state.get(key)

    async def save_state(self, key: str, value: str | None) -> None:
        if value is None:
            self.state.pop(key, None)
        else:
            self.state[key] = value

    def sources(self) -> frozenset[Source]:
        return frozenset()

    async def sources_changed(self) -> None:
        await asyncio.Event().wait()

    async def load_cursor(self, key: str) -> str | None:
        return None

    async def ingest(self, batch: Batch) -> None:
        raise AssertionError("a chat adapter must not ingest")

    async def handle(self, event: ChatEvent) -> Answer:
        self.events.append(event)
        self._changed.set()
        return self.answer(event)

    async def link_message(self, target: ChatTarget, message_id: str, token: str) -> None:
        self.links.append((target, message_id, token))
        self._changed.set()

    async def chat_moved(self, old: ChatTarget, new: ChatTarget) -> None:
        self.moves.append((old, new))
        self._changed.set()

    async def destination_unavailable(self, target: ChatTarget, reason: str) -> None:
        self.unavailable.append((target, reason))
        self._changed.set()

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``condition()`` holds (checked after each recorded call)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError("condition not met in time")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
