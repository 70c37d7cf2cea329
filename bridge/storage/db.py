"""Opening the database and applying migrations at start."""

from __future__ import annotations

import logging
from typing import Any

from tortoise import Tortoise
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.migrations.api.migrate import migrate

log = logging.getLogger("bridge.storage")
MODELS = "bridge.storage.models"


_open_clients: list[Any] = []


class DatabaseUnavailable(Exception):
    """The database did not answer; the message says which URL (without its password)."""


def tortoise_config(url: str) -> dict[str, Any]:
    if url.startswith("postgresql://"):
        url = "postgres://" + url.removeprefix("postgresql://")
    return {
        "connections": {"default": url},
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


async def open_database(url: str) -> None:
    """Connect and bring the schema up to date. Raises DatabaseUnavailable when the server
    does not answer."""
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
        # asyncpg raises its own classes for refused logins and missing databases
        if type(exc).__module__.startswith("asyncpg"):
            await Tortoise.close_connections()
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
