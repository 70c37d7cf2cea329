"""The discord.py client the adapter runs, pointed at ``api_url`` per instance.

discord.py builds every REST URL from the class attribute ``discord.http.Route.BASE`` and every
interaction callback / follow-up URL through the webhook adapter in the ContextVar
``discord.webhook.async_.async_context``. Changing ``Route.BASE`` would move every client in the
process, so instead:

* this client's ``HTTPClient.request`` rewrites each route's URL from ``Route.BASE`` onto
  ``api_url`` (bot routes);
* the adapter runs the client in a context where ``async_context`` holds a webhook adapter that
  does the same for interaction callbacks and follow-ups (they carry the interaction token in the
  URL, not the bot's Authorization header); event handlers are tasks created from that context,
  so they inherit it;
* the Gateway URL comes from ``GET /gateway/bot``: AutoShardedClient asks it (a plain Client
  would connect straight to ``DiscordWebSocket.DEFAULT_GATEWAY``), and a re-identify that falls
  back to the default gateway is sent to the URL ``/gateway/bot`` gave.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord.gateway import DiscordWebSocket
from discord.http import HTTPClient, Route
from discord.webhook.async_ import AsyncWebhookAdapter, async_context

DEFAULT_API_URL = "https://discord.com/api/v10"


def rebase_url(url: str, api_url: str) -> str:
    """``url`` built on discord.py's ``Route.BASE``, moved onto ``api_url``."""
    base = Route.BASE
    if api_url and url.startswith(base):
        return api_url.rstrip("/") + url[len(base) :]
    return url


# Discord allows a bot 50 requests per second overall; a margin for clock and network jitter.
GLOBAL_PER_SECOND = 45.0
# Requests one process may send at once before the spacing applies; with the rate above, any
# one second holds at most BURST + GLOBAL_PER_SECOND = 49 requests.
BURST = 4.0


class SharedPace:
    """Keeps the bot's requests under Discord's overall limit: a token bucket refilled at
    ``GLOBAL_PER_SECOND / share()`` requests a second, holding at most ``BURST / share()`` (at
    least 1). Several processes sending for one bot (``share()`` > 1, see Host.workers) each
    take their part; alone, a process takes the whole rate. discord.py honours the limits
    Discord announces (per-route buckets, the global 429), but only after the fact: without
    this, one process sending to many channels at once goes far over 50 a second and collects
    429s. A burst of a few requests goes out at once, so a single reply is not slowed."""

    def __init__(self, share: Callable[[], int], clock: Callable[[], float] = time.monotonic) -> None:
        self._share = share
        self._clock = clock
        self._tokens = BURST
        self._stamp: float | None = None

    def delay(self) -> float:
        """Reserve the next slot; seconds to wait for it (0 while the bucket holds a token).
        Tokens below zero are slots already promised to earlier callers, so concurrent
        requests queue in order."""
        n = max(1, self._share())
        rate = GLOBAL_PER_SECOND / n
        now = self._clock()
        if self._stamp is not None:
            # Refill, capped at this share's burst (a lowered cap also cuts a full bucket).
            self._tokens = min(max(1.0, BURST / n), self._tokens + (now - self._stamp) * rate)
        else:
            self._tokens = min(self._tokens, max(1.0, BURST / n))
        self._stamp = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / rate


def rebase_http(http: HTTPClient, api_url: str, share: Callable[[], int] | None = None) -> None:
    """Make this HTTPClient (only this one) talk to ``api_url`` and to the Gateway it names,
    and pace its requests to the bot's overall rate, divided by ``share()`` processes (None:
    this process alone; see SharedPace)."""
    request = http.request
    pace = SharedPace(share if share is not None else lambda: 1)
    get_bot_gateway = http.get_bot_gateway
    ws_connect = http.ws_connect
    learned: dict[str, str] = {}

    async def rebased_request(route: Route, **kwargs: Any) -> Any:
        route.url = rebase_url(route.url, api_url)
        wait = pace.delay()
        if wait > 0:
            await asyncio.sleep(wait)
        return await request(route, **kwargs)

    async def remembering_get_bot_gateway() -> Any:
        shards, url, limits = await get_bot_gateway()
        learned["gateway"] = url
        return shards, url, limits

    async def rebased_ws_connect(url: str, *, compress: int = 0) -> Any:
        default = str(DiscordWebSocket.DEFAULT_GATEWAY).rstrip("/")
        gateway = learned.get("gateway")
        if gateway and url.startswith(default):
            url = gateway.rstrip("/") + url[len(default) :]
        return await ws_connect(url, compress=compress)

    http.request = rebased_request  # type: ignore[method-assign]
    http.get_bot_gateway = remembering_get_bot_gateway  # type: ignore[method-assign]
    http.ws_connect = rebased_ws_connect  # type: ignore[method-assign]


class RebasedWebhookAdapter(AsyncWebhookAdapter):
    """discord.py's webhook adapter (interaction callbacks, follow-ups) on ``api_url``."""

    def __init__(self, api_url: str) -> None:
        super().__init__()
        self.api_url = api_url

    async def request(self, route: Route, *args: Any, **kwargs: Any) -> Any:
        route.url = rebase_url(route.url, self.api_url)
        return await super().request(route, *args, **kwargs)


def client_context(api_url: str) -> contextvars.Context:
    """A context in which interaction callbacks of discord.py go to ``api_url``."""
    context = contextvars.copy_context()
    context.run(async_context.set, RebasedWebhookAdapter(api_url))
    return context


def bridge_intents() -> discord.Intents:
    """The fewest intents: guilds (channels, threads, deletions) and guild messages (replies).
    No privileged intent: without message_content, a message shows its text only when it
    mentions the bot, which a reply to the bot does by default."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    return intents


EventHandler = Callable[..., Awaitable[None]]


class BridgeClient(discord.AutoShardedClient):
    """An AutoShardedClient on ``api_url`` that forwards the events the bridge needs to
    ``handlers`` (a mapping of event name → coroutine function)."""

    def __init__(
        self,
        *,
        api_url: str,
        handlers: dict[str, EventHandler],
        guild_ready_timeout: float = 2.0,
        max_ratelimit_timeout: float = 30.0,
        share: Callable[[], int] | None = None,
    ) -> None:
        super().__init__(
            intents=bridge_intents(),
            allowed_mentions=discord.AllowedMentions.none(),
            chunk_guilds_at_startup=False,
            member_cache_flags=discord.MemberCacheFlags.none(),
            guild_ready_timeout=guild_ready_timeout,
            max_ratelimit_timeout=max_ratelimit_timeout,
            max_messages=None,
        )
        self.api_url = api_url
        self._handlers = handlers
        rebase_http(self.http, api_url, share)

    def dispatch(self, event_name: str, /, *args: Any, **kwargs: Any) -> None:
        """discord.py's dispatch, plus the bridge's handlers for the events it listens to."""
        super().dispatch(event_name, *args, **kwargs)
        handler = self._handlers.get(event_name)
        if handler is not None:
            self._schedule_event(handler, "on_" + event_name, *args, **kwargs)
