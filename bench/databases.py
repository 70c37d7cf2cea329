"""Throwaway databases for benchmarks: a SQLite file in a temporary directory, or a fresh
Postgres database (created on the server named by BRIDGE_TEST_POSTGRES, dropped afterwards)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator

import asyncpg

POSTGRES = os.environ.get("BRIDGE_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")


async def _admin() -> asyncpg.Connection:
    return await asyncpg.connect(POSTGRES.replace("postgres://", "postgresql://", 1), timeout=5)


@contextlib.asynccontextmanager
async def throwaway(kind: str) -> AsyncIterator[str]:
    """A database URL of ``kind`` ("sqlite" or "postgres") that exists only inside the block."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bridge-bench-") as tmp:
            yield f"sqlite://{tmp}/bench.sqlite3"
        return
    if kind != "postgres":
        raise ValueError(f"unknown database kind {kind!r}: sqlite or postgres")
    name = f"bridge_bench_{uuid.uuid4().hex[:12]}"
    conn = await _admin()
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield f"{POSTGRES.rsplit('/', 1)[0]}/{name}"
    finally:
        conn = await _admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
