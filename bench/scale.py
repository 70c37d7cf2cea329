"""Benchmark 4, scale: memory and matching cost per post at 1,000, 10,000 and 100,000
subscriptions.

Each size runs in a fresh process, so resident memory is not blurred by the previous one.
Subscriptions are built the way the bridge loads them (``Bridge.refresh_routes``): a fresh
Source, ChatTarget, Filters and start time per row, into a ``Matcher``. The mix: 70% follows
(a DID each), 30% queries (two or three words), each source subscribed by two rooms out of
5,000, one in five with include/exclude words. Then 20,000 posts, each from one of those
sources (a network adapter only hands over posts that some source wants), go through
``Matcher.match``: CPU time per post, median of 5 passes. Memory is the growth of the
process's resident set (VmRSS) across building the matcher, per subscription.

Also shown: ``Matcher.sources(network)``, which an adapter calls once per poll cycle or when
subscriptions change (not per post).

    python -m bench.scale [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.frames import did
from bench.report import median, publish
from bridge.matching.filters import Filters
from bridge.matching.matcher import Matcher, Route
from bridge.model import Author, ChatTarget, Item, Post, Ref, Source, SourceKind

WORDS = ("pricing", "outage", "launch", "hiring", "ceo", "biotech", "retail", "nrf2027", "support", "refund")
POSTS = 20_000


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def source_value(kind: SourceKind, n: int) -> str:
    if kind is SourceKind.FOLLOW:
        return did(n)
    rng = random.Random(n)
    return " ".join(rng.sample(WORDS, rng.choice((2, 3)))) + f" {n}"


def build(size: int, rng: random.Random) -> tuple[Matcher, list[Source]]:
    """A matcher with ``size`` subscriptions over ``size // 2`` sources."""
    matcher = Matcher()
    sources: list[Source] = []
    now = datetime.now(UTC)
    for sub_id in range(1, size + 1):
        n = (sub_id - 1) // 2  # two rooms per source
        kind = SourceKind.FOLLOW if n % 10 < 7 else SourceKind.QUERY
        source = Source("bluesky", kind, source_value(kind, n))
        if sub_id % 2:
            sources.append(source)
        filters = {"include": [rng.choice(WORDS)], "exclude": [rng.choice(WORDS)]} if sub_id % 5 == 0 else {}
        target = ChatTarget.parse(f"telegram:-100{rng.randrange(5000):010d}")
        matcher.put(Route(sub_id, source, target, Filters.from_json(filters), now.replace(microsecond=sub_id % 10**6)))
    return matcher, sources


def posts_for(sources: Sequence[Source], rng: random.Random) -> list[Item]:
    items = []
    for i in range(POSTS):
        source = rng.choice(sources)
        author_id = source.value if source.kind is SourceKind.FOLLOW else did(10**7 + i)
        text = " ".join(rng.choice(WORDS) for _ in range(15))
        post = Post(
            ref=Ref("bluesky", f"at://{author_id}/app.bsky.feed.post/{i}"),
            author=Author(id=author_id, handle=f"user{i}.bsky.social"),
            text=text,
            created_at=datetime.now(UTC),
            url=f"https://bsky.app/profile/{author_id}/post/{i}",
        )
        items.append(Item(source, post))
    return items


def measure(size: int) -> dict[str, float]:
    """Run in a fresh process: memory per subscription and matching cost per post."""
    rng = random.Random(size)
    gc.collect()
    before = rss_kb()
    matcher, sources = build(size, rng)
    gc.collect()
    grown = rss_kb() - before
    items = posts_for(sources, rng)
    passes = []
    routed = 0
    for _ in range(5):
        cpu = time.thread_time()
        routed = sum(len(matcher.match(item)) for item in items)
        passes.append((time.thread_time() - cpu) / len(items))
    cpu = time.thread_time()
    for _ in range(10):
        matcher.sources("bluesky")
    sources_ms = (time.thread_time() - cpu) / 10 * 1000
    return {
        "size": size,
        "rss_bytes_per_sub": grown * 1024 / size,
        "match_us": median(passes) * 1e6,
        "routes_per_post": routed / len(items),
        "sources_ms": sources_ms,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--no-save", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run(
            [sys.executable, "-m", "bench.scale", "--one", str(size)],
            cwd=Path(__file__).resolve().parent.parent,
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    # "Flat" means not linear: the cost may drift (a bigger dict misses the CPU caches more
    # often) but must grow far slower than the number of subscriptions.
    growth = max(r["match_us"] for r in rows) / min(r["match_us"] for r in rows)
    span = max(r["size"] for r in rows) / min(r["size"] for r in rows)
    flat = growth <= max(2.0, span / 10)
    light = all(r["rss_bytes_per_sub"] < 1024 for r in rows)
    lines = [
        "| subscriptions | resident memory per subscription | match CPU per post | rooms per post | sources() per poll |",
        "|---|---|---|---|---|",
        *(
            f"| {r['size']:,} | {r['rss_bytes_per_sub']:.0f} B | {r['match_us']:.2f} µs | {r['routes_per_post']:.2f} "
            f"| {r['sources_ms']:.2f} ms |"
            for r in rows
        ),
        "",
        f"Matching cost per post grows {growth:.1f}x while subscriptions grow {span:.0f}x: "
        f"{'flat (not linear)' if flat else 'NOT flat'}; memory "
        f"{'under' if light else 'NOT under'} 1 KB per subscription. {POSTS:,} posts, median of 5 passes, one thread.",
    ]
    publish("Scale (subscriptions: memory and matching)", lines, save=not args.no_save)


if __name__ == "__main__":
    main()
