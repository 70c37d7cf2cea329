"""Benchmark 2, rate-limit ceiling: the bridge against Telegram's real limits.

The Bot API emulator (its own process) enforces what Telegram documents: 30 messages/s
overall, 1/s per private chat, 20/min per group, and answers 429 to any send that breaks
one. The bridge (real Telegram adapter with its own pacing, SQLite, FakeNetwork as source)
relays ``--posts`` posts to ``--private`` private chats and ``--groups`` groups that all
follow the author: posts x chats deliveries (default 20 x 50 = 1,000).

The figure is the best possible schedule's length over the achieved one, both measured from
the first to the last message the emulator accepted. The best schedule is bounded below by
each limit alone: (D - 1)/30 s overall, (k - 1) s for a private chat given k messages,
60 s x ⌊(k - 1)/20⌋ for a group; its length is taken as the largest of these bounds (so the
fraction is, if anything, understated). Also printed: the number of 429 answers.

    python -m bench.ratelimit [--posts 20] [--private 30] [--groups 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from bench.databases import throwaway
from bench.emulator import EmulatorProcess, start_emulator
from bench.pipeline import make_posts, relay, start_bridge
from bench.report import log_to_file, median, publish

GLOBAL_PER_SECOND = 30
PRIVATE_INTERVAL = 1.0
GROUP_PER_MINUTE = 20


def best_schedule(private: Sequence[int], groups: Sequence[int]) -> float:
    """Seconds from the first to the last message of the best schedule (a lower bound): the
    private chats get ``private[i]`` messages each, the groups ``groups[j]``."""
    total = sum(private) + sum(groups)
    bounds = [(total - 1) / GLOBAL_PER_SECOND]
    bounds += [(k - 1) * PRIVATE_INTERVAL for k in private if k]
    bounds += [60.0 * ((k - 1) // GROUP_PER_MINUTE) for k in groups if k]
    return max(bounds)


@dataclass
class Run:
    deliveries: int
    seconds: float
    best: float
    rejected_429: int

    @property
    def fraction(self) -> float:
        return self.best / self.seconds if self.seconds > 0 else float("nan")


async def one_run(emu: EmulatorProcess, posts: int, concurrency: int, max_pacing_wait: float | None) -> Run:
    settings: dict[str, object] = {"concurrency": concurrency} if concurrency else {}
    telegram: dict[str, object] = {"max_pacing_wait": max_pacing_wait} if max_pacing_wait is not None else {}
    async with throwaway("sqlite") as url:
        bridge = await start_bridge(emu, url, telegram=telegram, **settings)
        try:
            await emu.reset()  # the subscriptions' answers are not part of the run
            expected = posts * len(emu.chats)
            await relay(bridge, make_posts(posts, "limits"), expected)
        finally:
            await bridge.stop()
    stats = await emu.stats()
    times = stats["times"]
    per_chat = {int(c): n for c, n in stats["per_chat"].items()}
    best = best_schedule([per_chat.get(c, 0) for c in emu.private], [per_chat.get(c, 0) for c in emu.groups])
    return Run(len(times), times[-1] - times[0], best, stats["rejected_429"])


async def main_async(args: argparse.Namespace) -> list[str]:
    logfile = log_to_file("ratelimit")
    runs = []
    emu = await start_emulator(private=args.private, groups=args.groups, limits=True)
    try:
        for _ in range(args.runs):
            runs.append(await one_run(emu, args.posts, args.concurrency, args.max_pacing_wait))
            r = runs[-1]
            print(f"run: {r.deliveries} deliveries in {r.seconds:.1f}s, best {r.best:.1f}s, {r.rejected_429} × 429", flush=True)
    finally:
        await emu.stop()
    fraction = median([r.fraction for r in runs])
    worst_429 = max(r.rejected_429 for r in runs)
    verdict = "meets" if fraction >= 0.95 and worst_429 == 0 else "MISSES"
    concurrency = args.concurrency or "64 (default)"
    wait = "5 (default)" if args.max_pacing_wait is None else f"{args.max_pacing_wait:g}"
    return [
        "| deliveries | chats (private + groups) | achieved | best schedule | fraction of best | 429s "
        "| concurrency | max_pacing_wait |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {r.deliveries} | {args.private} + {args.groups} | {r.seconds:.1f} s ({r.deliveries / r.seconds:.1f} msg/s) "
            f"| {r.best:.1f} s | {r.fraction:.3f} | {r.rejected_429} | {concurrency} | {wait} |"
            for r in runs
        ),
        "",
        f"Median fraction {fraction:.3f} over {len(runs)} run(s), most 429s in a run {worst_429}: {verdict} the target "
        f"(≥ 0.95, no 429). Log at info in {logfile}.",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=20, help="posts; every chat gets each one")
    parser.add_argument("--private", type=int, default=30)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=0, help="[bridge] concurrency (0: the default)")
    parser.add_argument("--max-pacing-wait", type=float, default=None, help="[telegram] max_pacing_wait (default: the adapter's)")
    parser.add_argument("--no-save", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args(argv)
    lines = asyncio.run(main_async(args))
    publish("Rate-limit ceiling (Telegram limits enforced by the emulator)", lines, save=not args.no_save)


if __name__ == "__main__":
    main()
