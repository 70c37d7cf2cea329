"""Logging in: who the token is, what the server allows, and which scopes are missing.

``log_in`` reads the instance (docs: methods/instance.md, v2 with a fall back to v1 for older
and compatible servers) for the length rule and the streaming URL, the account behind the
token (``verify_credentials``), and the token's scopes: from ``/api/v1/apps/verify_credentials``
where the server names them (Mastodon 4.3+), else by probing the reads the bridge needs. A
token without a needed scope is refused in one line naming every missing scope and the fix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from adapters.mastodon.handles import DEFAULT_CHARS_PER_URL, DEFAULT_MAX_CHARACTERS, LengthRule
from adapters.mastodon.http import MastodonHttp, MissingScope
from bridge.errors import NotFound, Permanent

# What the bridge does with the token, as fine-grained scopes (docs: api/oauth-scopes.md).
NEEDED_SCOPES = (
    "read:accounts",  # verify_credentials, lookups
    "read:statuses",  # timelines, conversations, the streams
    "read:notifications",  # the inbox
    "read:search",  # resolving remote accounts, phrase watches
    "read:lists",  # the list follow mode
    "write:statuses",  # replies, posts, DMs, boosts
    "write:favourites",
    "write:follows",
    "write:lists",
)
# Read probes for servers that do not list a token's scopes.
_PROBES = (("/api/v1/notifications", "read:notifications"), ("/api/v1/conversations", "read:statuses"))


@dataclass(frozen=True, slots=True)
class Login:
    account_id: str
    acct: str  # user@domain
    display_name: str
    domain: str
    rule: LengthRule
    streaming_url: str

    def summary(self) -> str:
        """What ``bridge check`` prints after ``mastodon: ok: ``."""
        return f"@{self.acct} (max {self.rule.max_characters} chars)"


def covers(granted: Iterable[str], scope: str) -> bool:
    """Whether ``granted`` includes ``scope``: ``read`` covers every ``read:*``, ``write``
    every ``write:*``, the legacy ``follow`` the follow writes and reads."""
    granted = set(granted)
    if scope in granted or scope.split(":", 1)[0] in granted:
        return True
    return scope in ("write:follows", "read:follows") and "follow" in granted


def missing_scopes(granted: Iterable[str]) -> list[str]:
    granted = list(granted)
    return [s for s in NEEDED_SCOPES if not covers(granted, s)]


async def log_in(http: MastodonHttp) -> Login:
    """Check the token against the server; raises AuthFailed (MissingScope for scopes) or a
    Transient/RateLimited the caller may retry."""
    instance = await _instance(http)
    config = _dict(instance.get("configuration"))
    statuses = _dict(config.get("statuses"))
    rule = LengthRule(
        max_characters=_positive(statuses.get("max_characters"), DEFAULT_MAX_CHARACTERS),
        characters_reserved_per_url=_positive(statuses.get("characters_reserved_per_url"), DEFAULT_CHARS_PER_URL),
    )
    streaming = _str(_dict(config.get("urls")).get("streaming")) or _str(_dict(instance.get("urls")).get("streaming_api"))
    domain = (_str(instance.get("domain")) or _str(instance.get("uri")) or http.server).lower()
    if "://" in domain:
        domain = urlsplit(domain).hostname or http.server
    me = await http.get("/api/v1/accounts/verify_credentials", scope="read:accounts")
    me = _dict(me)
    account_id, username = _str(me.get("id")), _str(me.get("username")) or _str(me.get("acct"))
    if not account_id or not username:
        raise Permanent(f"{http.server} answered verify_credentials without an account")
    missing = await _missing(http)
    if missing:
        raise MissingScope(" ".join(missing), "the bridge", http.server)
    return Login(account_id, f"{username}@{domain}", _str(me.get("display_name")), domain, rule, streaming)


async def _instance(http: MastodonHttp) -> dict[str, Any]:
    try:
        return _dict(await http.get("/api/v2/instance"))
    except NotFound:
        return _dict(await http.get("/api/v1/instance"))


async def _missing(http: MastodonHttp) -> list[str]:
    try:
        app = _dict(await http.get("/api/v1/apps/verify_credentials"))
    except (NotFound, Permanent):
        app = {}
    scopes = app.get("scopes")
    if isinstance(scopes, list) and all(isinstance(s, str) for s in scopes):
        return missing_scopes(scopes)
    missing: list[str] = []
    for path, scope in _PROBES:
        try:
            await http.get(path, {"limit": 1}, scope=scope)
        except MissingScope:
            missing.append(scope)
    return missing


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _positive(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1_000_000 else default
