"""What /livez, /readyz and /healthz answer.

* ``/livez``: the process and its event loop answer (200 whenever the server can reply). An
  orchestrator restarts the process when this fails, so it never depends on the database: a
  database outage must not turn into a restart loop.
* ``/readyz``: the bridge can take traffic (webhook calls): the database answers a real query
  within ``DB_TIMEOUT`` seconds and every configured adapter is started. 503 with the reason
  otherwise. A load balancer or an orchestrator's readiness probe watches this: one platform
  refusing our token must not cut another platform's webhook off.
* ``/healthz``: all of ``/readyz``, and no platform is down: none has reported its credentials
  refused while running (a revoked token) or its work stopped (X's monthly cap). 503 with the
  reason otherwise. Monitoring and the container's ``HEALTHCHECK`` watch this. This is what a load balancer or ``HEALTHCHECK`` should watch.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tortoise import Tortoise

if TYPE_CHECKING:
    from bridge.app import Bridge

DB_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    reason: str = ""
    checks: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = {"status": "ok" if self.ok else "unavailable", **self.checks}
        if self.reason:
            out["reason"] = self.reason
        return out


async def database_answers(timeout: float = DB_TIMEOUT) -> str:
    """ "" when ``SELECT 1`` comes back within ``timeout`` seconds, else why not."""
    try:
        conn = Tortoise.get_connection("default")
    except Exception:
        return "the database is not open"
    try:
        async with asyncio.timeout(timeout):
            await conn.execute_query("SELECT 1")
    except TimeoutError:
        return f"the database did not answer within {timeout:g} s"
    except Exception as exc:
        return f"the database does not answer: {type(exc).__name__}"
    return ""


async def check(bridge: Bridge, platforms: bool = True) -> Health:
    """Ready (``platforms=False``): database answering and every adapter started. Healthy:
    also no platform down."""
    started = time.monotonic()
    checks: dict[str, str] = {}
    reasons = []
    if not bridge.running:
        reasons.append("the bridge is starting or stopping")
    db = await database_answers()
    checks["database"] = "ok" if not db else "down"
    if db:
        reasons.append(db)
    up = {a.name for a in bridge._started}
    missing = [name for name in bridge.adapters if name not in up]
    checks["adapters"] = "ok" if not missing else "not started: " + ",".join(sorted(missing))
    if missing:
        reasons.append("adapters not started: " + ", ".join(sorted(missing)))
    # A platform that refuses our credentials while running (reported by its adapter) relays
    # nothing until a person acts: not ready, with the adapter's one-line reason.
    if platforms:
        health = bridge._health
        down = {name: h.reason for name, h in sorted(health.items()) if h.state == "down" and name in bridge.adapters}
        checks["platforms"] = "ok" if not down else "down: " + ",".join(down)
        reasons += [f"{name} down: {reason}" for name, reason in down.items()]
    checks["took_ms"] = f"{(time.monotonic() - started) * 1000:.0f}"
    return Health(not reasons, "; ".join(reasons), checks)
