"""What a room admin does in chat, from the terminal: the same verbs through the same command
layer (``bridge.commands``), so chat and command line never disagree. Answers name the
destination (``--to``) where chat says "this room"."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from bridge.commands import TERMINAL
from bridge.config import Config, parse_destination
from bridge.model import ChatEvent, ChatTarget, ChatUser, EventKind
from bridge.registry import available, kind_of

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
CLI_USER = ChatUser(TERMINAL, "operator", "command line", is_room_admin=True)
TO_HELP = "the chat: telegram:<chat_id>[/<topic>], telegram:@channel or discord:<channel_id>[/<thread>] (/help there tells you)"


@dataclass(frozen=True)
class Verb:
    """One room verb: its help, its positional argument, and examples for --help."""

    help: str
    arg: str = ""  # metavar of the words after the verb ("" for none)
    nargs: str | None = None  # "+" or "*" for several words, None for exactly one
    arg_help: str = ""
    examples: tuple[str, ...] = ()
    to_required: bool = True  # False: --to may be left out (all rooms, or found from the id)
    network: bool = False  # takes --network
    topic: bool = False  # takes --topic (a topic or thread of its own in the chat)


VERBS: Mapping[str, Verb] = {
    "follow": Verb(
        "relay an account's posts to a chat",
        "HANDLE",
        None,
        "a handle (alice.bsky.social), a DID, or a profile link (https://bsky.app/profile/alice.bsky.social)",
        (
            "bridge follow alice.bsky.social --to telegram:-1001234567890",
            "bridge follow alice.bsky.social --to discord:112233445566778899",
            "bridge follow alice.bsky.social --topic --to telegram:-1001234567890",
        ),
        network=True,
        topic=True,
    ),
    "unfollow": Verb(
        "stop relaying an account to a chat",
        "HANDLE_OR_ID",
        None,
        "the handle, or the subscription id from `bridge subs`",
        ("bridge unfollow alice.bsky.social --to telegram:-1001234567890", "bridge unfollow 12 --to telegram:-1001234567890"),
        network=True,
    ),
    "watch": Verb(
        "relay posts matching a search query to a chat",
        "QUERY",
        "+",
        "the search words; quote a phrase for the shell: '\"Home Depot\"'",
        ("bridge watch '\"Home Depot\"' --to telegram:-1001234567890", "bridge watch '#nrf2027' --to discord:112233445566778899"),
        network=True,
        topic=True,
    ),
    "unwatch": Verb(
        "stop relaying a query to a chat",
        "QUERY_OR_ID",
        "+",
        "the query, or the subscription id from `bridge subs`",
        ("bridge unwatch '\"Home Depot\"' --to telegram:-1001234567890", "bridge unwatch 7 --to telegram:-1001234567890"),
        network=True,
    ),
    "subs": Verb(
        "list subscriptions with their ids and filters (of one chat with --to)",
        examples=("bridge subs", "bridge subs --to telegram:-1001234567890"),
        to_required=False,
    ),
    "filter": Verb(
        "set a subscription's filters",
        "ID RULES",
        "+",
        "the subscription id, then rules: include:a,b exclude:c replies:off reposts:off media:only thread:on, or reset",
        ("bridge filter 12 include:pricing,outage replies:off", "bridge filter 12 reset"),
        to_required=False,
    ),
    "digest": Verb(
        "collect a subscription's posts into one message hourly or daily",
        "ID MODE",
        "+",
        "the subscription id, then off, hourly or daily",
        ("bridge digest 12 daily", "bridge digest 12 off"),
        to_required=False,
    ),
    "quiet": Verb(
        "hold a chat's posts at night and summarise them after (no argument: show them)",
        "HOURS",
        "*",
        "a range and a tz database time zone (default UTC), or off",
        ("bridge quiet 22:00-07:00 Europe/Berlin --to telegram:-1001234567890", "bridge quiet off --to telegram:-1001234567890"),
    ),
    "inbox": Verb(
        "relay the team account's mentions, replies and DMs to a chat (or stop)",
        "on|off [NETWORK]",
        "+",
        "on or off, optionally with the network",
        ("bridge inbox on --to telegram:-1001234567890", "bridge inbox off bluesky --to telegram:-1001234567890"),
    ),
    "format": Verb(
        "show or set how relayed posts look in a chat: compact (one line: author, first words, link) or full",
        "compact|full",
        "*",
        "compact or full; nothing: show it",
        ("bridge format compact --to telegram:-1001234567890", "bridge format --to discord:112233445566778899"),
    ),
    "pause": Verb(
        "stop relaying into a chat until `bridge resume` (waiting posts are dropped)",
        examples=("bridge pause --to telegram:-1001234567890",),
    ),
    "resume": Verb(
        "relay into a paused chat again (also one paused because sending there failed)",
        examples=("bridge resume --to telegram:-1001234567890",),
    ),
    "status": Verb(
        "per subscription: last post, last delivery, failures and their reasons (of one chat with --to)",
        examples=("bridge status", "bridge status --to telegram:-1001234567890", "bridge status --json | jq '.rooms[0]'"),
        to_required=False,
    ),
    "find": Verb(
        "find accounts by words in their names and bios",
        "WORDS",
        "+",
        "the words, e.g. CEO biotech",
        ("bridge find CEO biotech", "bridge find --network bluesky gene therapy"),
        to_required=False,
        network=True,
    ),
    "who": Verb(
        "an account in brief: bio, counts, link, whether the team follows it, which chats relay it",
        "HANDLE",
        None,
        "a handle (alice.bsky.social) or a DID",
        ("bridge who alice.bsky.social",),
        to_required=False,
        network=True,
    ),
    "recent": Verb(
        "an account's last posts (default 5, at most 20), without following it",
        "HANDLE [N]",
        "+",
        "the handle, then how many",
        ("bridge recent alice.bsky.social", "bridge recent alice.bsky.social 20"),
        to_required=False,
        network=True,
    ),
    "search": Verb(
        "the newest posts matching a query, once (`bridge watch` relays them from now on)",
        "QUERY [N]",
        "+",
        "the search words, then how many (default 5, at most 20)",
        ("bridge search CEO biotech", "bridge search '\"gene therapy\"' 10"),
        to_required=False,
        network=True,
    ),
}
# Verbs that only look: they need no chat (--to is ignored) and change nothing.
LOOKUPS = ("find", "who", "recent", "search")


def add_parsers(sub: argparse._SubParsersAction, **common: object) -> None:
    for name, verb in VERBS.items():
        p = sub.add_parser(
            name,
            help=verb.help,
            description=verb.help[0].upper() + verb.help[1:] + ".",
            epilog="example" + ("s" if len(verb.examples) > 1 else "") + ":\n" + "\n".join(f"  {e}" for e in verb.examples),
            **common,
        )
        if verb.arg:
            p.add_argument("words", metavar=verb.arg, nargs=verb.nargs, help=verb.arg_help)
        p.add_argument("--to", required=verb.to_required, metavar="DEST", help=TO_HELP)
        if name == "status":
            p.add_argument("--json", action="store_true", help="print JSON for scripts (its shape is in the README)")
        if verb.network:
            p.add_argument("--network", metavar="NAME", help="the network, e.g. bluesky (default: inferred from the handle)")
        if verb.topic:
            p.add_argument(
                "--topic",
                action="store_true",
                help="relay into a topic of its own (Telegram forum) or thread (Discord), named after the account or query",
            )


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _chat_classes(config: Config) -> dict[str, type]:
    return {k: cls for k, cls in config.adapter_classes.items() if kind_of(cls) == "chat"}


def _network_problem(config: Config, name: str) -> str:
    nets = [k for k, cls in config.adapter_classes.items() if kind_of(cls) == "network"]
    if name in nets:
        return ""
    configured = ", ".join(nets) or "none"
    known = available().get(name)
    if known == "network" or name in ("mastodon", "x"):
        return f"--network {name}: the {name} network is not configured (no [{name}] section in {config.path}); configured: {configured}"
    if known == "chat":
        return f"--network {name}: {name} is a chat platform; use --to {name}:<chat>; networks configured: {configured}"
    return f"--network {name}: unknown network; configured: {configured}"


async def run(config: Config, args: argparse.Namespace) -> int:
    """One room verb: validate the destination, then hand the verb to the command layer."""
    from bridge.app import Bridge
    from bridge.storage.db import close_database

    name = args.command
    verb = VERBS[name]
    words = getattr(args, "words", None)
    text = " ".join(words) if isinstance(words, list) else (words or "")
    target: ChatTarget | None = None
    if args.to is not None:
        try:
            target = parse_destination(args.to, _chat_classes(config), config.path)
        except ValueError as exc:
            return _fail(f"--to: {exc}")
    if verb.network and args.network:
        problem = _network_problem(config, args.network.strip().lower())
        if problem:
            return _fail(problem)
        text = f"{args.network.strip().lower()}:{text}"
    if getattr(args, "topic", False):
        text = f"{text} --topic"
    if name in ("filter", "digest") and not text.split()[0].removeprefix("#").isdigit():
        return _fail(f"the first word must be the subscription id; `bridge subs` lists them, e.g. {verb.examples[0]}")

    from bridge.cli import _open

    if failed := await _open(config):
        return failed
    bridge = Bridge(config)
    try:
        if target is None and name in ("filter", "digest"):
            sub = await bridge.store.subscription(int(text.split()[0].removeprefix("#")))
            if sub is None or not sub.enabled:
                return _fail(f"no subscription #{text.split()[0].removeprefix('#')}; `bridge subs` lists them", EXIT_FAILED)
            target = sub.destination
        if name == "status" and args.json:  # the same shape for one room or all
            return await _everywhere(bridge, name, as_json=True) if target is None else await _room_json(bridge, target)
        if target is None and name in LOOKUPS:
            target = ChatTarget(TERMINAL, "terminal")
        if target is None:
            return await _everywhere(bridge, name)
        if name == "follow" or name in LOOKUPS:
            # The networks log in (or reuse the saved session) before resolving the handle.
            for net in bridge.networks.values():
                try:
                    await net.check()
                except Exception as exc:
                    return _fail(f"{net.name}: {exc}", EXIT_FAILED)
        answer = await bridge.commands.handle(ChatEvent(EventKind.COMMAND, target, CLI_USER, command=name, args=text))
    finally:
        for adapter in bridge.adapters.values():
            with contextlib.suppress(Exception):
                await adapter.stop()
        await close_database()
    if not answer.ok:
        return _fail(answer.text, EXIT_FAILED)
    print(answer.text)
    return EXIT_OK


async def _everywhere(bridge: object, name: str, as_json: bool = False) -> int:
    """``subs`` and ``status`` without --to: every destination."""
    from bridge.commands import _describe, network_status_lines
    from bridge.ops import status

    store = bridge.store  # type: ignore[attr-defined]
    if name == "subs":
        subs = await store.subscriptions()
        if not subs:
            print("no subscriptions; add one with `bridge follow <handle> --to telegram:<chat_id>` or /follow in chat")
        for s in subs:
            print(f"{s.destination}  {_describe(s)}")
        return EXIT_OK
    report = await status.gather(store, lease_seconds=bridge.config.lease_seconds)  # type: ignore[attr-defined]
    # What networks keep about themselves (X: the month's spend, forecast and cap).
    accounts = await network_status_lines(store, bridge.networks)  # type: ignore[attr-defined]
    if as_json:
        out = status.as_json(report)
        out["networks"] = dict(line.split(": ", 1) for line in accounts)
        print(json.dumps(out, indent=2))
    else:
        print("\n".join([status.table(report), *accounts]))
    return EXIT_OK


async def _room_json(bridge: object, target: ChatTarget) -> int:
    from bridge.ops import status

    report = await status.gather(bridge.store, target)  # type: ignore[attr-defined]
    print(json.dumps(status.as_json(report), indent=2))
    return EXIT_OK
