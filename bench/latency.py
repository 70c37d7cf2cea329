"""Benchmark 3, latency: from a post's creation on the local AT Protocol stack to the
Telegram emulator receiving it, in firehose mode.

The reference stack (tests/atproto: PLC + PDS + AppView from @atproto/dev-env, installed
once by tests/atproto/provision.sh) runs the network; the bridge (real core on SQLite, real
Bluesky adapter reading the PDS's ``subscribeRepos`` firehose, real Telegram adapter) relays
posts of ``--authors`` followed accounts to groups of the Bot API emulator (its own process,
limits off; the adapter's pacer is lifted as in bench.pipeline, since 20 messages per minute in
a group would otherwise be the whole story). ``--rooms`` gives the layouts measured: the
authors spread over that many groups (by default one group per author, as a team following
prospects room by room, and then all of them in one group, the worst case: one room's
messages go out one at a time, in order). Posts are created at a steady
``--rates`` (posts per second) for ``--seconds`` each; a post's clock starts when the PDS has
acknowledged its creation (the post exists and is on the firehose from then on) and stops
when the emulator accepts the message carrying it (``time.monotonic()``, one clock for both
processes). Reported: p50, p95, p99 and the largest, and apart, how long the PDS itself took
to take a post (its median) and the rate it took them at: on a small machine the local stack,
not the bridge, may be what cannot keep up. A few posts first warm everything up.

    python -m bench.latency [--rates 10,100] [--seconds 10] [--authors 10] [--rooms 10,1] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.bluesky import BlueskyAdapter
from adapters.telegram import TelegramAdapter
from adapters.telegram.pacing import Pacer
from bench.databases import throwaway
from bench.emulator import EmulatorProcess, start_emulator
from bench.report import log_to_file, median, percentile, publish
from bridge.app import Bridge
from bridge.config import config_from_dict
from bridge.model import Source, SourceKind
from tests.atproto.harness import Account, AtprotoStack, provision

CLASSES = {"bluesky": BlueskyAdapter, "telegram": TelegramAdapter}
TOKEN = re.compile(r"\blat-(\d+)\b")


async def start_bridge(stack: AtprotoStack, team: Account, password: str, emu: EmulatorProcess, db_url: str) -> Bridge:
    config = config_from_dict(
        {
            "database": {"url": db_url},
            "bridge": {"shutdown_timeout": 5},
            "bluesky": {
                "service": stack.pds,
                "identifier": team.handle,
                "password": password,
                "realtime": "firehose",
                "firehose_url": stack.firehose_url,
                "poll_interval": 30,
            },
            "telegram": {"token": emu.token, "api_url": emu.url, "poll_timeout": 1},
        },
        adapter_classes=CLASSES,
    )
    bridge = Bridge(config, adapter_classes=CLASSES)
    bridge.chats["telegram"]._pacer = Pacer.unlimited()  # type: ignore[attr-defined]
    await bridge.start()
    return bridge


def spy_on_firehose(bridge: Bridge) -> dict[int, float]:
    """Post number → when the adapter's firehose reader queued its record: splits the latency
    into the stack's part (PDS → firehose frame read) and the bridge's part (→ chat)."""
    seen: dict[int, float] = {}
    firehose = bridge.networks["bluesky"].firehose  # type: ignore[attr-defined]
    put = firehose.queue.put_nowait

    def put_and_note(event: Any) -> None:
        found = TOKEN.search(str(event.record.get("text", "")))
        if found:
            seen.setdefault(int(found.group(1)), time.monotonic())
        put(event)

    firehose.queue.put_nowait = put_and_note
    return seen


async def arrivals(emu: EmulatorProcess) -> dict[int, float]:
    """Post number → when the emulator accepted the message carrying it."""
    out: dict[int, float] = {}
    for m in await emu.messages():
        found = TOKEN.search(m["text"])
        if found:
            out.setdefault(int(found.group(1)), m["at"])
    return out


class Poster:
    """Creates numbered posts on the stack and remembers when each was asked for."""

    def __init__(self, stack: AtprotoStack, authors: Sequence[Account]) -> None:
        self.stack = stack
        self.authors = authors
        self.created: dict[int, float] = {}  # when the PDS acknowledged the write
        self.asked: dict[int, float] = {}  # when the write was sent
        self.write_seconds: dict[int, float] = {}  # how long the PDS took to take it
        self.failed = 0
        self._n = 0

    async def one(self) -> int:
        self._n += 1
        n = self._n
        asked = self.asked[n] = time.monotonic()
        try:
            await self.stack.post(self.authors[n % len(self.authors)], f"lat-{n} pricing update, outage report {n}")
        except Exception:
            self.failed += 1
            return n
        self.created[n] = time.monotonic()
        self.write_seconds[n] = self.created[n] - asked
        return n

    async def at_rate(self, rate: float, seconds: float) -> tuple[list[int], float]:
        """Posts at ``rate`` per second for ``seconds``; returns their numbers and the rate the
        stack actually took them at."""
        count = max(1, int(rate * seconds))
        start = time.monotonic()
        tasks = []
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.one()))
        numbers = await asyncio.gather(*tasks)
        took = time.monotonic() - start
        return [n for n in numbers if n in self.created], count / took


async def wait_for(emu: EmulatorProcess, numbers: Sequence[int], timeout: float) -> dict[int, float]:
    deadline = time.monotonic() + timeout
    while True:
        got = await arrivals(emu)
        if all(n in got for n in numbers) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.25)


@dataclass
class Run:
    """One burst of posts at one rate: what arrived, and when, split at the firehose read."""

    taken: float  # posts per second the PDS took
    posts: int
    missing: int
    write: list[float]  # the PDS's time to take each post
    latency: list[float]  # from the PDS's answer to the chat
    from_ask: list[float]  # from the write request to the chat
    stack_part: list[float]
    bridge_part: list[float]


async def measure_once(emu: EmulatorProcess, poster: Poster, read: dict[int, float], rate: float, seconds: float) -> Run:
    numbers, achieved = await poster.at_rate(rate, seconds)
    got = await wait_for(emu, numbers, 120)
    return Run(
        taken=achieved,
        posts=len(numbers),
        missing=sum(1 for n in numbers if n not in got),
        write=[poster.write_seconds[n] for n in numbers],
        latency=[got[n] - poster.created[n] for n in numbers if n in got],
        from_ask=[got[n] - poster.asked[n] for n in numbers if n in got],
        stack_part=[read[n] - poster.created[n] for n in numbers if n in read],
        bridge_part=[got[n] - read[n] for n in numbers if n in got and n in read],
    )


def row_for(rooms: int, rate: float, runs: Sequence[Run]) -> str:
    """One table row: each figure is the median over the runs of that run's percentile; the
    p99 of every run is shown in brackets."""

    def mid(values: Callable[[Run], list[float]], p: float) -> float:
        return median([percentile(values(r), p) for r in runs])

    p99 = mid(lambda r: r.latency, 99)
    verdict = "" if rate < 100 else (" (meets < 1 s)" if p99 < 1 else " (MISSES < 1 s)")
    each = ", ".join(f"{percentile(r.latency, 99):.2f}" for r in runs)
    return (
        f"| {rooms} | {rate:g} ({median([r.taken for r in runs]):.0f} taken) | {runs[0].posts} × {len(runs)} "
        f"| {mid(lambda r: r.write, 50):.2f} s | {mid(lambda r: r.latency, 50):.2f} s | {mid(lambda r: r.latency, 95):.2f} s "
        f"| {p99:.2f} s ({each}){verdict} | {max(max(r.latency, default=float('nan')) for r in runs):.2f} s "
        f"| {mid(lambda r: r.from_ask, 99):.2f} s | {sum(r.missing for r in runs)} "
        f"| {mid(lambda r: r.stack_part, 50):.2f} / {mid(lambda r: r.stack_part, 99):.2f} s "
        f"| {mid(lambda r: r.bridge_part, 50):.2f} / {mid(lambda r: r.bridge_part, 99):.2f} s |"
    )


async def main_async(args: argparse.Namespace) -> list[str]:
    logfile = log_to_file("latency")
    stack = await asyncio.to_thread(AtprotoStack.start, await asyncio.to_thread(provision))
    layouts = [int(r) for r in args.rooms.split(",")]
    emu = await start_emulator(private=0, groups=max(layouts))
    rows: list[str] = []
    try:
        team = await stack.create_account("team", "The Team")
        password = await stack.app_password(team)
        authors = [await stack.create_account(f"lat{i}", f"Author {i}") for i in range(args.authors)]
        async with throwaway("sqlite") as url:
            bridge = await start_bridge(stack, team, password, emu, url)
            try:
                read = spy_on_firehose(bridge)
                poster = Poster(stack, authors)
                subs: list[int] = []
                for rooms in layouts:
                    # Author i is followed in room i % rooms; the previous layout's follows go.
                    for sub_id in subs:
                        await bridge.unsubscribe(sub_id)
                    subs = []
                    for i, a in enumerate(authors):
                        target = bridge.chats["telegram"].parse_target(str(emu.groups[i % rooms]))
                        sub, _ = await bridge.subscribe(Source("bluesky", SourceKind.FOLLOW, a.did), a.handle, target, "bench")
                        subs.append(sub.id)
                    warm, _ = await poster.at_rate(2, 2)  # warm-up: connections, sessions, caches
                    await wait_for(emu, warm, 60)
                    for rate in (float(r) for r in args.rates.split(",")):
                        runs = [await measure_once(emu, poster, read, rate, args.seconds) for _ in range(args.runs)]
                        row = row_for(rooms, rate, runs)
                        rows.append(row)
                        print(row, flush=True)
            finally:
                await bridge.stop()
    finally:
        await emu.stop()
        await asyncio.to_thread(stack.close)
    return [
        "| rooms | posts/s asked (taken by the PDS) | posts × runs | PDS write (p50) | p50 | p95 | p99 (each run) | max "
        "| p99 from the write request | not arrived in 120 s | of which PDS → firehose read (p50 / p99) "
        "| firehose read → chat (p50 / p99) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Median over {args.runs} run(s) of each run's percentile. "
        f"{args.authors} followed authors spread over the given number of Telegram groups (author i in group "
        f"i mod rooms), firehose mode, SQLite. Latency counts from the PDS's answer to the write (the "
        f"firehose may carry the post before that answer, hence figures at or below zero); the column "
        f"'from the write request' also counts the PDS's own time. Target: p99 under 1 s at 100 posts/s. "
        f"Log at info in {logfile}.",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="10,100", help="posts per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of posting per rate")
    parser.add_argument("--authors", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3, help="bursts per rate and layout; the table gives medians")
    parser.add_argument(
        "--rooms",
        default="10,1",
        help="comma-separated layouts: the authors are spread over this many Telegram groups",
    )
    parser.add_argument("--no-save", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args(argv)
    lines = asyncio.run(main_async(args))
    publish("Latency (post created on the AT Protocol stack → Telegram emulator, firehose mode)", lines, save=not args.no_save)


if __name__ == "__main__":
    main()
