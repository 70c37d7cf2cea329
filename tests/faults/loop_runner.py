"""Run a hypothesis test against servers that live in one event loop.

hypothesis drives a plain function once per example; the emulators and adapters must outlive
the examples. ``LoopRunner`` owns a loop and one ``contextvars.Context`` (tortoise keeps its
connection in a ContextVar), and runs each coroutine to completion in both."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopRunner:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.context = contextvars.copy_context()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        # asyncio.timeout, not wait_for: wait_for would run the coroutine in a task of its own,
        # in a copy of the context, and tortoise's connection set there would be lost.
        async def bounded() -> T:
            async with asyncio.timeout(timeout):
                return await coro

        return self.loop.run_until_complete(self.loop.create_task(bounded(), context=self.context))

    def close(self) -> None:
        """Cancel what is left (server handlers of closed connections), then close the loop."""
        left = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in left:
            task.cancel()
        if left:
            self.loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()
