"""Opening the database and applying migrations at start."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import sqlite3
import stat
from pathlib import Path
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


class DatabaseInUse(Exception):
    """Another ``bridge run`` holds this SQLite database; the message says so and that Postgres
    runs several."""


class DatabaseUnusable(DatabaseUnavailable):
    """The database can never be opened as configured (a SQLite file in a missing or read-only
    folder, a file that is not a database): waiting will not help. The message names the path,
    why, and the fix."""


# The database holds the team account's login session (a Bluesky refresh token is as good as
# the password for a while): owner-only, like ~/.ssh.
PRIVATE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


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


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite://`` URL, None for another database or an in-memory one."""
    if not url.startswith("sqlite://"):
        return None
    path = str(expand_db_url(url)["credentials"]["file_path"])
    return None if path == ":memory:" or path.startswith("file::memory:") else path


def prepare_sqlite_file(path: str) -> None:
    """Make sure SQLite can open ``path`` for writing, and that only its owner can read it.

    Checked here, with the standard library, before tortoise opens it: a file it cannot open
    (missing or read-only folder) makes tortoise's migration step wait forever on a lock,
    deaf to Ctrl-C. A new file is created owner-only (SQLite gives its -wal, -shm and
    -journal files the database file's mode); an existing one readable by others is
    tightened. Raises DatabaseUnusable with the path, why, and the fix.
    """
    file = Path(path)
    folder = file.parent if str(file.parent) else Path(".")
    where = f"the SQLite database {path}"
    fix_url = "or point [database] url at another file (sqlite:///absolute/path/bridge.sqlite3)"
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise DatabaseUnusable(f"cannot open {where}: its folder {folder} {what}; create it (mkdir -p {folder}) {fix_url}")
    if file.exists() and not file.is_file():
        raise DatabaseUnusable(f"cannot open {where}: it is not a regular file; {fix_url.removeprefix('or ')}")
    if not file.exists():
        try:
            os.close(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE))
        except FileExistsError:
            pass  # another process created it meanwhile: checked below like any existing file
        except OSError as exc:
            raise DatabaseUnusable(
                f"cannot create {where}: the folder {folder} is not writable ({exc.strerror}); "
                f"make it writable for this user (chown/chmod) {fix_url}"
            ) from None
    _tighten(file)
    try:
        # timeout: another process may hold the write lock for a moment (a bridge at work)
        probe = sqlite3.connect(file, timeout=10)
        try:
            probe.execute("PRAGMA schema_version").fetchone()  # a file that is not a database fails here
            probe.execute("BEGIN IMMEDIATE")  # a read-only file or folder fails here
            probe.rollback()
        finally:
            probe.close()
    except sqlite3.Error as exc:
        reason = str(exc)
        if "locked" in reason or "busy" in reason:
            raise DatabaseUnavailable(f"cannot open {where}: {reason} (another process holds it)") from None
        if "readonly" in reason or "read-only" in reason or "unable to open" in reason:
            fix = f"make {file} and its folder {folder} writable for this user (chown/chmod) {fix_url}"
        elif "not a database" in reason or "malformed" in reason:
            fix = f"this file is not a bridge database; move it away {fix_url}"
        else:
            fix = fix_url.removeprefix("or ")
        raise DatabaseUnusable(f"cannot open {where}: {reason}; {fix}") from None
    for suffix in SQLITE_SIDE_FILES:  # made by the probe, or left from before with their old mode
        _tighten(Path(f"{file}{suffix}"))


def _tighten(file: Path) -> None:
    """Owner-only: remove every group and other permission bit of an existing file."""
    try:
        mode = stat.S_IMODE(file.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        try:
            file.chmod(mode & 0o700)
        except OSError as exc:
            log.warning("could not make the database file owner-only path=%s mode=%o reason=%r", file, mode, exc.strerror)
            return
        log.warning("database file was readable by others; made it owner-only path=%s mode=%o->%o", file, mode, mode & 0o700)


def hold_sqlite(url: str) -> Any:
    """For ``bridge run`` on a SQLite database: take an exclusive OS lock on ``<file>.lock``
    and return the open lock file (keep it: the lock lasts until it is closed or the process
    ends, even by SIGKILL). None for another database, or when the lock file cannot be made
    (a missing folder: ``open_database`` says why). Raises DatabaseInUse when another
    ``bridge run`` holds it.

    SQLite serves one bridge process: two would each send every delivery and both poll
    Telegram. Only ``bridge run`` takes the lock; the short commands (``bridge follow``,
    ``subs``, ``status``) work while it runs, as SQLite's own locking lets them.
    """
    path = sqlite_path(url)
    if path is None:
        return None
    lock_path = f"{path}.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
    except OSError:
        return None
    lock = os.fdopen(fd, "r+", encoding="utf-8")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = lock.read().strip()
        lock.close()
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise DatabaseInUse(
            f"another `bridge run`{who} is using the SQLite database {path}: SQLite serves one bridge process; "
            "stop the other one first, or use Postgres ([database] url = \"postgres://…\"), which runs several"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


# Every process that migrates a Postgres database takes this advisory lock first, so processes
# started together apply the migrations one at a time (two CREATE TYPE at once collide).
MIGRATION_LOCK = int.from_bytes(hashlib.sha256(b"bridge migrations").digest()[:8], "big", signed=True)


async def _migrate_postgres(config: dict[str, Any]) -> None:
    """Apply the migrations under ``pg_advisory_lock`` held on a connection of its own: the
    others wait for it, then find nothing left to do."""
    import asyncpg

    creds = config["connections"]["default"]
    if isinstance(creds, str):
        creds = expand_db_url(creds)["credentials"]
    else:
        creds = creds["credentials"]
    conn = await asyncpg.connect(
        host=creds.get("host"),
        port=creds.get("port"),
        user=creds.get("user"),
        password=creds.get("password"),
        database=creds.get("database"),
        ssl=creds.get("ssl"),
    )
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await migrate(config=config)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    finally:
        await conn.close()


async def open_database(url: str) -> None:
    """Connect and bring the schema up to date. Raises DatabaseUnusable when the database can
    never be opened as configured (a SQLite file in a missing or read-only folder),
    DatabaseUnavailable when the server does not answer."""
    _harden_pooled_transactions()
    path = sqlite_path(url)
    if path is not None:
        await asyncio.to_thread(prepare_sqlite_file, path)
    config = tortoise_config(url)
    try:
        if path is None and url.startswith(("postgres://", "postgresql://")):
            await _migrate_postgres(config)
        else:
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
    # At debug: every command opens the database; `bridge run` says so at info itself.
    log.debug("database ready url=%s", redact(url))


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
