"""Mastodon account addresses and the length of a status as the server counts it.

An account is ``username@domain`` (its WebFinger address, docs: spec/webfinger.md). People
write it many ways; ``parse_handle`` takes them all and says, in one line, what is wrong
with one it cannot take:

* ``@alice@server.tld``, ``alice@server.tld``, ``mastodon:alice@server.tld`` (also with ``@``);
* profile URLs: ``https://server.tld/@alice``, ``https://server.tld/users/alice``, and the
  view of a remote account on another server, ``https://server.tld/@alice@other.tld``;
* ``@alice`` alone, only where the caller says which server it means (``local_domain``).

``status_length`` counts as Mastodon's StatusLengthValidator does: extended grapheme clusters
of the content warning and the text, every URL as ``characters_reserved_per_url`` (23 by
default, docs: methods/instance.md), every ``@user@domain`` mention as ``@user`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import regex

NETWORK = "mastodon"
DEFAULT_MAX_CHARACTERS = 500
DEFAULT_CHARS_PER_URL = 23

# Mastodon: usernames are letters, digits and underscores; remote servers (Pleroma, Misskey)
# also allow dots and dashes inside (Account::USERNAME_RE and the mention regex).
_USERNAME = regex.compile(r"[a-z0-9_]+(?:[a-z0-9_.-]*[a-z0-9_])?", regex.IGNORECASE)
_LABEL = regex.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", regex.IGNORECASE)
_GRAPHEME = regex.compile(r"\X")
# What the server's formatter links, and so counts as a URL (twitter-text's rules, simplified:
# an http(s) URL up to whitespace, without trailing punctuation).
_URL = regex.compile(r"(?<![\w@/])https?://[^\s<>\"]+(?<![.,;:!?'\")\]])", regex.IGNORECASE)
_MENTION = regex.compile(r"(?<![\w/@])@([a-z0-9_]+(?:[a-z0-9_.-]+[a-z0-9_]+)?)@[\w.-]+\w", regex.IGNORECASE)

EXAMPLE = "@alice@mastodon.social"


@dataclass(frozen=True, slots=True)
class Handle:
    """A Mastodon account address; ``domain`` is lower case, ``username`` as written."""

    username: str
    domain: str

    @property
    def acct(self) -> str:
        return f"{self.username}@{self.domain}"

    def __str__(self) -> str:
        return "@" + self.acct


def parse_handle(text: str, *, local_domain: str = "") -> Handle:
    """The account ``text`` names, in any of the forms the module docstring lists.

    Raises ValueError with a one-line message for the person who wrote it.
    """
    raw = (text or "").strip()
    if not raw:
        raise ValueError(f"no Mastodon account given; write it as {EXAMPLE}")
    shown = _short(raw)
    if any(ch.isspace() for ch in raw):
        raise ValueError(f"{shown!r} is not a Mastodon account (it has spaces); write it as {EXAMPLE}")
    body = raw
    if body.lower().startswith(f"{NETWORK}:"):
        body = body[len(NETWORK) + 1 :]
    if body.lower().startswith(("http://", "https://")):
        return _from_url(body, shown)
    if "://" in body:
        raise ValueError(f"{shown!r} is not a Mastodon profile link; use https://server/@name or {EXAMPLE}")
    body = body.removeprefix("@")
    username, sep, domain = body.partition("@")
    if not sep:
        if not local_domain:
            raise ValueError(
                f"{shown!r} does not say which server the account is on; write it as @{username or 'alice'}@server.tld"
            )
        domain = local_domain
    return _checked(username, domain, shown)


def _from_url(url: str, shown: str) -> Handle:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        raise ValueError(f"{shown!r} is not a valid link; use https://server/@name or {EXAMPLE}") from None
    if parts.username or parts.password:
        raise ValueError(f"{shown!r} is not a profile link; use https://server/@name or {EXAMPLE}")
    segments = [unquote(s) for s in parts.path.split("/") if s]
    name = ""
    if segments and segments[0].startswith("@"):
        name = segments[0][1:]
    elif len(segments) >= 2 and segments[0] in ("users", "u", "profile"):
        name = segments[1]
    if not name or len(segments) > 2 or (len(segments) == 2 and segments[0].startswith("@")):
        raise ValueError(f"{shown!r} is not a Mastodon profile link; it should look like https://{host or 'server'}/@name")
    username, sep, domain = name.partition("@")
    return _checked(username, domain if sep else host, shown)


def _checked(username: str, domain: str, shown: str) -> Handle:
    if not username or not _USERNAME.fullmatch(username) or len(username) > 64:
        raise ValueError(f"{shown!r} has no valid account name before the server; write it as {EXAMPLE}")
    domain = domain.strip().rstrip(".").lower()
    try:
        ascii_domain = domain.encode("idna").decode("ascii") if domain and not domain.isascii() else domain
    except UnicodeError:
        raise ValueError(f"{_short(domain)!r} in {shown!r} is not a valid server name") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or len(ascii_domain) > 253 or not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        raise ValueError(
            f"{_short(domain)!r} in {shown!r} is not a server name like mastodon.social; write the account as {EXAMPLE}"
        )
    return Handle(username, domain)


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "…"


@dataclass(frozen=True, slots=True)
class LengthRule:
    """The instance's counting rule (``configuration.statuses`` of /api/v2/instance)."""

    max_characters: int = DEFAULT_MAX_CHARACTERS
    characters_reserved_per_url: int = DEFAULT_CHARS_PER_URL


def status_length(text: str, spoiler_text: str = "", *, chars_per_url: int = DEFAULT_CHARS_PER_URL) -> int:
    """The length Mastodon counts for a status of ``text`` with content warning ``spoiler_text``."""
    counted = _URL.sub("x" * chars_per_url, text)
    counted = _MENTION.sub(lambda m: "@" + m.group(1), counted)
    return len(_GRAPHEME.findall(spoiler_text + counted))


def check_length(text: str, rule: LengthRule, spoiler_text: str = "", server: str = "") -> str | None:
    """None if the status fits the server's limit, else why not, with the count."""
    if not text.strip():
        return "the text is empty"
    n = status_length(text, spoiler_text, chars_per_url=rule.characters_reserved_per_url)
    if n > rule.max_characters:
        where = server or "the Mastodon server"
        return (
            f"the text is {n} characters as {where} counts them (each link counts "
            f"{rule.characters_reserved_per_url}); it allows {rule.max_characters}"
        )
    return None
