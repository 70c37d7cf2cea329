"""The ``bridge`` command line: init, run, check, and every room admin's verb (``rooms``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import stat
import sys
from collections.abc import Mapping, Sequence

from bridge import __version__, logs
from bridge.cli import audit, init, rooms
from bridge.config import Config, ConfigError, load_config, resolve_path
from bridge.errors import AuthFailed, BridgeError
from bridge.ops.http import ListenFailed
from bridge.storage.db import (
    DatabaseInUse,
    DatabaseUnavailable,
    DatabaseUnusable,
    close_database,
    hold_sqlite,
    open_database,
    redact,
)

log = logging.getLogger("bridge.cli")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2

DESCRIPTION = """Relay microblog posts (Bluesky) into Telegram and Discord rooms, and act on the
network from chat. Start with:  bridge init --chat telegram --network bluesky  (it says which
environment variables to export), then  bridge check  and  bridge run."""
CONFIG_HELP = "config file (default: $BRIDGE_CONFIG or ./config.toml); before or after the command"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bridge", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"bridge {__version__}")
    p.add_argument("-c", "--config", metavar="PATH", help=CONFIG_HELP)
    # -c is accepted after the command too (`bridge run -c prod.toml`); SUPPRESS keeps a -c
    # given before the command when none comes after it.
    config_after = argparse.ArgumentParser(add_help=False)
    config_after.add_argument("-c", "--config", metavar="PATH", default=argparse.SUPPRESS, help=CONFIG_HELP)
    common = {"parents": [config_after], "formatter_class": argparse.RawDescriptionHelpFormatter}
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser(
        "run",
        help="run the bridge until Ctrl-C / SIGTERM",
        description="Run the bridge until Ctrl-C or SIGTERM; in-flight sends are drained on the way out.",
        epilog="example:\n  bridge run -c prod.toml",
        **common,
    )
    sub.add_parser(
        "check",
        help="validate the config and log in to every platform",
        description="Validate the config and log in to every configured platform: one line per platform.",
        epilog="example:\n  bridge check -c prod.toml",
        **common,
    )
    init.add_parser(sub, **common)
    rooms.add_parsers(sub, **common)
    audit.add_parser(sub, **common)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return EXIT_CONFIG
    path = resolve_path(args.config)
    if args.command == "init":
        return init.run(args, path)
    try:
        config = load_config(path)
    except ConfigError as exc:
        for error in exc.errors:
            print(f"error: {error.line}", file=sys.stderr)
        return EXIT_CONFIG
    logs.setup(config.log_level, config.secrets(), config.log_format)
    runner = {"run": cmd_run, "check": cmd_check, "audit": audit.run}.get(args.command, rooms.run)
    try:
        return asyncio.run(runner(config, args))
    except KeyboardInterrupt:
        return EXIT_OK


async def cmd_run(config: Config, args: argparse.Namespace) -> int:
    from bridge.app import Bridge

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if not config.adapters:
        print(f"error: {_no_platform(config)}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        lock = hold_sqlite(config.database_url)  # held until this process ends
    except DatabaseInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    bridge = Bridge(config)
    delay = 1.0
    while True:  # the database may come up after us (containers, reboots): wait for it, calmly
        try:
            await bridge.start()
            break
        except DatabaseUnusable as exc:  # a path that can never work: say so at once
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        except DatabaseUnavailable as exc:
            print(f"error: {exc}; retrying in {delay:.0f} s (check [database] url in {config.path})", file=sys.stderr)
        except AuthFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except ListenFailed as exc:
            print(f"error: {exc}; fix: stop what listens there, or set another port in [http] listen in {config.path}", file=sys.stderr)
            return EXIT_CONFIG
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            return EXIT_OK
        delay = min(delay * 2, 30)
    await stop.wait()
    log.info("shutdown requested")
    await bridge.stop()
    if lock is not None:
        lock.close()
    return EXIT_OK


async def _open(config: Config) -> int | None:
    try:
        await open_database(config.database_url)
    except DatabaseUnavailable as exc:
        print(f"error: {exc} (check [database] url in {config.path})", file=sys.stderr)
        return EXIT_FAILED
    return None


async def cmd_check(config: Config, args: argparse.Namespace) -> int:
    from bridge.app import Bridge

    failed = await _open(config)
    print(f"database: {'FAILED' if failed else 'ok'} ({redact(config.database_url)})")
    if failed:
        return failed
    bridge = Bridge(config)
    ok = True
    try:
        if not bridge.adapters:
            print(_no_platform(config))
            ok = False
        if warning := _readable_secrets(config):
            print(warning)
        for name, adapter in bridge.adapters.items():
            # Progress on stderr (a login may take seconds); stdout keeps one line per platform.
            print(f"{name}: {_logging_in(config.adapters.get(name, {}))} …", file=sys.stderr, flush=True)
            try:
                line = await asyncio.wait_for(adapter.check(), CHECK_TIMEOUT)
                print(f"{name}: {line}")
            except AuthFailed as exc:
                ok = False
                print(f"{name}: FAILED: {exc}")
            except (BridgeError, OSError, TimeoutError) as exc:
                ok = False
                print(
                    f"{name}: FAILED: could not reach it ({exc or type(exc).__name__}); check [{name}] in {config.path} and the network"
                )
            finally:
                with contextlib.suppress(Exception):
                    await adapter.stop()
    finally:
        await close_database()
    return EXIT_OK if ok else EXIT_FAILED


CHECK_TIMEOUT = 30.0
# The setting that names where a platform's login goes, in the order they are looked for.
_WHERE_KEYS = ("service", "instance", "api_url")


def _logging_in(settings: object) -> str:
    """``logging in to https://bsky.social`` (the configured server), or ``logging in``."""
    if isinstance(settings, Mapping):
        for key in _WHERE_KEYS:
            if isinstance(settings.get(key), str) and settings[key]:
                return f"logging in to {redact(settings[key])}"
    return "logging in"


def _no_platform(config: Config) -> str:
    return f"no platform is configured: add a [telegram] or [discord] section and a [bluesky] section to {config.path}"


def _readable_secrets(config: Config) -> str | None:
    """A warning when the config file holds a secret (not through ${VAR}) and others may read it."""
    try:
        mode = stat.S_IMODE(os.stat(config.path).st_mode)
        text = open(config.path, encoding="utf-8").read()
    except OSError:
        return None
    if not mode & 0o044 or not any(secret in text for secret in config.secrets()):
        return None
    who = "anyone on this machine" if mode & 0o004 else "its group"
    return f"warning: {config.path} holds a secret and {who} can read it (mode {mode:o}); fix: chmod 600 {config.path}"
