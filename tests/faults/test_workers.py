"""Several workers, short version: 3 real ``bridge run`` processes on one Postgres database
relay Bluesky posts (reference AT Protocol stack, firehose mode) into 2 Telegram chats and 2
Discord channels while a worker is SIGKILLed every few seconds and restarted (the first kills
aim at the holders of the Telegram and Discord listeners). Nothing is lost, a duplicate appears
only across a kill and never on Discord, each room keeps the posting order, a command is
answered within 15 s of its listener's holder dying, the gateway and getUpdates are never held
twice at once, and a ``bridge unfollow`` reaches every worker within 3 s. The long version is
``python -m tests.faults.workers``; see tests/faults/workers.py for how each is seen."""

from __future__ import annotations

from pathlib import Path

from tests.atproto.harness import AtprotoStack
from tests.faults.workers import run_workers


async def test_three_workers_killed_at_random_lose_nothing_and_keep_listeners_single(
    atproto: AtprotoStack, postgres_url: str, tmp_path: Path
) -> None:
    report = await run_workers(
        atproto, tmp_path, postgres_url, workers=3, posts=24, kills=3, post_every=0.5, lease_seconds=5, seed=15
    )

    assert report.posts == 24 and report.kills == 3 and report.destinations == 4
    # The first two kills hit the listeners' holders, so failover was exercised on both.
    assert report.failover("telegram") and report.failover("discord"), report.lines()
    assert report.failures() == [], report.lines()
