"""Discord failures mapped onto bridge.errors."""

from __future__ import annotations

import asyncio

import aiohttp
import discord

from bridge.errors import (
    AuthFailed,
    BridgeError,
    DestinationUnavailable,
    Permanent,
    RateLimited,
    Transient,
)

# Discord JSON error codes (https://discord.com/developers/docs/topics/opcodes-and-status-codes#json).
UNKNOWN_CHANNEL = 10003
UNKNOWN_GUILD = 10004
MISSING_ACCESS = 50001
MISSING_PERMISSIONS = 50013
THREAD_ALREADY_CREATED = 160004
THREAD_ARCHIVED = 50083  # "Operation cannot be performed on an archived thread"

_UNAVAILABLE_404 = {UNKNOWN_CHANNEL: "the channel was deleted", UNKNOWN_GUILD: "the bot is not in that server"}


def _describe(exc: discord.HTTPException) -> str:
    return f"Discord said {exc.status} {exc.text or exc.response.reason} (code {exc.code})"


def map_discord_error(exc: BaseException, scope: str) -> BridgeError:
    """The bridge error for a failure of a request about ``scope`` (``discord:<channel>``).

    discord.py already waits out short 429s per bucket; a 429 reaches us only when the wait is
    longer than ``max_ratelimit_timeout`` (discord.RateLimited) or Discord answered without the
    headers discord.py trusts (HTTPException 429). Both become RateLimited for this channel only.
    """
    if isinstance(exc, BridgeError):
        return exc
    if isinstance(exc, discord.RateLimited):
        return RateLimited(exc.retry_after, scope=scope)
    if isinstance(exc, discord.LoginFailure):
        return AuthFailed(f"discord.token was refused: {exc}; set a valid bot token")
    if isinstance(exc, discord.HTTPException):
        if exc.status == 429:
            retry_after = _retry_after(exc)
            return RateLimited(retry_after, scope=scope)
        if exc.status == 401:
            return AuthFailed("discord.token was refused (401 Unauthorized); set a valid bot token")
        if exc.status == 403:
            # 50001 Missing Access (cannot see the channel, or removed from the server),
            # 50013 Missing Permissions (cannot send/embed there).
            reason = "missing permissions" if exc.code == MISSING_PERMISSIONS else "missing access"
            return DestinationUnavailable(f"{scope}: {reason} ({_describe(exc)})")
        if exc.status == 404 and exc.code in _UNAVAILABLE_404:
            return DestinationUnavailable(f"{scope}: {_UNAVAILABLE_404[exc.code]} ({_describe(exc)})")
        if exc.status >= 500:
            return Transient(f"{scope}: {_describe(exc)}")
        return Permanent(f"{scope}: {_describe(exc)}")
    if isinstance(exc, aiohttp.ClientError | OSError | asyncio.TimeoutError | discord.GatewayNotFound):
        # str(), not repr(): aiohttp's repr is a dump of its connection key
        return Transient(f"{scope}: connection failed: {type(exc).__name__}: {exc}".rstrip(": "))
    return Transient(f"{scope}: unexpected {type(exc).__name__}: {exc}")


def _retry_after(exc: discord.HTTPException) -> float:
    headers = getattr(exc.response, "headers", None) or {}
    for key in ("Retry-After", "X-RateLimit-Reset-After"):
        try:
            return float(headers[key])
        except (KeyError, TypeError, ValueError):
            continue
    return 60.0
