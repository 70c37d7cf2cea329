"""Benchmark: API cost of the Mastodon adapter at 10, 100 and 1,000 followed accounts, in each
follow mode (``accounts``: one statuses request per account per cycle; ``list``: one list
timeline for all), and how long one cycle over 1,000 accounts takes within the server's rate
limit (300 requests per 5 minutes per account, of which the adapter's intake takes 240).

The real adapter (``MastodonAdapter.poll_once``: the core's pager, the request path, the
conversion) runs against the Mastodon emulator over real sockets (its rate limit lifted, so
that what is counted is what the adapter asks for, not what the server refuses). Between
cycles the followed accounts post as ``--posts-per-day`` says for a ``--interval`` of simulated
time. Requests are counted at the emulator; per hour = per cycle * cycles per hour, as the
adapter would want them; the budget then caps what it may make (2,880 per hour) and a cycle
over more accounts than the budget allows stretches to ``requests * 300 / 240`` seconds.
Setting up the list mode (follow + add to the list, once per account) is shown apart.

    python -m bench.mastocost [--accounts 10,100,1000] [--posts-per-day 20] [--interval 60]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import random
from collections.abc import Sequence
from typing import Any

from adapters.mastodon.adapter import INTAKE_REQUESTS, INTAKE_WINDOW, MastodonAdapter
from bench.report import publish
from bridge.model import Source, SourceKind
from tests.emulators.mastodon import MastodonEmulator
from tests.fakehost import FakeHost

CYCLES = 3


async def measure(accounts: int, mode: str, posts_per_day: float, interval: float, seed: int = 5) -> dict[str, Any]:
    rng = random.Random(seed)
    server = MastodonEmulator("team.example", rate_limit=10**9)
    await server.start()
    try:
        team = server.add_account("team")
        token = server.add_token(team)
        people = [server.add_account(f"p{i}", f"s{i % 50}.example") for i in range(accounts)]
        host = FakeHost(name="mastodon")
        host.set_sources(*(Source("mastodon", SourceKind.FOLLOW, p.id) for p in people))
        adapter = MastodonAdapter(
            {"instance": server.url, "access_token": token, "streaming": False, "poll_interval": interval, "follow_mode": mode},
            host,
        )
        adapter.budget.requests = 10**9  # count what the adapter asks for; the cap is applied below
        # not started: no loop of its own, the cycles below are driven by hand (poll_once logs in)
        before = len(server.requests)
        await adapter.poll_once()  # first cycle: positions (and, in list mode, the list's setup)
        setup = len(server.requests) - before
        per_cycle = []
        relayed = 0
        for _ in range(CYCLES):
            expected = accounts * posts_per_day * interval / 86400
            n = int(expected) + (1 if rng.random() < expected - int(expected) else 0)
            for _ in range(n):
                server.post(rng.choice(people), "a post")
            before = len(server.requests)
            relayed += await adapter.poll_once()
            per_cycle.append(len(server.requests) - before)
        await adapter.http.close()
        cycle = sum(per_cycle) / len(per_cycle)
        wanted = cycle * 3600 / interval
        cap = INTAKE_REQUESTS * 3600 / INTAKE_WINDOW
        seconds = max(interval, cycle * INTAKE_WINDOW / INTAKE_REQUESTS)  # the rolling window's steady pace
        return {
            "accounts": accounts,
            "mode": mode,
            "cycle": cycle,
            "wanted": round(wanted),
            "made": round(min(wanted, cap)),
            "cycle_seconds": seconds,
            "setup": setup,
            "relayed": relayed,
        }
    finally:
        await server.stop()


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for mode in ("accounts", "list"):
        for n in [int(x) for x in args.accounts.split(",")]:
            rows.append(await measure(n, mode, args.posts_per_day, args.interval))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", default="10,100,1000")
    parser.add_argument("--posts-per-day", type=float, default=20.0, help="posts per followed account per day")
    parser.add_argument("--interval", type=float, default=60.0, help="poll_interval, seconds")
    parser.add_argument("--no-save", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args(argv)
    logging.getLogger("bridge.adapters.mastodon").setLevel(logging.WARNING)
    rows = asyncio.run(main_async(args))
    lines = [
        "| mode | followed accounts | requests per cycle | requests per hour wanted | made within 240/5 min "
        "| one cycle takes | first cycle (list setup) |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {r['mode']} | {r['accounts']:,} | {r['cycle']:.1f} | {r['wanted']:,} | {r['made']:,} "
            f"| {_duration(r['cycle_seconds'])} | {r['setup']:,} requests |"
            for r in rows
        ),
        "",
        f"poll_interval {args.interval:g} s, {args.posts_per_day:g} posts per account per day, {CYCLES} cycles measured "
        "against the emulator. The intake budget is 240 requests per 5 minutes (the server allows 300; the rest is kept for "
        "actions from chat). In accounts mode a cycle costs one request per account, so past 240 accounts a cycle "
        "stretches beyond poll_interval; the list mode costs one list-timeline page per 40 new statuses whatever the "
        "number of accounts, after a one-time follow and list add per account (visible to the people followed).",
    ]
    publish("API cost (Mastodon, per follow mode)", lines, save=not args.no_save)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{math.ceil(seconds / 60)} min"


if __name__ == "__main__":
    main()
