"""``bridge init``: write a minimal config for the platforms asked for, so that a newcomer's
first ``bridge run`` names only what is left to do (the environment variables to export)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from bridge import registry
from bridge.configschema import Key

# Environment variable names that the README and config.example.toml use; any other key of an
# adapter gets SECTION_KEY.
ENV_NAMES: Mapping[tuple[str, str], str] = {
    ("telegram", "token"): "TELEGRAM_BOT_TOKEN",
    ("discord", "token"): "DISCORD_BOT_TOKEN",
    ("bluesky", "identifier"): "BLUESKY_HANDLE",
    ("bluesky", "password"): "BLUESKY_APP_PASSWORD",
}
# Where each value comes from, said where the file asks for it.
WHERE: Mapping[str, str] = {
    "telegram": "Telegram: talk to @BotFather, /newbot; it answers with the token.",
    "discord": "Discord: https://discord.com/developers/applications → New Application → Bot → Reset Token.",
    "bluesky": "Bluesky: the team account's handle, and an app password (Settings → Privacy and security → App passwords).",
}


def add_parser(sub: argparse._SubParsersAction, **common: object) -> None:
    p = sub.add_parser(
        "init",
        help="write a minimal config for the platforms you use",
        description="Write a minimal config file (./config.toml, or -c PATH) for the chat platforms and networks "
        "named; secrets are read from environment variables. An existing file is never overwritten.",
        epilog="example:\n  bridge init --chat telegram --network bluesky\n  bridge init --chat telegram,discord --network bluesky -c prod.toml",
        **common,
    )
    p.add_argument("--chat", metavar="NAME", action="append", default=[], help="a chat platform: " + _names("chat"))
    p.add_argument("--network", metavar="NAME", action="append", default=[], help="a network: " + _names("network"))


def _names(kind: str) -> str:
    return ", ".join(sorted(n for n, k in registry.available().items() if k == kind)) or "none installed"


def _split(values: Sequence[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        out += [w.strip().lower() for w in v.split(",") if w.strip() and w.strip().lower() not in out]
    return out


def env_name(section: str, key: str) -> str:
    return ENV_NAMES.get((section, key), f"{section}_{key}".upper())


def render(chats: Sequence[str], networks: Sequence[str], schemas: Mapping[str, Mapping[str, Key]]) -> tuple[str, list[str]]:
    """The config text for these platforms, and the environment variables it reads."""
    lines = [
        "# Written by `bridge init`. Every key, with its default and a comment, is in config.example.toml.",
        "# Values in ${...} are read from the environment: export them, then run `bridge check`.",
        "# The database is sqlite://bridge.sqlite3 here (or $DATABASE_URL when set); see [database] in",
        "# config.example.toml for PostgreSQL.",
        "",
        "[bridge]",
        '# You, to manage any room and speak as the team account, e.g. admins = ["telegram:123456789"]:',
        "# send /start (Telegram) or /help (Discord) to the bot and it tells you your id.",
        "admins = []",
    ]
    env: list[str] = []
    for name in [*chats, *networks]:
        lines += ["", f"# {WHERE.get(name, f'the {name} adapter: see its README.')}", f"[{name}]"]
        for key, spec in schemas[name].items():
            if spec.required:  # optional modes (a webhook) are in config.example.toml
                var = env_name(name, key)
                env.append(var)
                comment = f"  # {spec.help}" if spec.help else ""
                lines.append(f'{key} = "${{{var}}}"{comment}')
    return "\n".join(lines) + "\n", env


def run(args: argparse.Namespace, path: str) -> int:
    known = registry.available()
    chats, networks = _split(args.chat), _split(args.network)
    problems = []
    for name in chats:
        if known.get(name) != "chat":
            problems.append(
                f"--chat {name}: {'that is a network; use --network' if known.get(name) else 'unknown'}; the chat platforms are: {_names('chat')}"
            )
    for name in networks:
        if known.get(name) != "network":
            problems.append(
                f"--network {name}: {'that is a chat platform; use --chat' if known.get(name) else 'unknown'}; the networks are: {_names('network')}"
            )
    if not chats:
        problems.append(f"name at least one chat platform with --chat ({_names('chat')})")
    if not networks:
        problems.append(f"name at least one network with --network ({_names('network')})")
    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return 2
    target = Path(path)
    if target.exists():
        print(
            f"error: {path} exists already and is kept as it is; edit it, delete it first, or write another file with -c PATH",
            file=sys.stderr,
        )
        return 2
    schemas = {name: getattr(registry.load(name), "CONFIG", {}) for name in [*chats, *networks]}
    text, env = render(chats, networks, schemas)
    try:
        # Owner-only from the start: people paste tokens into it.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        print(f"error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    flag = f" -c {path}" if path != "config.toml" else ""
    print(f"wrote {path} for {', '.join(chats)} and {', '.join(networks)}. Next:")
    print(f"  export {' '.join(f'{v}=...' for v in env)}")
    print(f"  bridge{flag} check    # logs in everywhere: one line per platform")
    print(f"  bridge{flag} run      # then /follow <handle> in a chat with the bot")
    return 0
