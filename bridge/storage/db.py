"""Opening the database and applying migrations at start."""

from __future__ import annotations

import logging
from typing import Any

from tortoise import Tortoise
from tortoise.backends.base.client import TransactionContextPooled
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.connection import get_connections
from tortoise.migrations.api.migrate import migrate

log = logging.getLogger("bridge.storage")
MODELS = "bridge.storage.models"


_open_clients: list[Any] = []


class DatabaseUnavailable(Exception):
    """The database did not answer; the message says which URL (without its password)."""


def tortoise_config(url: str) -> dict[str, Any]:
    if url.startswith("postgresql://"):
        url = "postgres://" + url.removeprefix("postgresql://")
    connection: str | dict[str, Any] = url
    if url.startswith("sqlite://"):
        connection = expand_db_url(url)
        # WAL (tortoise's default) with synchronous=NORMAL: a commit survives the process being
        # killed, which is the crash the ledger is built for; only a power cut can take back
        # the last commits, and then their cursor goes back with them, so posts are fetched
        # and sent again, never lost. FULL would add an fsync to every commit.
        credentials = connection["credentials"]
        if str(credentials.get("journal_mode", "WAL")).upper() == "WAL":  # NORMAL is safe only in WAL
            credentials.setdefault("synchronous", "NORMAL")
    return {
        "connections": {"default": connection},
        "apps": {"bridge": {"models": [MODELS], "migrations": "bridge.migrations", "default_connection": "default"}},
        "use_tz": True,
        "timezone": "UTC",
    }


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest and ":" in rest.split("@", 1)[0]:
        user = rest.split("@", 1)[0].split(":", 1)[0]
        rest = f"{user}:***@" + rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def _harden_pooled_transactions() -> None:
    """Make a transaction on a dead connection leave the task able to reconnect.

    tortoise-orm (1.1.9) points the task's connection at the transaction's wrapper before
    BEGIN and points it back only in ``__aexit__``, after releasing the connection. When
    Postgres restarts (or a backend is terminated), BEGIN, ROLLBACK or the release fails, the
    pointer is never reset, and every later query of that task (the firehose consumer, a
    dispatcher worker) goes to the dead connection forever: "connection is closed".
    """
    if getattr(TransactionContextPooled, "_bridge_hardened", False):
        return
    enter, leave = TransactionContextPooled.__aenter__, TransactionContextPooled.__aexit__

    async def __aenter__(self: TransactionContextPooled) -> Any:
        try:
            return await enter(self)
        except BaseException:
            token = getattr(self, "token", None)
            if token is not None:  # BEGIN failed after the task was pointed at the wrapper
                get_connections().reset(token)
                conn = getattr(self.client, "_connection", None)
                pool = self.client._parent._pool
                if conn is not None and pool is not None:
                    try:
                        await pool.release(conn)
                    except Exception:
                        log.debug("releasing a dead connection failed", exc_info=True)
            raise

    async def __aexit__(self: TransactionContextPooled, *exc: Any) -> None:
        try:
            await leave(self, *exc)
        except BaseException:
            token = getattr(self, "token", None)
            if token is not None and not token._used:  # the release failed before the reset
                get_connections().reset(token)
            raise

    TransactionContextPooled.__aenter__ = __aenter__  # type: ignore[method-assign]
    TransactionContextPooled.__aexit__ = __aexit__  # type: ignore[method-assign]
    TransactionContextPooled._bridge_hardened = True  # type: ignore[attr-defined]


async def open_database(url: str) -> None:
    """Connect and bring the schema up to date. Raises DatabaseUnavailable when the server
    does not answer."""
    _harden_pooled_transactions()
    config = tortoise_config(url)
    try:
        await migrate(config=config)
        await Tortoise.close_connections()
        await Tortoise.init(config=config)
        _open_clients.append(Tortoise.get_connection("default"))
    except (OSError, ConnectionError) as exc:
        await Tortoise.close_connections()
        raise DatabaseUnavailable(f"cannot reach the database at {redact(url)}: {exc}") from exc
    except Exception as exc:
        # Whatever failed (a migration, a refused login), close what was opened: a live SQLite
        # worker thread would keep the process from exiting.
        await Tortoise.close_connections()
        # asyncpg raises its own classes for refused logins and missing databases
        if type(exc).__module__.startswith("asyncpg"):
            raise DatabaseUnavailable(f"cannot open the database at {redact(url)}: {exc}") from exc
        raise
    log.info("database ready url=%s", redact(url))


async def close_database() -> None:
    # tortoise keeps connections in a ContextVar: closing from another context (a signal
    # handler's task, a test fixture's teardown) would leave the SQLite worker thread alive,
    # so close the clients we opened directly.
    while _open_clients:
        client = _open_clients.pop()
        try:
            await client.close()
        except Exception:
            log.debug("closing a database client failed", exc_info=True)
    await Tortoise.close_connections()
    # tortoise caches prepared INSERTs per connection *name*; a later open of another backend
    # under the same name (tests switch SQLite/Postgres in one process) must not reuse them.
    EXECUTOR_CACHE.clear()
