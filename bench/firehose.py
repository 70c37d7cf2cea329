"""Benchmark 5, firehose intake: frames per second through the Bluesky adapter's filter.

``--frames`` generated subscribeRepos frames (bench/frames.py: real DAG-CBOR with CAR blocks,
about 1.8 KB each, the live network's mix of likes, posts, follows, reposts, deletions and
identity events) of which 1% come from the ``--followed`` accounts, are handed one by one to
``adapters.bluesky.firehose.Firehose._frame``, the code every frame read from the websocket
goes through: decode header and body, filter on the repo and the op paths, decode the CAR
blocks only for wanted commits and queue their records. Hydration (getPosts) and the
websocket itself are not part of it. Frame generation is excluded from the clock; the first
1,000 frames are a warm-up; CPU time of the one thread that runs it (one core); median of
``--runs``.

    python -m bench.firehose [--frames 100000] [--followed 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from adapters.bluesky.firehose import Firehose
from bench.frames import did, stream
from bench.report import median, publish
from bridge.model import Source, SourceKind

WARMUP = 1_000


def firehose_for(followed: Sequence[str]) -> Firehose:
    """A Firehose whose followed accounts are ``followed``; nothing it needs for the frame path
    (hydration API, cursors) is reached."""
    wanted = {d: Source("bluesky", SourceKind.FOLLOW, d) for d in followed}
    unused: Any = None
    return Firehose("ws://127.0.0.1:1", unused, unused, lambda: wanted, lambda _did, _cid: "")


def run_once(frames: Sequence[bytes], followed: Sequence[str]) -> tuple[float, int, int]:
    """(frames per CPU second, records queued, CAR files decoded) for one pass."""
    fh = firehose_for(followed)
    for f in frames[:WARMUP]:
        fh._frame(f)
    warm_events, warm_cars = fh.queue.qsize(), fh.cars_decoded
    timed = frames[WARMUP:]
    cpu = time.thread_time()
    for f in timed:
        fh._frame(f)
    elapsed = time.thread_time() - cpu
    return len(timed) / elapsed, fh.queue.qsize() - warm_events, fh.cars_decoded - warm_cars


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--followed", type=int, default=1_000, help="followed accounts")
    parser.add_argument("--share", type=float, default=0.01, help="share of frames by followed accounts")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-save", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args(argv)
    followed = [did(i) for i in range(args.followed)]
    frames = list(stream(args.frames + WARMUP, followed, args.share))
    size = sum(map(len, frames)) / len(frames)
    results = [run_once(frames, followed) for _ in range(args.runs)]
    rate = median([r[0] for r in results])
    _, events, cars = results[0]
    verdict = "meets" if rate >= 10_000 else "MISSES"
    lines = [
        "| frames | avg size | followed accounts (share of frames) | frames/s, one core | records queued | CARs decoded |",
        "|---|---|---|---|---|---|",
        f"| {len(frames) - WARMUP} | {size:.0f} B | {args.followed} ({args.share:.0%}) | {rate:,.0f} "
        f"({', '.join(f'{r[0]:,.0f}' for r in results)}) | {events} | {cars} |",
        "",
        f"Median of {args.runs} runs, warm-up of {WARMUP} frames excluded: {verdict} the target (≥ 10,000 frames/s); "
        "the live network peaks above 2,000 events/s.",
    ]
    publish("Firehose intake (subscribeRepos frames through the adapter's filter)", lines, save=not args.no_save)


if __name__ == "__main__":
    main()
