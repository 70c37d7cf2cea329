"""Benchmark 6, API cost: requests per hour of the Bluesky adapter's poll loop (poll mode) at
10, 100 and 1,000 followed accounts.

Every request the adapter makes goes through one path, ``adapters.bluesky.http.Api``
(``query`` and ``procedure``); here that path is replaced by a counter that answers like the
AppView would, from a simulated network: the followed accounts post ``--posts-per-day`` each,
at random times, and ``getTimeline`` pages (100 per page, newest first) through what the team
account follows. The real poll cycle (``BlueskyAdapter.poll_once``: sync of follows, timeline
paging back to the watermarks, hand-over to the core) runs once per ``--interval`` seconds of
simulated time, for one hour after a first hour of warm-up. Following the accounts on Bluesky
(getRelationships, createRecord) is a one-time cost, shown apart. The session check
(``SessionKeeper.ensure``) is left out: it refreshes the token about once every two hours.

For comparison: polling each account's author feed costs one request per account per cycle.

    python -m bench.apicost [--accounts 10,100,1000] [--posts-per-day 20] [--interval 30]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import logging
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.bluesky.adapter import BlueskyAdapter
from bench.frames import did
from bench.report import publish
from bridge.model import Source, SourceKind
from tests.fakehost import FakeHost

TEAM = "did:plc:teamteamteamteamteamteam"
ONE_TIME = {"app.bsky.graph.getRelationships", "com.atproto.repo.createRecord"}


class SimulatedNetwork:
    """Posts of the followed accounts over simulated time, and the AppView's answers."""

    def __init__(self, accounts: Sequence[str], posts_per_day: float, start: datetime, hours: float, seed: int = 3) -> None:
        rng = random.Random(seed)
        total = int(len(accounts) * posts_per_day * hours / 24)
        span = hours * 3600
        posts = sorted((start + timedelta(seconds=rng.uniform(0, span)), rng.choice(accounts), i) for i in range(total))
        self.times = [t for t, _, _ in posts]
        self.posts = posts
        self.now = start
        self.following: set[str] = set()
        self.requests: Counter[str] = Counter()

    def visible(self) -> list[tuple[datetime, str, int]]:
        """Posts indexed by now, by accounts the team follows, newest first."""
        upto = bisect.bisect_right(self.times, self.now)
        return [p for p in reversed(self.posts[:upto]) if p[1] in self.following]

    def answer(self, nsid: str, params: Mapping[str, Any]) -> dict[str, Any]:
        self.requests[nsid] += 1
        if nsid == "app.bsky.graph.getRelationships":
            return {"relationships": [{"did": d, "following": None} for d in params["others"]]}
        if nsid == "com.atproto.repo.createRecord":
            subject = params["record"]["subject"]
            self.following.add(subject)
            return {"uri": f"at://{TEAM}/app.bsky.graph.follow/{len(self.following)}", "cid": "bafy"}
        if nsid == "app.bsky.feed.getTimeline":
            offset = int(params.get("cursor") or 0)
            limit = int(params.get("limit") or 50)
            feed = self.visible()
            page = feed[offset : offset + limit]
            out: dict[str, Any] = {"feed": [_feed_item(t, author, i) for t, author, i in page]}
            if offset + limit < len(feed):
                out["cursor"] = str(offset + limit)
            return out
        raise AssertionError(f"the poll loop asked for {nsid}, which this simulation does not answer")


def _feed_item(t: datetime, author: str, i: int) -> dict[str, Any]:
    when = t.isoformat().replace("+00:00", "Z")
    return {
        "post": {
            "uri": f"at://{author}/app.bsky.feed.post/{i}",
            "cid": f"bafy{i}",
            "author": {"did": author, "handle": f"{author[8:16]}.bsky.social"},
            "record": {"$type": "app.bsky.feed.post", "text": f"post {i}", "createdAt": when},
            "indexedAt": when,
        }
    }


async def one_hour(accounts: int, posts_per_day: float, interval: float) -> dict[str, float]:
    dids = [did(i) for i in range(accounts)]
    host = FakeHost({Source("bluesky", SourceKind.FOLLOW, d) for d in dids})
    adapter = BlueskyAdapter({"identifier": "team.test", "password": "unused", "poll_interval": interval}, host)
    start = datetime.now(UTC)
    net = SimulatedNetwork(dids, posts_per_day, start, hours=2)

    async def query(nsid: str, *, chat: bool = False, **params: Any) -> dict[str, Any]:
        return net.answer(nsid, {k: v for k, v in params.items() if v is not None})

    async def procedure(nsid: str, data: Mapping[str, Any] | None = None, *, chat: bool = False) -> dict[str, Any]:
        return net.answer(nsid, data or {})

    async def no_session_check() -> None:
        return None

    # The adapter's one request path, and the session check it makes before a cycle.
    adapter.api.query = query  # type: ignore[method-assign]
    adapter.api.procedure = procedure  # type: ignore[method-assign]
    adapter.session.ensure = no_session_check  # type: ignore[method-assign]
    adapter.timeline.team_did = lambda: TEAM
    cycles = int(3600 / interval)
    for _ in range(cycles):  # warm-up hour: follows are made, watermarks set
        await adapter.poll_once()
        net.now += timedelta(seconds=interval)
    setup = sum(net.requests[n] for n in ONE_TIME)
    net.requests.clear()
    items_before = len(host.items)
    for _ in range(cycles):
        await adapter.poll_once()
        net.now += timedelta(seconds=interval)
    steady = sum(net.requests.values())
    return {
        "accounts": accounts,
        "per_hour": steady,
        "one_time": setup,
        "posts": len(host.items) - items_before,
        "timeline": net.requests["app.bsky.feed.getTimeline"],
        "per_account_feeds": accounts * cycles,
    }


async def main_async(args: argparse.Namespace) -> list[dict[str, float]]:
    rows = []
    for n in (int(x) for x in args.accounts.split(",")):
        rows.append(await one_hour(n, args.posts_per_day, args.interval))
        print(rows[-1], flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", default="10,100,1000")
    parser.add_argument("--posts-per-day", type=float, default=20.0, help="posts per followed account per day")
    parser.add_argument("--interval", type=float, default=30.0, help="poll_interval, seconds")
    parser.add_argument("--no-save", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args(argv)
    logging.getLogger("bridge.adapters.bluesky").setLevel(logging.WARNING)
    rows = asyncio.run(main_async(args))
    growth = rows[-1]["per_hour"] / rows[0]["per_hour"]
    span = rows[-1]["accounts"] / rows[0]["accounts"]
    lines = [
        "| followed accounts | requests per hour (poll mode) | posts relayed in the hour | one-time follow cost "
        "| author feeds per account would cost |",
        "|---|---|---|---|---|",
        *(
            f"| {r['accounts']:,} | {r['per_hour']:,} | {r['posts']:,} | {r['one_time']:,} requests | {r['per_account_feeds']:,} |"
            for r in rows
        ),
        "",
        f"poll_interval {args.interval:g} s, {args.posts_per_day:g} posts per account per day. Requests grow {growth:.1f}x "
        f"while accounts grow {span:.0f}x: {'not linear' if growth < span / 10 else 'LINEAR'}. A cycle asks for a "
        "second timeline page only when more than 100 posts arrived since the last one.",
    ]
    publish("API cost (Bluesky poll mode)", lines, save=not args.no_save)


if __name__ == "__main__":
    main()
