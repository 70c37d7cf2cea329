"""Reads, substitutes and validates the TOML config.

Every problem becomes a ConfigError that names the file, the key and the fix; the CLI
prints it as one line and exits 2. Adapter sections are validated against the adapter's
own ``CONFIG`` schema, so a typo in any key is caught before anything starts.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge import registry
from bridge.configschema import Key
from bridge.model import ChatTarget

DEFAULT_PATH = "config.toml"
_ACCOUNT = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Values people leave in from an example: refusing them beats a confusing 401 later.
_PLACEHOLDER = re.compile(
    r"(?i)^\s*(change[ _-]?me|replace[ _-]?me|todo|xxx+|\.\.\.|<[^>]*>|your[ _-].*|placeholder|secret|token)\s*$"
    r"|CHANGE[_-]?ME"
)


class ConfigError(Exception):
    """A mistake in the config: ``str(error)`` is the one line to show the user.

    ``load_config`` and ``config_from_dict`` look at the whole file before giving up, so the
    one they raise carries every mistake found in ``errors`` (itself first); its ``str`` is
    one line per mistake."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        self.path, self.key, self.problem = path, key, problem
        self.line = (f"{path}: {key}: " if key else f"{path}: ") + problem
        self.errors: tuple[ConfigError, ...] = (self,)
        super().__init__(self.line)

    @classmethod
    def of(cls, errors: list[ConfigError]) -> ConfigError:
        """One error that stands for all of ``errors`` (in the order found)."""
        first = errors[0]
        combined = cls(first.path, first.key, first.problem)
        combined.errors = tuple(errors)
        combined.args = ("\n".join(e.line for e in errors),)
        return combined

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.line


class _Problems:
    """The mistakes found so far in one file: validation goes on after one, so that a user
    fixes them all in one round instead of one per run."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.found: list[ConfigError] = []

    def add(self, key: str, problem: str) -> None:
        self.found.append(ConfigError(self.path, key, problem))

    def raise_any(self) -> None:
        if self.found:
            raise ConfigError.of(self.found)


# A value whose ${VAR} is not set: already reported, so no other check speaks of it.
_UNSET = object()


CORE_SECTIONS: dict[str, dict[str, Key]] = {
    "database": {
        "url": Key(str, "sqlite://bridge.sqlite3", help="sqlite://FILE or postgres://user:pass@host:5432/db"),
    },
    "bridge": {
        "admins": Key(list, [], help='a list like ["telegram:123456789", "discord:112233445566778899"]'),
        "senders": Key(list, [], help='a list like ["telegram:123456789"]'),
        "approvers": Key(list, [], help='who may approve drafts (default: the admins), a list like ["telegram:123456789"]'),
        "draft_expiry": Key((int, float), 24, min=0.01, help="hours a draft waits for approval before it expires"),
        "backfill": Key(int, 0, min=0, help="a whole number of posts, 0 or more"),
        "concurrency": Key(int, 64, min=1, help="how many destinations are sent to at once"),
        "send_timeout": Key((int, float), 30, min=1, help="seconds one send may take before it is retried"),
        "log_level": Key(str, "info", choices=("debug", "info", "warning", "error")),
        "shutdown_timeout": Key((int, float), 10, min=0, help="seconds in-flight sends get at shutdown"),
        "log_format": Key(str, "text", choices=("text", "json"), help='"json" writes one JSON object per line'),
        "lease_seconds": Key(
            (int, float),
            10,
            min=3,
            help="seconds a worker's claim on a room or listener lasts without renewal (several workers on Postgres)",
        ),
    },
    "http": {
        "listen": Key(str, "", help='host:port for /healthz, /metrics and webhooks, e.g. "127.0.0.1:8080"'),
    },
}
SUBSCRIPTION_KEYS: dict[str, Key] = {
    "network": Key(str, required=True, help='the network account (its section name), e.g. "bluesky" or "bluesky_sales"'),
    "follow": Key(str, "", help="a handle to follow"),
    "query": Key(str, "", help="a search query to watch"),
    "to": Key(list, required=True, help='destinations like ["telegram:-1001234567890"]'),
    "include": Key(list, [], help='words a post must contain one of, e.g. ["pricing", "outage"]'),
    "exclude": Key(list, [], help="words that drop a post"),
    "replies": Key(bool, True),
    "reposts": Key(bool, True),
    "media_only": Key(bool, False),
    "topic": Key(bool, False, help="relay into a forum topic (Telegram) or thread (Discord) of its own, as /follow --topic"),
}


@dataclass(frozen=True, slots=True)
class StaticSubscription:
    """A ``[[subscription]]`` from the config, applied at start like /follow or /watch."""

    network: str
    kind: str  # "follow" or "query"
    value: str
    to: tuple[ChatTarget, ...]
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    replies: bool = True
    reposts: bool = True
    media_only: bool = False
    topic: bool = False


@dataclass(frozen=True)
class Config:
    path: str
    database_url: str
    admins: frozenset[str]
    senders: frozenset[str]
    backfill: int = 0
    approvers: frozenset[str] = frozenset()  # empty: the admins approve
    draft_expiry: float = 24.0  # hours
    concurrency: int = 64
    send_timeout: float = 30.0
    log_level: str = "info"
    shutdown_timeout: float = 10.0
    log_format: str = "text"
    lease_seconds: float = 10.0  # several workers on Postgres: how long a claim lasts unrenewed
    http_listen: str = ""  # "" = no HTTP endpoint
    adapters: dict[str, dict[str, Any]] = field(default_factory=dict)
    adapter_classes: dict[str, type] = field(default_factory=dict)
    adapter_kinds: dict[str, str] = field(default_factory=dict)  # section name → "network" or "chat"
    subscriptions: tuple[StaticSubscription, ...] = ()

    def secrets(self) -> list[str]:
        """Every secret value in the config, so that log output can be checked for them."""
        found = []
        for name, settings in self.adapters.items():
            schema = getattr(self.adapter_classes.get(name), "CONFIG", {})
            found += [str(settings[k]) for k, spec in schema.items() if spec.secret and settings.get(k)]
        return found


def resolve_path(cli_path: str | None) -> str:
    """``-c PATH``, else ``$BRIDGE_CONFIG``, else ``./config.toml``."""
    return cli_path or os.environ.get("BRIDGE_CONFIG") or DEFAULT_PATH


def load_config(path: str, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config at ``path``. Raises ConfigError."""
    file = Path(path)
    if not file.exists():
        raise ConfigError(
            path,
            "",
            "no such file; create one with `bridge init --chat telegram --network bluesky` (or copy "
            "config.example.toml and delete the sections you do not use), or name another file with -c PATH or BRIDGE_CONFIG",
        )
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"not valid TOML ({exc}); fix the syntax at that line") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", f"cannot read it ({exc})") from None
    return config_from_dict(data, path, environ=environ)


def config_from_dict(
    data: Mapping[str, Any],
    path: str = "<config>",
    *,
    environ: Mapping[str, str] | None = None,
    adapter_classes: Mapping[str, type] | None = None,
) -> Config:
    """Validate a parsed TOML document. ``adapter_classes`` overrides entry-point lookup
    (tests use it to add fake adapters). Raises ConfigError carrying every mistake found."""
    env = os.environ if environ is None else environ
    problems = _Problems(path)
    data = _substitute(data, env, problems, "")
    known = registry.available()
    classes: dict[str, type] = dict(adapter_classes or {})
    kinds: dict[str, str] = {}
    raw_sections: dict[str, Any] = {}
    for name in data:
        if name in CORE_SECTIONS or name == "subscription":
            continue
        raw = data[name]
        if not isinstance(raw, Mapping):
            problems.add(f"[{name}]", f"must be a table: write it as a [{name}] header with keys under it")
            continue
        # A section is an account; its type is the adapter (matterbridge's protocol.name):
        # [bluesky] is the account "bluesky" of type bluesky, [bluesky_sales] with
        # type = "bluesky" a second one.
        type_name = raw.get("type", name)
        if not isinstance(type_name, str) or not type_name:
            problems.add(f"[{name}] type", f'must be an adapter type in quotes, e.g. type = "bluesky"; installed: {", ".join(sorted(known))}')
            continue
        if not _ACCOUNT.match(name):
            problems.add(
                f"[{name}]",
                "an account name is lower-case letters, digits and _ (at most 32, starting with a letter), e.g. [bluesky_sales]",
            )
            continue
        raw_sections[name] = {k: v for k, v in raw.items() if k != "type"}
        if name in classes and type_name == name:
            continue
        if type_name in classes:  # a second account of a type handed in directly (tests)
            classes[name] = classes[type_name]
            continue
        if type_name not in known:
            if "type" in raw:
                options = ", ".join(sorted(known)) or "none"
                problems.add(f"[{name}] type", f"no adapter of type {type_name!r} is installed; installed: {options}")
            else:
                options = ", ".join(sorted({*CORE_SECTIONS, "subscription", *known, *classes}))
                close = [k for k in {*known, *classes} if _similar(k, name)]
                hint = f"did you mean [{close[0]}]? " if close else ""
                problems.add(
                    f"[{name}]",
                    f'unknown section; {hint}a second account of a network is a section of its own name with type = "bluesky" '
                    f"in it; the sections are: {options}",
                )
            raw_sections.pop(name)
            continue
        try:
            classes[name], kinds[name] = registry.load_with_kind(type_name)
        except Exception as exc:  # a broken adapter install must not look like a config typo
            problems.add(f"[{name}]", f"the {type_name} adapter failed to load: {exc}")
            raw_sections.pop(name)
            continue
        if kinds[name] == "chat" and name != type_name:
            problems.add(
                f"[{name}] type",
                f"{type_name} is a chat platform; one [{type_name}] section per bridge (several accounts are for networks)",
            )
    core = {name: _section(data.get(name, {}), schema, problems, name) for name, schema in CORE_SECTIONS.items()}
    adapters = {
        name: _section(raw_sections[name], getattr(cls, "CONFIG", {}), problems, name)
        for name, cls in classes.items()
        if name in raw_sections
    }
    for name in adapters:
        if name not in kinds:
            try:
                kinds[name] = registry.kind_of(classes[name])
            except LookupError as exc:
                problems.add(f"[{name}]", str(exc))
    b = core["bridge"]
    admins = _identities(b["admins"], problems, "[bridge] admins", classes)
    senders = _identities(b["senders"], problems, "[bridge] senders", classes)
    approvers = _identities(b["approvers"], problems, "[bridge] approvers", classes)
    url = core["database"]["url"]
    database = data.get("database")
    if (not isinstance(database, Mapping) or "url" not in database) and env.get("DATABASE_URL", "").strip():
        # The convention of Heroku-style hosts: the database they attach is named by DATABASE_URL.
        url = env["DATABASE_URL"].strip()
        key = "DATABASE_URL (environment)"
    else:
        key = "[database] url"
    if isinstance(url, str) and not url.startswith(("sqlite://", "postgres://", "postgresql://", "asyncpg://")):
        problems.add(key, f"{url!r} is not a database URL; use sqlite://bridge.sqlite3 or postgres://user:pass@host:5432/db")
    listen = (core["http"]["listen"] or "").strip()
    if listen:
        from bridge.ops.http import parse_listen

        try:
            parse_listen(listen)
        except ValueError as exc:
            problems.add("[http] listen", str(exc))
    for name, settings in adapters.items():
        for key, spec in getattr(classes[name], "CONFIG", {}).items():
            if not settings.get(key):
                continue
            if spec.needs_http and not listen:
                problems.add(f"[{name}] {key}", 'needs the HTTP endpoint: add [http] listen = "0.0.0.0:8080" (or remove this key)')
            for other in spec.requires:
                if not settings.get(other) and not raw_sections[name].get(other):  # a bad value is reported already
                    problems.add(f"[{name}] {other}", f"is missing; it is needed when {key} is set")
    subs = _subscriptions(data.get("subscription", []), problems, adapters, classes, kinds)
    problems.raise_any()
    return Config(
        path=path,
        database_url=url,
        admins=admins,
        senders=senders,
        approvers=approvers,
        draft_expiry=float(b["draft_expiry"]),
        backfill=b["backfill"],
        concurrency=b["concurrency"],
        send_timeout=float(b["send_timeout"]),
        log_level=b["log_level"],
        shutdown_timeout=float(b["shutdown_timeout"]),
        log_format=b["log_format"],
        lease_seconds=float(b["lease_seconds"]),
        http_listen=listen,
        adapters=adapters,
        adapter_classes={k: v for k, v in classes.items() if k in adapters},
        adapter_kinds={k: kinds.get(k, "") for k in adapters},
        subscriptions=subs,
    )


def _substitute(value: Any, env: Mapping[str, str], problems: _Problems, key: str) -> Any:
    if isinstance(value, str):
        missing = [m.group(1) for m in _VAR.finditer(value) if m.group(1) not in env]
        if missing:
            name = missing[0]
            section = key.split("]")[0] + "]" if key.startswith("[") else ""
            # Most often the example's section of a platform this user does not use.
            unused = f", or delete the whole {section} section if you do not use it" if section and " " in key else ""
            problems.add(
                key or "value",
                f"environment variable {name} is not set; export {name}=... or write the value in the file{unused}",
            )
            return _UNSET
        return _VAR.sub(lambda m: env[m.group(1)], value)
    if isinstance(value, Mapping):
        return {k: _substitute(v, env, problems, _join(key, k, isinstance(v, Mapping))) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, problems, key) for v in value]
    return value


def _join(parent: str, child: str, is_table: bool) -> str:
    if not parent:
        return f"[{child}]" if is_table else child
    return f"{parent} {child}"


def _type_name(t: type | tuple[type, ...]) -> str:
    names = {
        str: "a string in quotes",
        int: "a whole number",
        float: "a number",
        bool: "true or false",
        list: "a list [...]",
        dict: "a table",
    }
    ts = t if isinstance(t, tuple) else (t,)
    return " or ".join(names.get(x, x.__name__) for x in ts)


def _section(
    raw: Any, schema: Mapping[str, Key], problems: _Problems, name: str, bad: set[str] | None = None
) -> dict[str, Any]:
    """The section's values with defaults filled in. A key with a mistake is reported (and
    added to ``bad``) and gets its default, so that the rest of the file is still checked."""
    out: dict[str, Any] = {}
    if not isinstance(raw, Mapping):
        problems.add(f"[{name}]", "must be a table: write it as a [" + name + "] header with keys under it")
        raw = {}
    bad = set() if bad is None else bad
    for key, value in raw.items():
        problem = _key_problem(schema, key, value)
        if problem is None:
            out[key] = value
        else:
            bad.add(key)
            # A typo of a key ("tokn") already says its fix; "token is missing" would repeat it.
            bad.update(k for k in schema if key not in schema and _similar(k, key))
            if problem:
                problems.add(f"[{name}] {key}", problem)
    for key, spec in schema.items():
        if key not in out:
            if spec.required and key not in bad:
                problems.add(f"[{name}] {key}", "is missing" + (f"; {spec.help}" if spec.help else "; add it to the section"))
            out[key] = list(spec.default) if isinstance(spec.default, list) else spec.default
    return out


def _key_problem(schema: Mapping[str, Key], key: str, value: Any) -> str | None:
    """What is wrong with ``key = value`` (None: nothing; "": already reported)."""
    if key not in schema:
        close = [k for k in schema if _similar(k, key)]
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key; {hint}the keys are: {', '.join(schema) or '(none)'}"
    if value is _UNSET or (isinstance(value, list) and _UNSET in value):
        return ""
    spec = schema[key]
    types = spec.type if isinstance(spec.type, tuple) else (spec.type,)
    # TOML ints are valid where floats are asked for; bools are not numbers here.
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok and float in types and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        return f"must be {_type_name(spec.type)}, not {value!r}" + (f" ({spec.help})" if spec.help else "")
    if spec.choices and value not in spec.choices:
        return f"must be one of {', '.join(map(repr, spec.choices))}, not {value!r}"
    if spec.min is not None and isinstance(value, int | float) and value < spec.min:
        return f"must be at least {spec.min:g}, not {value!r}"
    if isinstance(value, str) and (spec.secret or spec.required) and _PLACEHOLDER.search(value):
        return f"still holds the placeholder {value!r}; put the real value here (or ${{VAR}} to read it from the environment)"
    if isinstance(value, str) and spec.pattern and value and not re.fullmatch(spec.pattern, value):
        return "has characters or a length not allowed" + (f"; {spec.help}" if spec.help else "")
    if isinstance(value, str) and spec.required and not value.strip():
        return "is empty" + (f"; {spec.help}" if spec.help else "")
    return None


def _similar(a: str, b: str) -> bool:
    a, b = a.lower(), b.lower()
    if a == b or a.replace("_", "") == b.replace("_", ""):
        return True
    if abs(len(a) - len(b)) > 2:
        return False
    # one or two edits apart is a typo worth suggesting
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1] <= 2


def _identities(values: list[Any], problems: _Problems, key: str, classes: Mapping[str, type]) -> frozenset[str]:
    """``platform:user_id`` entries; the platform's adapter checks the id where it can."""
    out = set()
    for v in values:
        if not isinstance(v, str) or ":" not in v or not v.split(":", 1)[1].strip():
            problems.add(key, f'{v!r} is not a chat identity; write platform:user_id, e.g. "telegram:123456789"')
            continue
        platform, uid = (part.strip() for part in v.split(":", 1))
        platform = platform.lower()
        parse_user = getattr(classes.get(platform), "parse_user", None)
        try:
            if parse_user is not None:
                uid = parse_user(uid)
            elif uid.startswith("@"):
                raise ValueError(f"{v!r} is a username, which never matches: write the numeric user id")
        except ValueError as exc:
            problems.add(key, str(exc))
            continue
        out.add(f"{platform}:{uid}")
    return frozenset(out)


def parse_destination(text: str, chats: Mapping[str, type], where: str = "") -> ChatTarget:
    """``platform:chat_id[/thread]`` checked by that platform's chat adapter (``parse_target``),
    so that a destination the platform cannot send to is refused now rather than retried
    forever. ``chats`` maps the configured chat platforms to their adapter classes; ``where``
    names the config file for the "no such section" message. Raises ValueError for the user."""
    target = ChatTarget.parse(text)
    cls = chats.get(target.platform)
    if cls is None:
        configured = ", ".join(sorted(chats)) or "none"
        raise ValueError(
            f"{text.strip()!r} is on {target.platform}, which has no [{target.platform}] section"
            + (f" in {where}" if where else "")
            + f" (configured chat platforms: {configured})"
        )
    rest = text.strip().partition(":")[2]
    return cls.parse_target(rest)


def _subscriptions(
    raw: Any, problems: _Problems, adapters: Mapping[str, Any], classes: Mapping[str, type], kinds: Mapping[str, str]
) -> tuple[StaticSubscription, ...]:
    if not isinstance(raw, list):
        problems.add("subscription", "must be written as [[subscription]] tables")
        return ()
    chats = {k: classes[k] for k in adapters if kinds.get(k) == "chat"}
    nets = [k for k in adapters if kinds.get(k) == "network"]
    subs = []
    for n, entry in enumerate(raw, 1):
        name = f"subscription #{n}"
        before = len(problems.found)
        bad: set[str] = set()
        s = _section(entry, SUBSCRIPTION_KEYS, problems, name, bad)
        if s["network"] is not None and "network" not in bad and s["network"] not in nets:
            problems.add(
                f"[{name}] network",
                f"{s['network']!r} is not a configured network; configured: {', '.join(nets) or 'none (add a [bluesky] section)'}",
            )
        if bool(s["follow"]) == bool(s["query"]) and not bad & {"follow", "query"}:
            problems.add(f"[{name}]", 'set exactly one of follow = "handle" or query = "words"')
        if s["to"] == []:
            problems.add(f"[{name}] to", 'is empty; list at least one destination like "telegram:-1001234567890"')
        targets = []
        for t in s["to"] or []:
            try:
                targets.append(parse_destination(str(t), chats))
            except ValueError as exc:
                problems.add(f"[{name}] to", str(exc))
        for k in ("include", "exclude"):
            if not all(isinstance(w, str) and w.strip() for w in s[k]):
                problems.add(f"[{name}] {k}", "must be a list of non-empty strings")
        if len(problems.found) > before:
            continue
        subs.append(
            StaticSubscription(
                network=s["network"],
                kind="follow" if s["follow"] else "query",
                value=s["follow"] or s["query"],
                to=tuple(targets),
                include=tuple(s["include"]),
                exclude=tuple(s["exclude"]),
                replies=s["replies"],
                reposts=s["reposts"],
                media_only=s["media_only"],
                topic=s["topic"],
            )
        )
    return tuple(subs)
