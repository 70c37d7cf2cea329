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
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Values people leave in from an example: refusing them beats a confusing 401 later.
_PLACEHOLDER = re.compile(
    r"(?i)^\s*(change[ _-]?me|replace[ _-]?me|todo|xxx+|\.\.\.|<[^>]*>|your[ _-].*|placeholder|secret|token)\s*$"
    r"|CHANGE[_-]?ME"
)


class ConfigError(Exception):
    """A mistake in the config: ``str(error)`` is the one line to show the user."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        self.path, self.key, self.problem = path, key, problem
        where = f"{path}: {key}: " if key else f"{path}: "
        super().__init__(where + problem)


CORE_SECTIONS: dict[str, dict[str, Key]] = {
    "database": {
        "url": Key(str, "sqlite://bridge.sqlite3", help="sqlite://FILE or postgres://user:pass@host:5432/db"),
    },
    "bridge": {
        "admins": Key(list, [], help='a list like ["telegram:123456789", "discord:112233445566778899"]'),
        "senders": Key(list, [], help='a list like ["telegram:123456789"]'),
        "backfill": Key(int, 0, min=0, help="a whole number of posts, 0 or more"),
        "concurrency": Key(int, 64, min=1, help="how many destinations are sent to at once"),
        "send_timeout": Key((int, float), 30, min=1, help="seconds one send may take before it is retried"),
        "log_level": Key(str, "info", choices=("debug", "info", "warning", "error")),
        "shutdown_timeout": Key((int, float), 10, min=0, help="seconds in-flight sends get at shutdown"),
        "log_format": Key(str, "text", choices=("text", "json"), help='"json" writes one JSON object per line'),
    },
    "http": {
        "listen": Key(str, "", help='host:port for /healthz, /metrics and webhooks, e.g. "127.0.0.1:8080"'),
    },
}
SUBSCRIPTION_KEYS: dict[str, Key] = {
    "network": Key(str, required=True, help='the network section name, e.g. "bluesky"'),
    "follow": Key(str, "", help="a handle to follow"),
    "query": Key(str, "", help="a search query to watch"),
    "to": Key(list, required=True, help='destinations like ["telegram:-1001234567890"]'),
    "include": Key(list, [], help='words a post must contain one of, e.g. ["pricing", "outage"]'),
    "exclude": Key(list, [], help="words that drop a post"),
    "replies": Key(bool, True),
    "reposts": Key(bool, True),
    "media_only": Key(bool, False),
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


@dataclass(frozen=True)
class Config:
    path: str
    database_url: str
    admins: frozenset[str]
    senders: frozenset[str]
    backfill: int = 0
    concurrency: int = 64
    send_timeout: float = 30.0
    log_level: str = "info"
    shutdown_timeout: float = 10.0
    log_format: str = "text"
    http_listen: str = ""  # "" = no HTTP endpoint
    adapters: dict[str, dict[str, Any]] = field(default_factory=dict)
    adapter_classes: dict[str, type] = field(default_factory=dict)
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
            "no such file; create it with `cp config.example.toml config.toml` and fill in the sections "
            "of the platforms you use (or name another file with -c PATH or BRIDGE_CONFIG)",
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
    (tests use it to add fake adapters). Raises ConfigError."""
    env = os.environ if environ is None else environ
    data = _substitute(data, env, path, "")
    known = registry.available()
    classes: dict[str, type] = dict(adapter_classes or {})
    for name in data:
        if name in CORE_SECTIONS or name == "subscription" or name in classes:
            continue
        if name not in known:
            options = ", ".join(sorted([*CORE_SECTIONS, "subscription", *known, *classes]))
            raise ConfigError(path, f"[{name}]", f"unknown section; the sections are: {options}")
        try:
            classes[name] = registry.load(name)
        except Exception as exc:  # a broken adapter install must not look like a config typo
            raise ConfigError(path, f"[{name}]", f"the {name} adapter failed to load: {exc}") from None
    core = {name: _section(data.get(name, {}), schema, path, name) for name, schema in CORE_SECTIONS.items()}
    adapters = {
        name: _section(data[name], getattr(cls, "CONFIG", {}), path, name) for name, cls in classes.items() if name in data
    }
    b = core["bridge"]
    admins = _identities(b["admins"], path, "[bridge] admins")
    senders = _identities(b["senders"], path, "[bridge] senders")
    url = core["database"]["url"]
    if not url.startswith(("sqlite://", "postgres://", "postgresql://", "asyncpg://")):
        raise ConfigError(
            path,
            "[database] url",
            f"{url!r} is not a database URL; use sqlite://bridge.sqlite3 or postgres://user:pass@host:5432/db",
        )
    listen = core["http"]["listen"].strip()
    if listen:
        from bridge.ops.http import parse_listen

        try:
            parse_listen(listen)
        except ValueError as exc:
            raise ConfigError(path, "[http] listen", str(exc)) from None
    for name, settings in adapters.items():
        for key, spec in getattr(classes[name], "CONFIG", {}).items():
            if not settings.get(key):
                continue
            if spec.needs_http and not listen:
                raise ConfigError(
                    path, f"[{name}] {key}", 'needs the HTTP endpoint: add [http] listen = "0.0.0.0:8080" (or remove this key)'
                )
            for other in spec.requires:
                if not settings.get(other):
                    raise ConfigError(path, f"[{name}] {other}", f"is missing; it is needed when {key} is set")
    subs = _subscriptions(data.get("subscription", []), path, adapters, classes)
    return Config(
        path=path,
        database_url=url,
        admins=admins,
        senders=senders,
        backfill=b["backfill"],
        concurrency=b["concurrency"],
        send_timeout=float(b["send_timeout"]),
        log_level=b["log_level"],
        shutdown_timeout=float(b["shutdown_timeout"]),
        log_format=b["log_format"],
        http_listen=listen,
        adapters=adapters,
        adapter_classes={k: v for k, v in classes.items() if k in adapters},
        subscriptions=subs,
    )


def _substitute(value: Any, env: Mapping[str, str], path: str, key: str) -> Any:
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in env:
                raise ConfigError(
                    path,
                    key or "value",
                    f"environment variable {name} is not set; export {name}=... or write the value in the file",
                )
            return env[name]

        return _VAR.sub(repl, value)
    if isinstance(value, Mapping):
        return {k: _substitute(v, env, path, _join(key, k, isinstance(v, Mapping))) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, path, key) for v in value]
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


def _section(raw: Any, schema: Mapping[str, Key], path: str, name: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(path, f"[{name}]", "must be a table: write it as a [" + name + "] header with keys under it")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in schema:
            close = [k for k in schema if _similar(k, key)]
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(path, f"[{name}] {key}", f"unknown key; {hint}the keys are: {', '.join(schema) or '(none)'}")
        spec = schema[key]
        types = spec.type if isinstance(spec.type, tuple) else (spec.type,)
        # TOML ints are valid where floats are asked for; bools are not numbers here.
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok and float in types and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ConfigError(
                path,
                f"[{name}] {key}",
                f"must be {_type_name(spec.type)}, not {value!r}" + (f" ({spec.help})" if spec.help else ""),
            )
        if spec.choices and value not in spec.choices:
            raise ConfigError(path, f"[{name}] {key}", f"must be one of {', '.join(map(repr, spec.choices))}, not {value!r}")
        if spec.min is not None and isinstance(value, int | float) and value < spec.min:
            raise ConfigError(path, f"[{name}] {key}", f"must be at least {spec.min:g}, not {value!r}")
        if isinstance(value, str) and (spec.secret or spec.required) and _PLACEHOLDER.search(value):
            raise ConfigError(
                path,
                f"[{name}] {key}",
                f"still holds the placeholder {value!r}; put the real value here (or ${{VAR}} to read it from the environment)",
            )
        if isinstance(value, str) and spec.pattern and value and not re.fullmatch(spec.pattern, value):
            raise ConfigError(
                path, f"[{name}] {key}", "has characters or a length not allowed" + (f"; {spec.help}" if spec.help else "")
            )
        if isinstance(value, str) and spec.required and not value.strip():
            raise ConfigError(path, f"[{name}] {key}", "is empty" + (f"; {spec.help}" if spec.help else ""))
        out[key] = value
    for key, spec in schema.items():
        if key not in out:
            if spec.required:
                raise ConfigError(
                    path, f"[{name}] {key}", "is missing" + (f"; {spec.help}" if spec.help else "; add it to the section")
                )
            out[key] = list(spec.default) if isinstance(spec.default, list) else spec.default
    return out


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


def _identities(values: list[Any], path: str, key: str) -> frozenset[str]:
    out = set()
    for v in values:
        if not isinstance(v, str) or ":" not in v or not v.split(":", 1)[1].strip():
            raise ConfigError(path, key, f'{v!r} is not a chat identity; write platform:user_id, e.g. "telegram:123456789"')
        platform, uid = v.split(":", 1)
        out.add(f"{platform.strip().lower()}:{uid.strip()}")
    return frozenset(out)


def _subscriptions(
    raw: Any, path: str, adapters: Mapping[str, Any], classes: Mapping[str, type]
) -> tuple[StaticSubscription, ...]:
    if not isinstance(raw, list):
        raise ConfigError(path, "subscription", "must be written as [[subscription]] tables")
    subs = []
    for n, entry in enumerate(raw, 1):
        name = f"subscription #{n}"
        s = _section(entry, SUBSCRIPTION_KEYS, path, name)
        if s["network"] not in adapters or registry.kind_of(classes[s["network"]]) != "network":
            nets = [k for k in adapters if registry.kind_of(classes[k]) == "network"]
            raise ConfigError(
                path,
                f"[{name}] network",
                f"{s['network']!r} is not a configured network; configured: {', '.join(nets) or 'none (add a [bluesky] section)'}",
            )
        if bool(s["follow"]) == bool(s["query"]):
            raise ConfigError(path, f"[{name}]", 'set exactly one of follow = "handle" or query = "words"')
        if not s["to"]:
            raise ConfigError(path, f"[{name}] to", 'is empty; list at least one destination like "telegram:-1001234567890"')
        targets = []
        for t in s["to"]:
            try:
                target = ChatTarget.parse(str(t))
            except ValueError as exc:
                raise ConfigError(path, f"[{name}] to", str(exc)) from None
            if target.platform not in adapters:
                raise ConfigError(
                    path, f"[{name}] to", f"{t!r} is on {target.platform}, which has no [{target.platform}] section"
                )
            targets.append(target)
        for k in ("include", "exclude"):
            if not all(isinstance(w, str) and w.strip() for w in s[k]):
                raise ConfigError(path, f"[{name}] {k}", "must be a list of non-empty strings")
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
            )
        )
    return tuple(subs)
