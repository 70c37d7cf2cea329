"""Changes to the bridge's settings, seen across processes.

Every write to subscriptions, destinations (pause, resume, quiet hours) and room settings
calls ``bump`` in its own transaction, which moves the one-row ``revision`` table on. A
running bridge waits on a ``ChangeFeed``: on Postgres it is woken by ``LISTEN/NOTIFY``
(the notification is sent at commit, so a woken reader always sees the change), with a slow
poll of the revision in case the listening connection drops; on SQLite, which has no
notifications, it polls the revision (a point read of one row) twice a second.

Why a revision rather than ``updated_at``: tortoise's ``QuerySet.update`` never touches
``auto_now`` fields, and a count of rows misses a change that switches a row off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from tortoise import Tortoise

log = logging.getLogger("bridge.storage")

CHANNEL = "bridge_changes"
# New deliveries were committed (Postgres): another worker may serve their rooms.
DELIVERIES = "bridge_deliveries"
# A revision that exists moves on; the first change creates it.
_BUMP = (
    'INSERT INTO "revision" ("id","value") VALUES (1,1) '
    'ON CONFLICT ("id") DO UPDATE SET "value"="revision"."value"+1 RETURNING "value"'
)
_CURRENT = 'SELECT "value" FROM "revision" WHERE "id"=1'

SQLITE_POLL = 0.5  # seconds; SQLite cannot notify
POSTGRES_POLL = 2.0  # seconds; only a safety net under LISTEN/NOTIFY
RELISTEN_EVERY = 30.0  # seconds between attempts to open a dropped listening connection


def _is_postgres(conn: Any) -> bool:
    return conn.capabilities.dialect == "postgres"


async def bump(conn: Any) -> int:
    """Move the revision on inside the caller's transaction ``conn`` and return its new value.
    On Postgres the listeners are notified when that transaction commits (not before)."""
    rows = await conn.execute_query_dict(_BUMP)  # execute_query drops an INSERT's RETURNING rows on Postgres
    value = int(rows[0]["value"])
    if _is_postgres(conn):
        await conn.execute_query(f"SELECT pg_notify('{CHANNEL}', '{value}')")
    return value


async def current() -> int:
    """The revision as committed now (0 before the first change)."""
    rows = await Tortoise.get_connection("default").execute_query_dict(_CURRENT)
    return int(rows[0]["value"]) if rows else 0


class ChangeFeed:
    """Waits for the revision to move. ``start`` once the database is open; ``close`` before
    it is closed."""

    def __init__(self, on_deliveries: Callable[[], None] = lambda: None) -> None:
        self._on_deliveries = on_deliveries  # new deliveries were committed by any process (Postgres)
        self._moved = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._postgres = False
        self._last_listen_try = float("-inf")

    async def start(self) -> None:
        self._postgres = _is_postgres(Tortoise.get_connection("default"))
        if self._postgres:
            await self._listen()

    async def wait(self, seen: int) -> int:
        """Return the revision once it differs from ``seen`` (which is returned at once when it
        already does). Database errors propagate: the caller decides how calmly to retry."""
        while True:
            self._moved.clear()
            value = await current()
            if value != seen:
                return value
            if self._postgres and self._listener is None:
                await self._listen()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), POSTGRES_POLL if self._listener is not None else SQLITE_POLL)

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.close(), 2)

    async def _listen(self) -> None:
        """Open the connection that LISTENs; on failure the feed polls and tries again later."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_listen_try < RELISTEN_EVERY:
            return
        self._last_listen_try = loop.time()
        client = Tortoise.get_connection("default")
        try:
            conn = await asyncpg.connect(
                host=client.host,
                port=client.port,
                user=client.user,
                password=client.password,
                database=client.database,
                server_settings=getattr(client, "server_settings", None) or None,
                timeout=5,
            )
            await conn.add_listener(CHANNEL, self._notified)
            await conn.add_listener(DELIVERIES, self._deliveries)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.warning("cannot listen for changes, polling instead reason=%r", str(exc))
            return
        conn.add_termination_listener(self._dropped)
        self._listener = conn

    def _notified(self, *_args: Any) -> None:
        self._moved.set()

    def _deliveries(self, *_args: Any) -> None:
        self._on_deliveries()

    def _dropped(self, *_args: Any) -> None:
        log.warning("the connection listening for changes was closed; polling until it is back")
        self._listener = None
        self._moved.set()
