"""Per-subscription filters: what a room wants of a feed, and the ``/filter`` syntax for it."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from bridge.model import Post

FILTER_HELP = (
    "write rules like: include:pricing,outage exclude:hiring replies:off reposts:off media:only thread:on topic:on "
    '(quote phrases: include:"home depot"; include: or exclude: alone clears the list; "reset" clears all)'
)


@dataclass(frozen=True)
class Filters:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    replies: bool = True
    reposts: bool = True
    media_only: bool = False
    thread: bool = False  # open a chat thread under each relayed post (where the chat platform can)
    topic: bool = False  # relay into a topic or thread of the room's own for this feed (/follow --topic)
    digest: str = "off"  # "off", "hourly" or "daily": collect posts into one message

    def to_json(self) -> dict[str, Any]:
        return {
            "include": list(self.include),
            "exclude": list(self.exclude),
            "replies": self.replies,
            "reposts": self.reposts,
            "media_only": self.media_only,
            "thread": self.thread,
            "topic": self.topic,
            "digest": self.digest,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Filters:
        data = data or {}
        return cls(
            include=tuple(data.get("include", ())),
            exclude=tuple(data.get("exclude", ())),
            replies=bool(data.get("replies", True)),
            reposts=bool(data.get("reposts", True)),
            media_only=bool(data.get("media_only", False)),
            thread=bool(data.get("thread", False)),
            topic=bool(data.get("topic", False)),
            digest=str(data.get("digest", "off")),
        )

    @cached_property
    def _include_re(self) -> re.Pattern[str] | None:
        return _words_pattern(self.include)

    @cached_property
    def _exclude_re(self) -> re.Pattern[str] | None:
        return _words_pattern(self.exclude)

    def accepts(self, post: Post) -> bool:
        """Whether ``post`` passes: kind rules first (cheap), then words over the text and the
        quoted text. Include means "at least one of", exclude means "none of"; matching is
        case-insensitive on whole words."""
        if post.is_reply and not self.replies:
            return False
        if post.is_repost and not self.reposts:
            return False
        if self.media_only and not post.media:
            return False
        if self._include_re is None and self._exclude_re is None:
            return True
        text = post.text if post.quote is None else f"{post.text}\n{post.quote.text}"
        if self._include_re is not None and not self._include_re.search(text):
            return False
        return not (self._exclude_re is not None and self._exclude_re.search(text))

    def describe(self) -> str:
        """A short line for /subs; empty when nothing is filtered."""
        parts = []
        if self.include:
            parts.append("include:" + ",".join(_quote(w) for w in self.include))
        if self.exclude:
            parts.append("exclude:" + ",".join(_quote(w) for w in self.exclude))
        if not self.replies:
            parts.append("replies:off")
        if not self.reposts:
            parts.append("reposts:off")
        if self.media_only:
            parts.append("media:only")
        if self.thread:
            parts.append("thread:on")
        if self.topic:
            parts.append("topic:on")
        if self.digest != "off":
            parts.append(f"digest:{self.digest}")
        return " ".join(parts)


def _quote(word: str) -> str:
    return f'"{word}"' if " " in word or "," in word else word


def _words_pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    if not words:
        return None
    # \b fails next to '#' or '$' (#nrf2027, $ACME), so use look-arounds on word characters instead.
    alts = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alts})(?!\w)", re.IGNORECASE)


DIGEST_MODES = ("off", "hourly", "daily")
_SWITCH = {"on": True, "yes": True, "true": True, "off": False, "no": False, "false": False}


def parse_rules(current: Filters, text: str) -> Filters:
    """Apply ``/filter`` rules to ``current``. Raises ValueError with a message for the user."""
    try:
        tokens = shlex.split(text)
    except ValueError:
        raise ValueError(f"unbalanced quotes in {text!r}; {FILTER_HELP}") from None
    if not tokens:
        raise ValueError(f"no rules given; {FILTER_HELP}")
    result = current
    for token in tokens:
        if token.lower() in ("reset", "clear", "none"):
            result = replace(Filters(), thread=result.thread, topic=result.topic, digest=result.digest)
            continue
        name, sep, value = token.partition(":")
        name = name.lower()
        if not sep:
            raise ValueError(f"{token!r} is not a rule; {FILTER_HELP}")
        if name in ("include", "exclude"):
            words = tuple(w.strip() for w in value.split(",") if w.strip())
            if any(len(w) > 100 for w in words) or len(words) > 50:
                raise ValueError("too many or too long words: at most 50 words of 100 characters each")
            result = replace(result, **{name: words})
        elif name in ("replies", "reposts", "thread", "topic"):
            if value.lower() not in _SWITCH:
                raise ValueError(f"{name}: takes on or off, not {value!r}")
            result = replace(result, **{name: _SWITCH[value.lower()]})
        elif name == "digest":
            if value.lower() not in DIGEST_MODES:
                raise ValueError(f"digest: takes off, hourly or daily, not {value!r}")
            result = replace(result, digest=value.lower())
        elif name == "media":
            if value.lower() not in ("only", "all", "any"):
                raise ValueError(f"media: takes only or all, not {value!r}")
            result = replace(result, media_only=value.lower() == "only")
        else:
            raise ValueError(f"unknown rule {name!r}; {FILTER_HELP}")
    return result
