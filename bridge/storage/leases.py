"""Leases: which worker does what when several ``bridge run`` share one Postgres database.

A lease is a row of ``leases`` named after the work it guards (``dest:telegram:-100…`` for a
room, ``listen:telegram:updates`` for a listener). It is held by one ``workers`` row until its
``expires_at``, which the holder moves on before it passes. Every time is the database's
clock (``now()``), so the workers' own clocks never have to agree.

What it costs: one statement per renewal round for the heartbeat and all held leases together,
one to count live workers, and a claim (one insert of the names, one ``UPDATE … FROM (SELECT …
FOR UPDATE SKIP LOCKED)``) only when something wanted is not held. Nothing per delivery.

Postgres only: on SQLite one process holds everything (see ``bridge.workers``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise import Tortoise

_REGISTER = 'INSERT INTO "workers" ("host","pid","started_at","heartbeat") VALUES ($1,$2,now(),now()) RETURNING "id"'
# The heartbeat and the renewal of every lease still held, in one round trip. A worker row
# pruned as dead (the process was stopped for a long while) is written again under its id.
_RENEW = """
WITH beat AS (
  INSERT INTO "workers" ("id","host","pid","started_at","heartbeat") VALUES ($1,$3,$4,$5,now())
  ON CONFLICT ("id") DO UPDATE SET "heartbeat"=now() RETURNING "id"
)
UPDATE "leases" SET "expires_at"=now()+make_interval(secs=>$2)
WHERE "holder"=$1 AND "expires_at">now() RETURNING "name","token"
"""
_LIVE = 'SELECT count(*) AS n FROM "workers" WHERE "heartbeat">now()-make_interval(secs=>$1)'
_PRUNE = 'DELETE FROM "workers" WHERE "heartbeat"<now()-make_interval(secs=>$1)'
_ENSURE = (
    'INSERT INTO "leases" ("name","holder","expires_at","token") SELECT unnest($1::text[]),NULL,now(),0 ON CONFLICT DO NOTHING'
)
# Free leases among ``names`` (expired, released or never held, ``min_age`` seconds ago or
# more: a release or a first insert sets ``expires_at`` to now), at most ``limit``; rows another worker is claiming at this moment are skipped, not
# waited for.
_CLAIM = """
UPDATE "leases" AS l SET "holder"=$2,"expires_at"=now()+make_interval(secs=>$3),"token"=l."token"+1
FROM (
  SELECT "name" FROM "leases"
  WHERE "name"=ANY($1::text[]) AND "expires_at"<=now()-make_interval(secs=>$5)
  ORDER BY "name" LIMIT $4 FOR UPDATE SKIP LOCKED
) AS free
WHERE l."name"=free."name" RETURNING l."name",l."token"
"""
_RELEASE = 'UPDATE "leases" SET "holder"=NULL,"expires_at"=now() WHERE "holder"=$1 AND "name"=ANY($2::text[])'
_RELEASE_ALL = 'UPDATE "leases" SET "holder"=NULL,"expires_at"=now() WHERE "holder"=$1'
_LEAVE = 'DELETE FROM "workers" WHERE "id"=$1'
_WORKERS = (
    'SELECT "id","host","pid","started_at","heartbeat",EXTRACT(EPOCH FROM now()-"heartbeat") AS age FROM "workers" ORDER BY "id"'
)
_HELD = 'SELECT "name","holder","token" FROM "leases" WHERE "holder" IS NOT NULL AND "expires_at">now() ORDER BY "name"'
_UNHELD = 'SELECT "name" FROM "leases" WHERE ("holder" IS NULL OR "expires_at"<=now()) AND "name"=ANY($1::text[]) ORDER BY "name"'


@dataclass(frozen=True)
class WorkerInfo:
    """One row of ``workers`` with what it holds, for ``bridge status``."""

    id: int
    host: str
    pid: int
    started_at: datetime
    heartbeat_age: float  # seconds, by the database's clock
    holds: tuple[str, ...]


def _conn() -> Any:
    return Tortoise.get_connection("default")


def is_postgres() -> bool:
    return bool(_conn().capabilities.dialect == "postgres")


class LeaseStore:
    """The statements above, for one worker. ``seconds`` is how long a claim or renewal lasts."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.worker: int | None = None
        self._me: tuple[str, int, datetime] | None = None
        self._known: set[str] = set()  # lease rows known to exist

    async def register(self, host: str, pid: int) -> int:
        rows = await _conn().execute_query_dict(_REGISTER, [host, pid])
        self.worker = int(rows[0]["id"])
        row = (await _conn().execute_query_dict('SELECT "started_at" FROM "workers" WHERE "id"=$1', [self.worker]))[0]
        self._me = (host, pid, row["started_at"])
        return self.worker

    async def renew(self) -> dict[str, int]:
        """Move the heartbeat and every lease this worker still holds on by ``seconds``;
        returns those leases with their tokens. One held before and missing here is lost."""
        assert self.worker is not None and self._me is not None
        host, pid, started = self._me
        rows = await _conn().execute_query_dict(_RENEW, [self.worker, self.seconds, host, pid, started])
        return {r["name"]: int(r["token"]) for r in rows}

    async def live_workers(self) -> int:
        """Workers whose heartbeat is younger than a lease (this one included); prunes rows
        dead for long."""
        await _conn().execute_query(_PRUNE, [self.seconds * 30])
        rows = await _conn().execute_query_dict(_LIVE, [self.seconds])
        return max(1, int(rows[0]["n"]))

    async def claim(self, names: Iterable[str], limit: int, min_age: float = 0.0) -> dict[str, int]:
        """Claim at most ``limit`` of the free ``names`` (expired at least ``min_age`` seconds
        ago, or never held or released); returns those won with their tokens."""
        wanted = sorted(set(names))
        if not wanted or limit <= 0:
            return {}
        assert self.worker is not None
        new = [n for n in wanted if n not in self._known]
        if new:
            await _conn().execute_query(_ENSURE, [new])
            self._known.update(new)
        rows = await _conn().execute_query_dict(_CLAIM, [wanted, self.worker, self.seconds, limit, min_age])
        return {r["name"]: int(r["token"]) for r in rows}

    async def unheld(self, names: Sequence[str]) -> list[str]:
        """Which of ``names`` nobody holds now."""
        if not names:
            return []
        return [r["name"] for r in await _conn().execute_query_dict(_UNHELD, [list(names)])]

    async def release(self, names: Iterable[str]) -> None:
        """Give up ``names`` now: another worker may claim them at once."""
        out = list(names)
        if out and self.worker is not None:
            await _conn().execute_query(_RELEASE, [self.worker, out])

    async def leave(self) -> None:
        """Release everything and remove this worker's row (a clean stop)."""
        if self.worker is None:
            return
        await _conn().execute_query(_RELEASE_ALL, [self.worker])
        await _conn().execute_query(_LEAVE, [self.worker])
        self.worker = None


async def workers_and_leases() -> list[WorkerInfo]:
    """Every worker row with the leases it holds now (empty on SQLite, which runs one worker
    and keeps no rows)."""
    if not is_postgres():
        return []
    held: dict[int, list[str]] = {}
    for r in await _conn().execute_query_dict(_HELD):
        held.setdefault(int(r["holder"]), []).append(r["name"])
    return [
        WorkerInfo(int(r["id"]), r["host"], int(r["pid"]), r["started_at"], float(r["age"]), tuple(held.get(int(r["id"]), ())))
        for r in await _conn().execute_query_dict(_WORKERS)
    ]
