"""Shared fixtures: databases (SQLite and Postgres from one parametrized fixture, as the
storage contract must hold on both) and a bridge built from fake adapters."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bench.databases import throwaway
from bridge.app import Bridge
from bridge.config import config_from_dict
from bridge.storage.db import close_database, open_database
from tests.fakes import FakeChat, FakeNetwork

FAKES = {"fakenet": FakeNetwork, "fakechat": FakeChat}


def fresh_postgres() -> contextlib.AbstractAsyncContextManager[str]:
    """A fresh, empty Postgres database, dropped afterwards."""
    return throwaway("postgres")


@pytest.fixture
async def pg() -> AsyncIterator[str]:
    """A throwaway Postgres database, opened as the process's database for the test."""
    async with fresh_postgres() as url:
        await open_database(url)
        try:
            yield url
        finally:
            await close_database()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    async with fresh_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    """The same test on SQLite and on Postgres."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path}/bridge.sqlite3"
    else:
        async with fresh_postgres() as url:
            yield url


def fake_config(db: str, **bridge: Any) -> dict[str, Any]:
    return {
        "database": {"url": db},
        "bridge": {"admins": ["fakechat:boss"], "senders": ["fakechat:sender"], **bridge},
        "fakenet": {},
        "fakechat": {},
    }


BridgeFactory = Callable[..., Awaitable[Bridge]]


@pytest.fixture
async def make_bridge(tmp_path: Any) -> AsyncIterator[BridgeFactory]:
    """Start a bridge on fake adapters; every bridge started is stopped at the end."""
    running: list[Bridge] = []

    async def make(db: str | None = None, **bridge_settings: Any) -> Bridge:
        for b in running:  # tortoise's connections are process-wide: one bridge at a time
            await b.stop()
        running.clear()
        cfg = config_from_dict(fake_config(db or f"sqlite://{tmp_path}/bridge.sqlite3", **bridge_settings), adapter_classes=FAKES)
        b = Bridge(cfg, adapter_classes=FAKES)
        await b.start()
        running.append(b)
        return b

    yield make
    for b in running:
        await b.stop()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds; fail the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)
