"""The filtered stream's rules: which followed accounts and watched queries one connection can
carry within the plan's limits, and what each delivered post belongs to.

Pay-per-use allows one connection, 1,000 rules of up to 1,024 characters and the core operators
(https://docs.x.com/x-api/posts/filtered-stream/introduction, "Access levels"; the same limits
in https://docs.x.com/x-api/fundamentals/rate-limits, "Filtered stream"). Every Post the stream
delivers is billed as a Post read, deduplicated per UTC day
(https://docs.x.com/x-api/fundamentals/post-cap), so a rule leaves out what no room wants:
``-is:reply`` and ``-is:retweet`` when every subscription of those accounts drops replies or
reposts (the operators: https://docs.x.com/x-api/posts/filtered-stream/integrate/operators).

Followed accounts are packed as ``from:`` operators joined by ``OR`` into as few rules as fit;
each watched query is a rule of its own, tagged so that a delivered post finds its source
through ``matching_rules``. What does not fit (too many rules, a query too long) is left to
polling: the caller polls every source not in ``Rules.covered``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

MAX_RULES = 1000
MAX_RULE_LENGTH = 1024
FOLLOW_TAG = "follows"
QUERY_TAG = "q:"


@dataclass(frozen=True, order=True)
class Rule:
    value: str
    tag: str


@dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...]
    covered: frozenset[str]  # feed keys ("follow:<id>", "query:<q>") the rules carry
    queries: Mapping[str, str]  # rule tag → the watched query it stands for
    keys: Mapping[Rule, frozenset[str]] = field(default_factory=dict)  # rule → the feed keys it carries

    def accepted(self, held: Collection[Rule]) -> Rules:
        """These rules as far as X holds them (``held``): a rule X refused (an operator the
        stream does not take, a duplicate) carries nothing, so its feeds stay polled."""
        rules = tuple(r for r in self.rules if r in held)
        covered = frozenset(k for r in rules for k in self.keys.get(r, ()))
        return Rules(rules, covered, self.queries, {r: self.keys[r] for r in rules if r in self.keys})


def query_tag(query: str) -> str:
    return QUERY_TAG + hashlib.sha1(query.encode()).hexdigest()[:16]


def build_rules(
    follows: Iterable[tuple[str, str, str]],
    queries: Iterable[str],
    *,
    max_rules: int = MAX_RULES,
    max_length: int = MAX_RULE_LENGTH,
) -> Rules:
    """Rules for ``follows`` (``(user id, username, exclude)``, ``exclude`` as the user
    timeline takes it: ``""``, ``"replies"``, ``"retweets"`` or both) and ``queries``, at most
    ``max_rules`` rules of at most ``max_length`` characters. Queries first (one rule each),
    then the accounts packed by their exclusions."""
    rules: list[Rule] = []
    covered: set[str] = set()
    tags: dict[str, str] = {}
    keys: dict[Rule, frozenset[str]] = {}
    for q in sorted(set(queries)):
        value = q if "is:retweet" in q else f"({q}) -is:retweet"  # as recent search: no reposts
        if len(value) > max_length or len(rules) >= max_rules:
            continue
        tag = query_tag(q)
        rules.append(Rule(value, tag))
        covered.add(f"query:{q}")
        keys[rules[-1]] = frozenset({f"query:{q}"})
        tags[tag] = q
    groups: dict[str, list[tuple[str, str]]] = {}
    for uid, username, exclude in sorted(follows, key=lambda f: f[1].lower()):
        groups.setdefault(exclude, []).append((uid, username))
    for exclude, accounts in sorted(groups.items()):
        suffix = "".join(f" -is:{'reply' if e == 'replies' else 'retweet'}" for e in exclude.split(",") if e)
        batches: list[list[tuple[str, str]]] = [[]]
        for account in accounts:
            if batches[-1] and len(_value([*batches[-1], account], suffix)) > max_length:
                batches.append([])
            batches[-1].append(account)
        for batch in batches:
            if batch and len(rules) < max_rules and len(_value(batch, suffix)) <= max_length:
                rules.append(Rule(_value(batch, suffix), FOLLOW_TAG))
                keys[rules[-1]] = frozenset(f"follow:{uid}" for uid, _ in batch)
                covered.update(keys[rules[-1]])
    return Rules(tuple(rules), frozenset(covered), tags, keys)


def _value(batch: list[tuple[str, str]], suffix: str) -> str:
    return "(" + " OR ".join(f"from:{name}" for _, name in batch) + ")" + suffix


def reconnect_delay(kind: str, attempt: int, retry_after: float = 0.0) -> float:
    """Seconds to wait before reconnect ``attempt`` (1, 2, ...) after a failed connection, as
    https://docs.x.com/x-api/fundamentals/handling-disconnections asks: ``"network"`` errors
    back off linearly by 250 ms up to 16 s; ``"http"`` errors exponentially from 5 s up to
    320 s; ``"429"`` exponentially from one minute (never before X's reset; at most 15 minutes,
    the rate-limit window). An established connection that drops is retried at once (attempt 0)."""
    if attempt <= 0:
        return 0.0
    if kind == "network":
        return min(0.25 * attempt, 16.0)
    if kind == "429":
        return max(retry_after, min(60.0 * 2 ** (attempt - 1), 900.0))
    return min(5.0 * 2 ** (attempt - 1), 320.0)
