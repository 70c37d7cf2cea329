"""Fixtures of the fault and abuse suite: the reference AT Protocol stack for the session (the
crash and shutdown runs relay real Bluesky posts), and the chat emulators."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.atproto.harness import AtprotoStack, provision
from tests.faults.chat_world import ChatWorld


@pytest.fixture(scope="session")
def atproto() -> Iterator[AtprotoStack]:
    """PLC + PDS + AppView from @atproto/dev-env, shut down (schemas dropped) at the end."""
    stack = AtprotoStack.start(provision())
    logging.getLogger("tests.faults").info("AT Protocol stack up in %.1fs at %s", stack.startup_seconds, stack.pds)
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture
async def chat_world() -> AsyncIterator[ChatWorld]:
    """Two Telegram private chats and two Discord channels on the emulators, stopped after the test."""
    world = await ChatWorld.start()
    try:
        yield world
    finally:
        await world.stop()
