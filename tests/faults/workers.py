"""The workers run: several real ``bridge run`` processes on one Postgres database relay a
stream of Bluesky posts (reference AT Protocol stack, firehose mode) into 2 Telegram chats and
2 Discord channels while a random worker is SIGKILLed every few seconds and started again.
Then what the rooms show is compared with what was posted.

What it checks, the way people meet it:

* **Lost**: every post in every room (0 lost).
* **Duplicates** only inside a send→commit window (the two copies of a post bracket a kill),
  and none on Discord (every send carries a nonce with ``enforce_nonce``).
* **Order**: in each room the posts first appear in the order they were posted.
* **Commands**: after every kill, a Telegram ``/help`` (in a private chat of its own) and a
  Discord ``/help`` (typed again every 2 s, as a person whose command went unanswered would)
  are answered; the time from the kill to the answer is kept, and whether the killed worker
  held that platform's listener (the ``leases`` table). Answered within 15 s.
* **Listeners run once**: the Discord emulator never sees two gateway sessions of the bot at
  once (Discord would send each event to both), and the Telegram emulator never ends a live
  poller's ``getUpdates`` with 409 (two pollers at once).
* **Changes reach every worker**: a ``bridge unfollow`` typed in the middle of the run is
  followed by "settings reloaded" in every running worker within 3 s, and no post of that
  account written 3 s after the command is shown in the room it was unfollowed from (posts of
  it before the command are shown: the check can fail).

Used by tests/faults/test_workers.py (short, in the suite) and, as

    .venv/bin/python -m tests.faults.workers [--workers 3] [--posts 150] [--kills 15] [--seed N]

the long run whose figures are in RELIABILITY.md (exit code 0 only when every check holds).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bridge.config import CORE_SECTIONS
from tests.atproto.harness import Account, AtprotoStack, provision
from tests.faults.bridge_process import BridgeProcess, run_cli
from tests.faults.chat_world import ChatWorld
from tests.faults.crash import FIREHOSE_LINE, READY_LINE, Team, make_accounts
from tests.faults.toml_file import write_config

MARK = re.compile(r"workers-run post #(\d+)\b")
OTHER = re.compile(r"workers-run unfollowed #(\d+)\b")
RELOADED = "settings reloaded"
CHANGE_WITHIN = 3.0  # SPEC: a change made anywhere reaches every worker within 3 s
COMMAND_WITHIN = 15.0  # issue: a command is answered within 15 s of its listener's holder dying
LISTENERS = ("telegram", "discord")


@dataclass
class Probe:
    """One command typed after a kill: on which platform, whether the killed worker held that
    platform's listener, and how long after the last death of that listener's holder the
    answer was shown (None: never). When the worker that took the listener over is killed
    too before answering, the clock starts again at that kill (``since_kill`` says which)."""

    platform: str
    kill: int
    victim_held_listener: bool
    seconds: float | None
    since_kill: int = 0


@dataclass
class WorkersReport:
    workers: int
    posts: int
    destinations: int
    kills: int
    lost: int
    duplicated_by_platform: dict[str, int]
    duplicated_outside_window: int
    out_of_order: dict[str, int]
    probes: list[Probe]
    gateway_max_sessions: int
    telegram_live_conflicts: int
    unfollow_reload_seconds: list[float | None]  # per worker running then: "settings reloaded" after the CLI returned
    unfollow_reload_from_typed: list[float | None]  # the same, counted from the CLI's start (its own start-up included)
    unfollowed_shown_before: int  # posts of the unfollowed account shown (written before the command)
    unfollowed_shown_late: int  # written 3 s after the command and shown anyway: must be 0
    sigterm_exits: list[int | None]
    seconds: float
    lease_seconds: float | None
    missing: dict[str, list[int]] = field(default_factory=dict)
    logs: list[Path] = field(default_factory=list)

    @property
    def duplicated(self) -> int:
        return sum(self.duplicated_by_platform.values())

    def failover(self, platform: str) -> list[float]:
        """Answer times after kills of that platform's listener holder (answered ones)."""
        return sorted(
            p.seconds for p in self.probes if p.platform == platform and p.victim_held_listener and p.seconds is not None
        )

    def lines(self) -> list[str]:
        out = [
            f"workers: {self.workers} on Postgres, lease_seconds {self.lease_seconds or 'default'}",
            f"posts: {self.posts} to {self.destinations} rooms (2 Telegram private chats, 2 Discord channels)",
            f"kills (SIGKILL of a random worker, restarted at once): {self.kills}",
            f"lost: {self.lost}",
            f"duplicated: {self.duplicated} ("
            + ", ".join(f"{k} {v}" for k, v in sorted(self.duplicated_by_platform.items()))
            + f"; outside the send-commit window: {self.duplicated_outside_window})",
            f"out of order: {sum(self.out_of_order.values())}",
        ]
        for platform in LISTENERS:
            held = self.failover(platform)
            probes = [p for p in self.probes if p.platform == platform]
            unanswered = sum(1 for p in probes if p.seconds is None)
            all_times = sorted(p.seconds for p in probes if p.seconds is not None)
            text = f"{platform} /help after a kill: {len(probes)} typed, {unanswered} unanswered"
            if all_times:
                text += f", answered in max {all_times[-1]:.1f} s"
            if held:
                text += (
                    f"; after killing the listener's holder ({len(held)}): "
                    f"p50 {statistics.median(held):.1f} s, max {held[-1]:.1f} s"
                )
            out.append(text)
        out += [
            f"Discord gateway sessions open at once: at most {self.gateway_max_sessions}",
            f"Telegram getUpdates ended by another live poller (409): {self.telegram_live_conflicts}",
            "unfollow reached the running workers (settings reloaded) after the command returned: "
            + ", ".join("never" if s is None else f"{s:.1f} s" for s in self.unfollow_reload_seconds)
            + " (from the command's start, its own start-up included: "
            + ", ".join("never" if s is None else f"{s:.1f} s" for s in self.unfollow_reload_from_typed)
            + ")"
            + f"; posts of the account shown before it {self.unfollowed_shown_before},"
            f" written 3 s after it and shown {self.unfollowed_shown_late}",
            "final SIGTERM exits: " + ", ".join(str(c) for c in self.sigterm_exits),
            f"wall time: {self.seconds:.0f} s",
        ]
        return out

    def failures(self) -> list[str]:
        """Every broken promise, one line each (empty: the run passed)."""
        bad = []
        if self.lost:
            bad.append(f"lost {self.lost}: {self.missing}")
        if self.duplicated_by_platform.get("discord", 0):
            bad.append(f"Discord duplicates: {self.duplicated_by_platform['discord']}")
        if self.duplicated_outside_window:
            bad.append(f"duplicates outside the send-commit window: {self.duplicated_outside_window}")
        if any(self.out_of_order.values()):
            bad.append(f"out of order: {self.out_of_order}")
        late = [p for p in self.probes if p.seconds is None or p.seconds > COMMAND_WITHIN]
        if late:
            bad.append(f"commands not answered within {COMMAND_WITHIN:.0f} s of a kill: {late}")
        if self.gateway_max_sessions > 1:
            bad.append(f"{self.gateway_max_sessions} Discord gateway sessions at once")
        if self.telegram_live_conflicts:
            bad.append(f"{self.telegram_live_conflicts} getUpdates ended by 409 while two pollers ran")
        if any(s is None or s > CHANGE_WITHIN for s in self.unfollow_reload_seconds):
            bad.append(f"unfollow reached the workers after {self.unfollow_reload_seconds}")
        if self.unfollowed_shown_late:
            bad.append(f"{self.unfollowed_shown_late} posts relayed 3 s after their unfollow")
        if not self.unfollowed_shown_before:
            bad.append("no post of the account to unfollow was shown before the command: the check proves nothing")
        if any(code != 0 for code in self.sigterm_exits):
            bad.append(f"SIGTERM exit codes {self.sigterm_exits}")
        return bad


def lease_setting_supported() -> bool:
    """Whether this bridge has ``[bridge] lease_seconds`` (the several-workers core)."""
    return "lease_seconds" in CORE_SECTIONS["bridge"]


def workers_config(
    path: Path,
    db_url: str,
    stack: AtprotoStack,
    world: ChatWorld,
    team: Team,
    author: Account,
    lease_seconds: float | None,
) -> Path:
    bridge: dict[str, Any] = {"admins": [], "senders": [], "shutdown_timeout": 5, "log_level": "info"}
    if lease_seconds is not None and lease_setting_supported():
        bridge["lease_seconds"] = lease_seconds
    return write_config(
        path,
        {
            "database": {"url": db_url},
            "bridge": bridge,
            **world.config_sections(),
            "bluesky": {
                "service": stack.pds,
                "identifier": team.account.handle,
                "password": team.app_password,
                "realtime": "firehose",
                "firehose_url": stack.firehose_url,
                "poll_interval": 60,
            },
        },
        [{"network": "bluesky", "follow": author.handle, "to": world.destinations}],
    )


class Holders:
    """Who holds what, read from the ``leases`` and ``workers`` tables (by pid). Before the
    several-workers core (no such tables), the one running worker holds everything."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def of(self, prefix: str, running: list[BridgeProcess]) -> int | None:
        """The pid holding a live lease whose name starts with ``prefix`` (None: nobody)."""
        try:
            rows = await self.conn.fetch(
                'SELECT w."pid" FROM "leases" l JOIN "workers" w ON w."id"=l."holder"'
                ' WHERE l."name" LIKE $1 AND l."expires_at">now() ORDER BY l."name" LIMIT 1',
                prefix + "%",
            )
        except asyncpg.UndefinedTableError:
            live = [p.pid for p in running if p.proc.poll() is None]
            return live[0] if len(live) == 1 else None
        return int(rows[0]["pid"]) if rows else None


async def warm_up(stack: AtprotoStack, author: Account, world: ChatWorld, word: str, timeout: float) -> None:
    """Post until every room has shown a post: a worker logs "bridge running" before the
    config's subscriptions are all in, and a post is relayed to the rooms subscribed when it
    is ingested."""
    deadline = time.monotonic() + timeout
    n = 0
    while not all(any("warm-up" in t for t in world.texts(d)) for d in world.destinations):
        if time.monotonic() > deadline:
            missing = [d for d in world.destinations if not any("warm-up" in t for t in world.texts(d))]
            raise AssertionError(f"warm-up posts did not reach every room within {timeout:.0f} s: {missing[:10]} ({len(missing)})")
        n += 1
        await stack.post(author, f"{word} warm-up {n}")
        await asyncio.sleep(3)


async def _telegram_probe(world: ChatWorld, n: int, killed_at: float, timeout: float) -> float | None:
    user = world.tg.add_user(f"Ops{n}", f"ops{n}")
    chat = world.tg.private_chat(user)
    world.tg.send_text(chat.id, user, "/help")
    try:
        await world.tg.wait_messages(chat.id, 1, timeout=timeout)
    except (AssertionError, TimeoutError):
        return None
    return world.tg.messages(chat.id)[0].at - killed_at


async def _discord_probe(world: ChatWorld, channel: int, member: int, killed_at: float, timeout: float) -> float | None:
    """``/help`` typed again every 2 s until one is answered: an interaction sent while no
    worker holds the gateway reaches nobody (Discord does not keep it)."""
    deadline = killed_at + timeout
    records = []
    while time.monotonic() < deadline:
        if "help" in {c["name"] for c in world.discord.commands}:
            records.append(await world.discord.slash(channel, member, "help"))
        for _ in range(20):
            if any(r.messages() for r in records):
                return time.monotonic() - killed_at
            await asyncio.sleep(0.1)
    return None


async def run_workers(
    stack: AtprotoStack,
    workdir: Path,
    db_url: str,
    *,
    workers: int = 3,
    posts: int,
    kills: int,
    post_every: float,
    lease_seconds: float | None = None,
    seed: int | None = None,
    drain_timeout: float = 120.0,
    say: Callable[[str], None] = lambda _: None,
) -> WorkersReport:
    """Start ``workers`` processes; post ``posts`` posts (one every ``post_every`` s) while
    SIGKILLing ``kills`` times a worker (the first kills aim at the holders of the Telegram and
    the Discord listener, then at random) and starting a new one at once; unfollow an account
    half-way through; wait until every room has every post (or ``drain_timeout``); SIGTERM the
    workers and count."""
    rng = random.Random(seed)
    t0 = time.monotonic()
    world = await ChatWorld.start()
    ops_channel = world.discord.add_channel(world.discord_guild, "ops")
    ops_member = world.discord.add_member(world.discord_guild, "ops")
    procs: list[BridgeProcess] = []
    conn = await asyncpg.connect(db_url.replace("postgres://", "postgresql://", 1))
    probes: list[Probe] = []
    probe_tasks: list[asyncio.Task[None]] = []
    kill_times: list[float] = []
    holder_kills: list[tuple[float, set[str]]] = []  # per kill: when, and which listeners the victim held
    try:
        team, author = await make_accounts(stack)
        other = await stack.create_account("bob", "Bob Unfollowed")
        config = workers_config(workdir / "config.toml", db_url, stack, world, team, author, lease_seconds)
        # The account unfollowed mid-run, followed from one room per platform the way an
        # operator does it (a [[subscription]] of the config file would come back at every start).
        unfollow_rooms = (world.destinations[0], world.destinations[2])

        def running() -> list[BridgeProcess]:
            return [p for p in procs if p.proc.poll() is None]

        def spawn() -> BridgeProcess:
            p = BridgeProcess(config, workdir / f"worker-{len(procs) + 1}.log")
            procs.append(p)
            return p

        # The first applies the schema; the others start together once it runs (the start-up
        # race on a fresh database is tests/faults/test_startup.py's).
        await spawn().wait_log(READY_LINE, timeout=90)
        for dest in unfollow_rooms:
            res = await asyncio.to_thread(run_cli, config, "follow", other.handle, "--to", dest)
            assert res.returncode == 0, res.stdout + res.stderr
        for _ in range(workers - 1):
            spawn()
        for p in procs:
            await p.wait_log(READY_LINE, timeout=90)
        # End to end once before counting: a post reaches every room.
        await warm_up(stack, author, world, "workers-run", timeout=90)
        assert any(FIREHOSE_LINE in p.log_text() for p in procs)
        say(f"{workers} workers up; posting {posts} posts, {kills} kills")
        holders = Holders(conn)

        posted: list[int] = []
        other_posted: list[tuple[int, float]] = []  # (n, when its post was written)

        async def post_other(n: int) -> None:
            await stack.post(other, f"workers-run unfollowed #{n}")
            other_posted.append((n, time.monotonic()))

        unfollow_done = asyncio.Event()
        quiet = asyncio.Event()
        quiet.set()
        unfollowed_at: list[float] = []
        reload_seconds: list[float | None] = []
        reload_from_typed: list[float | None] = []

        async def unfollow() -> None:
            async def typed(dest: str) -> tuple[float, float, dict[BridgeProcess, float]]:
                """Run ``bridge unfollow``; when it started, when it returned, and when each
                running worker logged its next reload."""
                before = {p: p.log_text().count(RELOADED) for p in running()}
                started = time.monotonic()
                cli = asyncio.create_task(asyncio.to_thread(run_cli, config, "unfollow", other.handle, "--to", dest))
                seen: dict[BridgeProcess, float] = {}
                returned = float("inf")
                while time.monotonic() < returned + CHANGE_WITHIN + 7 and (returned == float("inf") or len(seen) < len(before)):
                    for p, count in before.items():
                        if p not in seen and p.log_text().count(RELOADED) > count:
                            seen[p] = time.monotonic()
                    if cli.done() and returned == float("inf"):
                        returned = time.monotonic()
                    await asyncio.sleep(0.05)
                res = cli.result()
                assert res.returncode == 0, res.stdout + res.stderr
                return started, returned, {p: seen.get(p, float("nan")) for p in before}

            await typed(unfollow_rooms[0])
            # The last command's change is followed; no kill meanwhile, so that every worker's
            # reload is seen.
            quiet.clear()
            started, returned, seen = await typed(unfollow_rooms[1])
            unfollowed_at.append(returned)
            for at in seen.values():
                reload_seconds.append(None if at != at else max(0.0, at - returned))
                reload_from_typed.append(None if at != at else at - started)
            say("unfollow reached the workers after " + ", ".join(f"{at - started:.1f} s" for at in seen.values()))
            quiet.set()
            unfollow_done.set()

        async def poster() -> None:
            for n in range(posts):
                await stack.post(author, f"workers-run post #{n} of {posts}: pricing question from a prospect")
                posted.append(n)
                if n in (1, posts // 4):
                    await post_other(n)
                if n == posts // 2:
                    probe_tasks.append(asyncio.create_task(unfollow()))
                await asyncio.sleep(post_every)
            await unfollow_done.wait()
            # Written well after the unfollow reached every worker: must show nowhere.
            await asyncio.sleep(max(0.0, unfollowed_at[0] + CHANGE_WITHIN - time.monotonic()))
            for n in range(posts, posts + 3):
                await post_other(n)

        posting = asyncio.create_task(poster())
        period = posts * post_every
        moments = sorted(rng.uniform(1.0, period + 2.0) for _ in range(kills))
        start = time.monotonic()
        for k, at in enumerate(moments):
            await asyncio.sleep(max(0.5, at - (time.monotonic() - start)))
            await quiet.wait()
            live = running()
            held = {platform: await holders.of(f"listen:{platform}", live) for platform in LISTENERS}
            aim = LISTENERS[k] if k < len(LISTENERS) else None
            victim = next((p for p in live if aim and p.pid == held[aim]), None) or rng.choice(live)
            victim.kill()
            killed_at = time.monotonic()
            kill_times.append(killed_at)
            holder_kills.append((killed_at, {pl for pl in LISTENERS if held[pl] == victim.pid}))
            spawn()
            say(
                f"kill {k + 1}/{kills} at {killed_at - start:.1f}s: pid {victim.pid}"
                + "".join(f", held {pl}" for pl in LISTENERS if held[pl] == victim.pid)
            )

            async def probe(platform: str, n: int, held_it: bool, at: float) -> None:
                if platform == "telegram":
                    seconds = await _telegram_probe(world, n, at, timeout=COMMAND_WITHIN + 15)
                else:
                    seconds = await _discord_probe(world, ops_channel, ops_member, at, timeout=COMMAND_WITHIN + 15)
                if seconds is None:
                    probes.append(Probe(platform, n, held_it, None, n))
                    return
                answered = at + seconds
                # The last kill of this listener's holder before the answer (this one or later).
                last = max(
                    ((i, t) for i, (t, pl) in enumerate(holder_kills, 1) if platform in pl and at <= t <= answered),
                    default=(n, at),
                )
                probes.append(Probe(platform, n, held_it, answered - max(last[1], at), max(last[0], n)))

            for platform in LISTENERS:
                probe_tasks.append(asyncio.create_task(probe(platform, k + 1, held[platform] == victim.pid, killed_at)))
        await posting
        await asyncio.gather(*probe_tasks)

        def complete() -> bool:
            counts = world.counts(MARK)
            return all(all(counts[d][n] for n in posted) for d in world.destinations)

        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline:
            if complete():
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(2.0)  # a late duplicate or a late relay of the unfollowed would show now
        exits = await asyncio.gather(*(p.terminate(timeout=30) for p in running()))

        tg_rooms = [d for d in world.destinations if d.startswith("telegram:")]
        counts = world.counts(MARK)
        missing = {d: [n for n in posted if not counts[d][n]] for d in world.destinations}
        dup: dict[str, int] = {"telegram": 0, "discord": 0}
        for d in world.destinations:
            dup[d.partition(":")[0]] += sum(c - 1 for c in counts[d].values() if c > 1)
        outside = 0
        for d in tg_rooms:  # Discord must have none at all
            for times in world.telegram_times(d, MARK).values():
                for first_at, again_at in itertools.pairwise(times):
                    if not any(first_at <= k <= again_at for k in kill_times):
                        outside += 1
        out_of_order = {}
        for d in world.destinations:
            firsts = list(dict.fromkeys(int(n) for text in world.texts(d) for n in MARK.findall(text)))
            out_of_order[d] = sum(1 for a, b in itertools.pairwise(firsts) if b < a)
        shown_other = {int(n) for d in world.destinations[::2] for text in world.texts(d) for n in OTHER.findall(text)}
        late_cut = unfollowed_at[0] + CHANGE_WITHIN
        return WorkersReport(
            workers=workers,
            posts=len(posted),
            destinations=len(world.destinations),
            kills=len(kill_times),
            lost=sum(len(v) for v in missing.values()),
            duplicated_by_platform=dup,
            duplicated_outside_window=outside,
            out_of_order={d: v for d, v in out_of_order.items() if v},
            probes=sorted(probes, key=lambda p: (p.platform, p.kill)),
            gateway_max_sessions=world.discord.max_gateway_sessions,
            telegram_live_conflicts=sum(world.tg.poll_conflicts),
            unfollow_reload_seconds=reload_seconds,
            unfollow_reload_from_typed=reload_from_typed,
            unfollowed_shown_before=sum(1 for n, at in other_posted if at < unfollowed_at[0] and n in shown_other),
            unfollowed_shown_late=sum(1 for n, at in other_posted if at > late_cut and n in shown_other),
            sigterm_exits=list(exits),
            seconds=time.monotonic() - t0,
            lease_seconds=lease_seconds if lease_setting_supported() else None,
            missing={d: v for d, v in missing.items() if v},
            logs=[p.log_path for p in procs],
        )
    finally:
        for task in probe_tasks:
            task.cancel()
        for p in procs:
            p.close()
        await conn.close()
        await world.stop()


def main() -> int:
    from bench.databases import throwaway

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--posts", type=int, default=150)
    p.add_argument("--kills", type=int, default=15)
    p.add_argument("--post-every", type=float, default=0.5, help="seconds between posts")
    p.add_argument("--lease-seconds", type=float, default=None, help="[bridge] lease_seconds (default: the bridge's)")
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args()
    stack = AtprotoStack.start(provision())

    def say(line: str) -> None:
        print(f"  {line}", file=sys.stderr, flush=True)

    async def run(workdir: Path) -> WorkersReport:
        async with throwaway("postgres") as db_url:
            return await run_workers(
                stack,
                workdir,
                db_url,
                workers=args.workers,
                posts=args.posts,
                kills=args.kills,
                post_every=args.post_every,
                lease_seconds=args.lease_seconds,
                seed=args.seed,
                drain_timeout=max(120.0, args.posts * 1.5),
                say=say,
            )

    try:
        with tempfile.TemporaryDirectory(prefix="bridge-workers-") as tmp:
            report = asyncio.run(run(Path(tmp)))
    finally:
        stack.close()
    for line in report.lines():
        print(line)
    for line in report.failures():
        print(f"FAILED: {line}")
    return 1 if report.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
