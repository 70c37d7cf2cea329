"""The ``bridge`` command line: run, check, manage subscriptions, status."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

from bridge import __version__, logs
from bridge.config import Config, ConfigError, load_config, resolve_path
from bridge.errors import AuthFailed, BridgeError
from bridge.model import ChatEvent, ChatTarget, ChatUser, EventKind
from bridge.storage.db import DatabaseUnavailable, close_database, open_database, redact

log = logging.getLogger("bridge.cli")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
CLI_USER = ChatUser("cli", "operator", "command line", is_room_admin=True)

DESCRIPTION = """Relay microblog posts (Bluesky) into Telegram and Discord rooms, and act on the
network from chat. Start with:  cp config.example.toml config.toml  (fill in your tokens),
then  bridge check  and  bridge run."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bridge", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"bridge {__version__}")
    p.add_argument("-c", "--config", metavar="PATH", help="config file (default: $BRIDGE_CONFIG or ./config.toml)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("run", help="run the bridge until Ctrl-C / SIGTERM")
    sub.add_parser("check", help="validate the config and log in to every platform")
    for verb, what, arg in (
        ("follow", "relay an account's posts to a chat", "handle"),
        ("unfollow", "stop relaying an account", "handle_or_id"),
        ("watch", "relay posts matching a search query", "query"),
        ("unwatch", "stop relaying a query", "query_or_id"),
    ):
        s = sub.add_parser(verb, help=what)
        s.add_argument(arg, nargs="+" if verb in ("watch", "unwatch") else None, help=arg.replace("_", " "))
        s.add_argument(
            "--to", required=True, metavar="DEST", help="telegram:<chat_id>[/<topic>] or discord:<channel_id>[/<thread>]"
        )
        s.add_argument("--network", metavar="NAME", help="network section name, e.g. bluesky (default: inferred)")
    s = sub.add_parser("subs", help="list subscriptions")
    s.add_argument("--to", metavar="DEST", help="only this destination")
    sub.add_parser("status", help="per subscription and destination: last post, last delivery, failures")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return EXIT_CONFIG
    path = resolve_path(args.config)
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logs.setup(config.log_level, config.secrets(), config.log_format)
    runner = {"run": cmd_run, "check": cmd_check, "status": cmd_status, "subs": cmd_subs}.get(args.command, cmd_manage)
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
    bridge = Bridge(config)
    delay = 1.0
    while True:  # the database may come up after us (containers, reboots): wait for it, calmly
        try:
            await bridge.start()
            break
        except DatabaseUnavailable as exc:
            print(f"error: {exc}; retrying in {delay:.0f} s (check [database] url in {config.path})", file=sys.stderr)
        except AuthFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            return EXIT_OK
        delay = min(delay * 2, 30)
    await stop.wait()
    log.info("shutdown requested")
    await bridge.stop()
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
            print(f"no platform is configured: add a [telegram] or [discord] section and a [bluesky] section to {config.path}")
            ok = False
        for name, adapter in bridge.adapters.items():
            try:
                line = await asyncio.wait_for(adapter.check(), 30)
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


async def cmd_manage(config: Config, args: argparse.Namespace) -> int:
    """follow/unfollow/watch/unwatch through the same command layer the chats use."""
    from bridge.app import Bridge

    try:
        target = ChatTarget.parse(args.to)
    except ValueError as exc:
        print(f"error: --to: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if target.platform not in config.adapters:
        print(f"error: --to: there is no [{target.platform}] section in {config.path}", file=sys.stderr)
        return EXIT_CONFIG
    value = getattr(
        args, {"follow": "handle", "unfollow": "handle_or_id", "watch": "query", "unwatch": "query_or_id"}[args.command]
    )
    text = " ".join(value) if isinstance(value, list) else value
    if args.network:
        text = f"{args.network}:{text}"
    if failed := await _open(config):
        return failed
    bridge = Bridge(config)
    try:
        if args.command == "follow":
            for net in bridge.networks.values():
                try:
                    await net.check()
                except BridgeError as exc:
                    print(f"error: {net.name}: {exc}", file=sys.stderr)
                    return EXIT_FAILED
        answer = await bridge.commands.handle(ChatEvent(EventKind.COMMAND, target, CLI_USER, command=args.command, args=text))
    finally:
        for adapter in bridge.adapters.values():
            with contextlib.suppress(Exception):
                await adapter.stop()
        await close_database()
    print(answer.text, file=sys.stdout if answer.ok else sys.stderr)
    return EXIT_OK if answer.ok else EXIT_FAILED


async def cmd_subs(config: Config, args: argparse.Namespace) -> int:
    from bridge.commands import _describe
    from bridge.storage.store import Store

    target = None
    if args.to:
        try:
            target = ChatTarget.parse(args.to)
        except ValueError as exc:
            print(f"error: --to: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    if failed := await _open(config):
        return failed
    try:
        subs = await Store().subscriptions(target)
    finally:
        await close_database()
    if not subs:
        print("no subscriptions")
    for s in subs:
        print(f"{s.destination}  {_describe(s)}")
    return EXIT_OK


async def cmd_status(config: Config, args: argparse.Namespace) -> int:
    from bridge.commands import _what
    from bridge.storage.store import Store

    if failed := await _open(config):
        return failed
    store = Store()
    try:
        rows = await store.status_rows()
        paused = await store.paused_destinations()
    finally:
        await close_database()
    if not rows:
        print("no subscriptions; add one with `bridge follow <handle> --to telegram:<chat_id>` or /follow in chat")
    for r in rows:
        s = r["subscription"]
        last_post = r["last_post"].strftime("%Y-%m-%d %H:%M:%S") if r["last_post"] else "never"
        last = r["last_delivery"].strftime("%Y-%m-%d %H:%M:%S") if r["last_delivery"] else "never"
        print(
            f"#{s.id} {_what(s)} -> {s.destination}: last post {last_post}, last delivery {last}, "
            f"{r['sent']} sent, {r['pending']} pending, {r['failed']} failed"
            + (f"; last failure: {r['last_error'][:300]}" if r["last_error"] else "")
        )
    for target, reason in sorted(paused.items()):
        print(f"paused {target}: {reason}")
    return EXIT_OK
