"""What a user may type to name an X account: ``x:handle``, ``@handle``, or a profile link on
x.com or twitter.com, turned into the username, or a message saying what is wrong.

X usernames are 1 to 15 letters, digits or underscores (https://help.x.com/en/managing-your-
account/x-username-rules). ``@handle`` alone is X's form; ``@alice@mastodon.social`` is
Mastodon's and is not taken here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

USERNAME = re.compile(r"[A-Za-z0-9_]{1,15}")
_HOSTS = frozenset({"x.com", "twitter.com", "mobile.twitter.com", "mobile.x.com", "m.twitter.com"})
# First path segments of x.com that are pages, not profiles.
_RESERVED = frozenset(
    {
        "home", "explore", "search", "i", "settings", "messages", "notifications", "intent", "share", "hashtag",
        "compose", "tos", "privacy", "login", "logout", "signup", "account", "jobs", "about", "download", "lists",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Handle:
    username: str  # as typed, case kept (X matches usernames case-insensitively)

    @property
    def key(self) -> str:
        """Case-folded, for comparing and storing."""
        return self.username.lower()

    def __str__(self) -> str:
        return f"x:{self.username}"


class BadHandle(ValueError):
    """A handle a user typed that cannot be an X account; the message says why and the fix."""


def looks_like_x(text: str) -> bool:
    """Whether ``text`` names an X account unambiguously (for inferring the network)."""
    t = text.strip()
    low = t.lower()
    if low.startswith(("x:", "twitter:")):
        return True
    if low.startswith("@") and t.count("@") == 1 and "." not in t:
        return True
    host = urlsplit(t if "://" in t else f"https://{t}").hostname or ""
    return host.removeprefix("www.") in _HOSTS


def parse_handle(text: str) -> Handle:
    """The account ``text`` names, or BadHandle with a one-line reason and the fix."""
    t = text.strip()
    low = t.lower()
    for prefix in ("x:", "twitter:"):
        if low.startswith(prefix):
            t = t[len(prefix) :].strip()
            break
    if "/" in t or low.startswith(("http:", "https:")):
        return _from_url(t)
    if t.startswith("@"):
        t = t[1:]
        if "@" in t:
            raise BadHandle(f"{text!r} is a Mastodon address, not an X account; X handles look like @alice or x:alice")
    return _check(t, text)


def _from_url(t: str) -> Handle:
    parts = urlsplit(t if "://" in t else f"https://{t}")
    host = (parts.hostname or "").removeprefix("www.")
    if host not in _HOSTS:
        raise BadHandle(f"{t!r} is not an x.com or twitter.com link; give the profile link (https://x.com/alice) or x:alice")
    segments = [s for s in parts.path.split("/") if s]
    if not segments or segments[0].lower() in _RESERVED:
        raise BadHandle(f"{t!r} is not a profile link; give https://x.com/<username> or x:<username>")
    name = segments[0].lstrip("@")
    if len(segments) > 1 and segments[1] == "status":
        raise BadHandle(f"{t!r} links to a post; to follow its author use x:{name}")
    return _check(name, t)


def _check(name: str, typed: str) -> Handle:
    if not name:
        raise BadHandle("an X handle is missing; write it as @alice or x:alice")
    if len(name) > 15:
        raise BadHandle(f"{typed!r}: X usernames are at most 15 characters (this one has {len(name)})")
    if not USERNAME.fullmatch(name):
        raise BadHandle(f"{typed!r}: X usernames hold only letters, digits and _ (like @alice_99)")
    return Handle(name)
