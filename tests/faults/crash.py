"""The crash run: the real ``bridge run`` relays a stream of posts into Telegram and Discord
rooms while it is killed with SIGKILL at random moments and restarted each time; then what the
rooms received is compared with what was posted. The posts come from Bluesky (the reference AT
Protocol stack, firehose mode: ``BlueskySource``) or from Mastodon (the Mastodon emulator in
this process, streaming with the REST catch-up: ``MastodonSource``).

Lost must be 0. A duplicate is allowed only in the window between a send and the commit of
its ledger row: its first copy was accepted before a kill and the second after it. Discord
sends carry a nonce with enforce_nonce, so Discord must show no duplicate at all.

Used by tests/faults/test_crash.py (short, in the suite) and tests/faults/long_crash.py (the
long run whose figures are in RELIABILITY.md).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.atproto.harness import Account, AtprotoStack
from tests.emulators.mastodon import Account as MastodonAccount
from tests.emulators.mastodon import MastodonEmulator
from tests.faults.bridge_process import BridgeProcess, run_cli
from tests.faults.chat_world import ChatWorld
from tests.faults.toml_file import write_config

MARK = re.compile(r"crash-run post #(\d+)\b")
READY_LINE = "bridge running"
SUBSCRIBED_LINE = "subscribed subscription="
FIREHOSE_LINE = "firehose connected"
MASTODON_TOKEN = "faults-mastodon-token-never-logged"


@dataclass
class CrashReport:
    posts: int
    destinations: int
    kills: int
    lost: int
    duplicated: int
    duplicated_by_platform: dict[str, int]
    duplicated_outside_window: int
    seconds: float
    sigterm_exit: int | None
    sigterm_seconds: float
    missing: dict[str, list[int]] = field(default_factory=dict)
    logs: list[Path] = field(default_factory=list)
    shape: str = "one message per post, Telegram private chats"
    network: str = "bluesky"

    def lines(self) -> list[str]:
        return [
            f"posts: {self.posts} from {self.network} ({self.shape})",
            f"destinations: {self.destinations} (Telegram and Discord)",
            f"kills (SIGKILL): {self.kills}",
            f"lost: {self.lost}",
            f"duplicated: {self.duplicated} "
            + "("
            + ", ".join(f"{k} {v}" for k, v in sorted(self.duplicated_by_platform.items()))
            + f"; outside the send-commit window: {self.duplicated_outside_window})",
            f"final SIGTERM: exit {self.sigterm_exit} after {self.sigterm_seconds:.1f} s",
            f"wall time: {self.seconds:.0f} s",
        ]


@dataclass
class Team:
    account: Account
    app_password: str


async def make_accounts(stack: AtprotoStack) -> tuple[Team, Account]:
    team = await stack.create_account("team", "The Team")
    author = await stack.create_account("alice", "Alice Prospect")
    return Team(team, await stack.app_password(team)), author


def crash_config(path: Path, db_url: str, world: ChatWorld, network: str, section: dict[str, Any], follow: str) -> Path:
    return write_config(
        path,
        {
            "database": {"url": db_url},
            "bridge": {"admins": [], "senders": [], "shutdown_timeout": 5, "log_level": "info"},
            **world.config_sections(),
            network: section,
        },
        [{"network": network, "follow": follow, "to": world.destinations}],
    )


class BlueskySource:
    """Posts by an account on the reference AT Protocol stack, read from the firehose."""

    name = "bluesky"

    def __init__(self, stack: AtprotoStack) -> None:
        self.stack = stack

    async def start(self) -> None:
        self.team, self.author = await make_accounts(self.stack)

    async def stop(self) -> None:
        pass

    def section(self) -> dict[str, Any]:
        return {
            "service": self.stack.pds,
            "identifier": self.team.account.handle,
            "password": self.team.app_password,
            # The firehose reads the PDS's own subscribeRepos from the saved seq: it does not
            # depend on the AppView's indexing order, and a restart resumes exactly there.
            "realtime": "firehose",
            "firehose_url": self.stack.firehose_url,
            "poll_interval": 60,
        }

    @property
    def follow(self) -> str:
        return self.author.handle

    async def ready(self, first: BridgeProcess) -> None:
        await first.wait_log(FIREHOSE_LINE, timeout=30)

    async def post(self, text: str, images: bool) -> None:
        extra = {"images": [{"alt": "chart"}, {"alt": "table"}]} if images else {}
        await self.stack.post(self.author, text, **extra)


class MastodonSource:
    """Statuses by a remote account followed through the team account of the Mastodon
    emulator (in this process, so it outlives every bridge process), with the streaming API on:
    each status rings the stream and is read by REST, and every restart reads back by REST."""

    name = "mastodon"

    def __init__(self) -> None:
        self.server = MastodonEmulator("team.example")
        self.author: MastodonAccount | None = None

    async def start(self) -> None:
        await self.server.start()
        team = self.server.add_account("team", display_name="The Team")
        self.server.add_token(team, token=MASTODON_TOKEN)
        self.author = self.server.add_account("alice", "other.example", display_name="Alice Prospect")

    async def stop(self) -> None:
        await self.server.stop()

    def section(self) -> dict[str, Any]:
        return {"instance": self.server.url, "access_token": MASTODON_TOKEN, "streaming": True, "poll_interval": 5}

    @property
    def follow(self) -> str:
        return "@alice@other.example"

    def _reads(self) -> int:
        assert self.author is not None
        path = f"/api/v1/accounts/{self.author.id}/statuses"
        return sum(1 for _m, p, _h in self.server.requests if p.startswith(path))

    async def ready(self, first: BridgeProcess) -> None:
        # The feed starts from now at its first read; the second read comes after that start
        # was committed, so every status posted from then on is relayed.
        deadline = time.monotonic() + 30
        while self._reads() < 2:
            assert time.monotonic() < deadline, "the bridge did not read the followed account twice"
            await asyncio.sleep(0.05)

    async def post(self, text: str, images: bool) -> None:
        assert self.author is not None and not images, "the Mastodon crash run posts text only"
        self.server.post(self.author, text)


async def run_crash(
    stack: AtprotoStack | MastodonSource,
    workdir: Path,
    *,
    posts: int,
    kills: int,
    post_every: float,
    seed: int | None = None,
    drain_timeout: float = 120.0,
    say: Callable[[str], None] = lambda _: None,
    split: bool = False,
) -> CrashReport:
    """Post ``posts`` posts (one every ``post_every`` s) while killing the bridge ``kills`` times
    at random moments spread over the posting period; wait until every room has every post (or
    ``drain_timeout``), stop the last bridge with SIGTERM and count.

    ``split``: each post carries two images, so Telegram shows it as two messages (an album,
    then the buttons with the link) and each part is counted on its own, and the Telegram rooms
    are groups (paced to 20 messages a minute)."""
    rng = random.Random(seed)
    t0 = time.monotonic()
    source = stack if isinstance(stack, MastodonSource) else BlueskySource(stack)
    world = await ChatWorld.start(tg_groups=split)
    procs: list[BridgeProcess] = []
    kill_times: list[float] = []
    try:
        await source.start()
        config = crash_config(
            workdir / "config.toml",
            f"sqlite://{workdir}/bridge.sqlite3",
            world,
            source.name,
            source.section(),
            source.follow,
        )

        def spawn() -> BridgeProcess:
            p = BridgeProcess(config, workdir / f"bridge-{len(procs) + 1}.log")
            procs.append(p)
            return p

        first = spawn()
        await first.wait_log(SUBSCRIBED_LINE, timeout=60, count=len(world.destinations))
        await source.ready(first)
        say(f"bridge up, subscribed {len(world.destinations)} destinations; posting {posts} posts, {kills} kills")

        posted: list[int] = []

        async def poster() -> None:
            for n in range(posts):
                await source.post(f"crash-run post #{n} of {posts}: pricing question from a prospect", split)
                posted.append(n)
                await asyncio.sleep(post_every)

        posting = asyncio.create_task(poster())
        period = posts * post_every
        # Kill moments: random, spread over the posting period (and a little after it), each
        # at least 0.3 s after the previous restart so that some kills land mid-startup,
        # others mid-delivery.
        moments = sorted(rng.uniform(0.5, period + 3.0) for _ in range(kills))
        start = time.monotonic()
        for at in moments:
            now = time.monotonic() - start
            await asyncio.sleep(max(0.3, at - now))
            procs[-1].kill()
            kill_times.append(time.monotonic())
            spawn()
            say(f"kill {len(kill_times)}/{kills} at {time.monotonic() - start:.1f}s")
        await posting

        counts: dict[str, dict[int, int]] = {}
        deadline = time.monotonic() + drain_timeout
        tg_rooms = [d for d in world.destinations if d.startswith("telegram:")]
        tg_kinds = ("album", "follow-up") if split else ("text",)

        def complete() -> bool:
            counts = world.counts(MARK)
            if not all(all(counts[d][n] for n in posted) for d in world.destinations):
                return False
            parts = {d: world.telegram_parts(d, MARK) for d in tg_rooms}
            return all((n, k) in parts[d] for d in tg_rooms for n in posted for k in tg_kinds)

        while time.monotonic() < deadline:
            if complete():
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(2.0)  # a late duplicate would show up now
        stop_started = time.monotonic()
        sigterm_exit = await procs[-1].terminate(timeout=30)
        sigterm_seconds = time.monotonic() - stop_started

        counts = world.counts(MARK)
        parts = {d: world.telegram_parts(d, MARK) for d in tg_rooms}
        # Telegram is counted part by part (a post is lost when any of its parts is).
        missing = {
            d: [n for n in posted if not all((n, k) in parts[d] for k in tg_kinds)]
            if d in parts
            else [n for n in posted if not counts[d][n]]
            for d in world.destinations
        }
        dup_by_platform: dict[str, int] = {"telegram": 0, "discord": 0}
        for d in world.destinations:
            if d in parts:
                dup_by_platform["telegram"] += sum(len(t) - 1 for t in parts[d].values() if len(t) > 1)
            else:
                dup_by_platform[d.partition(":")[0]] += sum(c - 1 for c in counts[d].values() if c > 1)
        outside = 0
        for d in tg_rooms:  # Discord must have none at all
            for times in parts[d].values():
                for first_at, again_at in itertools.pairwise(times):
                    if not any(first_at <= k <= again_at for k in kill_times):
                        outside += 1
        return CrashReport(
            posts=len(posted),
            destinations=len(world.destinations),
            kills=len(kill_times),
            lost=sum(len(v) for v in missing.values()),
            duplicated=sum(dup_by_platform.values()),
            duplicated_by_platform=dup_by_platform,
            duplicated_outside_window=outside,
            seconds=time.monotonic() - t0,
            sigterm_exit=sigterm_exit,
            sigterm_seconds=sigterm_seconds,
            missing={d: v for d, v in missing.items() if v},
            logs=[p.log_path for p in procs],
            shape="2 images each: an album and a follow-up on Telegram, into groups paced to 20 a minute"
            if split
            else "one message per post, Telegram private chats",
            network=source.name,
        )
    finally:
        for p in procs:
            p.close()
        await world.stop()
        await source.stop()


def session_secrets(db_path: Path) -> list[str]:
    """The Bluesky session tokens the bridge saved (adapter_state), to check that no log shows them."""
    found: list[str] = []
    with sqlite3.connect(db_path) as db:
        for (value,) in db.execute("SELECT value FROM adapter_state"):
            found += re.findall(r"eyJ[\w-]+\.[\w-]+\.[\w-]+", value or "")
    return found


def status_output(config: Path) -> str:
    proc = run_cli(config, "status")
    return proc.stdout + proc.stderr
