"""The bridge's HTTP endpoint (``[http] listen``), served by aiohttp in the bridge's own loop.

Routes: ``GET /livez``, ``/readyz``, ``/healthz`` (see ``health``: ready to take traffic, and
healthy: no platform down), ``GET /metrics`` (the
Prometheus text format) and ``POST`` on each webhook path an adapter registered through its
host (Telegram in webhook mode). Webhook paths are looked up when a call comes, so an adapter
may register its path while it starts, after the server is listening.
"""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bridge.ops import health

if TYPE_CHECKING:
    from bridge.app import Bridge

log = logging.getLogger("bridge.ops.http")

# A webhook handler gets the call's headers and body and returns the HTTP status to answer.
WebhookHandler = Callable[[Mapping[str, str], bytes], Awaitable[int]]
MAX_BODY = 1 << 20  # Telegram's updates are a few KB; refuse anything absurd before reading it


class ListenFailed(OSError):
    """The endpoint cannot listen on ``[http] listen`` (the port is taken, a privileged port,
    an address not of this machine); the message says which and why."""


def parse_listen(value: str) -> tuple[str, int]:
    """``"host:port"`` (``[::1]:8080`` for IPv6) → (host, port). Raises ValueError."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'{value!r} is not host:port; write e.g. "127.0.0.1:8080" or "0.0.0.0:8080" in a container')
    return host.strip("[]"), int(port)


class OpsServer:
    def __init__(self, bridge: Bridge, listen: str) -> None:
        self._bridge = bridge
        self._host, self._port = parse_listen(listen)
        self._hooks: dict[str, tuple[str, WebhookHandler]] = {}
        self._runner: web.AppRunner | None = None
        self.port = self._port  # the bound port (differs when 0 was asked for)

    def add_webhook(self, adapter: str, path: str, handler: WebhookHandler) -> None:
        """Serve ``POST path`` with ``handler``; every call's status is counted per adapter."""
        self._hooks["/" + path.lstrip("/")] = (adapter, handler)

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_get("/livez", self._live)
        app.router.add_get("/readyz", self._ready)
        app.router.add_get("/healthz", self._healthy)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/{path:.*}", self._webhook)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            why = {
                errno.EADDRINUSE: "the port is already in use (another bridge or program listens there)",
                errno.EACCES: "permission denied (ports below 1024 need privileges)",
                errno.EADDRNOTAVAIL: "the address is not one of this machine's",
            }.get(exc.errno or 0, exc.strerror or str(exc))
            raise ListenFailed(f"[http] listen: cannot listen on {self._host}:{self._port}: {why}") from exc
        self._runner = runner
        sockets = [s for s in (runner.addresses or [])]
        if sockets and isinstance(sockets[0], tuple):
            self.port = sockets[0][1]
        log.info("http endpoint listening address=%s:%d", self._host, self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _live(self, _request: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def _ready(self, _request: web.Request) -> web.Response:
        state = await health.check(self._bridge, platforms=False)
        return _json(200 if state.ok else 503, state.summary())

    async def _healthy(self, _request: web.Request) -> web.Response:
        state = await health.check(self._bridge)
        return _json(200 if state.ok else 503, state.summary())

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = await self._bridge.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _webhook(self, request: web.Request) -> web.Response:
        hook = self._hooks.get(request.path)
        if hook is None:
            return web.Response(status=404, text="not found\n")
        adapter, handler = hook
        try:
            body = await request.read()
            status = await handler(request.headers, body)
        except web.HTTPRequestEntityTooLarge:
            status = 413
        except Exception:
            log.exception("webhook handler failed adapter=%s", adapter)
            status = 500
        self._bridge.metrics.webhook(adapter, status)
        return web.Response(status=status)


def _json(status: int, data: Mapping[str, object]) -> web.Response:
    return web.Response(status=status, text=json.dumps(data, separators=(",", ":")) + "\n", content_type="application/json")
