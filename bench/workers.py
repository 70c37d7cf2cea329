"""Several workers: relay throughput, listener failover and database statements per delivery
with 1, 2 and 3 ``bridge run`` processes on one Postgres database.

Each worker count gets a fresh database, fresh emulators and its own processes: the real
``bridge run -c FILE`` (tests/faults/bridge_process.py), the local AT Protocol stack in
firehose mode (one followed account), ``--tg-rooms`` Telegram private chats and
``--discord-rooms`` Discord channels, every one fed by that account.

* **Throughput**: ``--posts`` posts written back to back; deliveries per second from the first
  post written to the last message accepted. The Telegram emulator enforces Telegram's limits
  (30 messages a second per bot, 1 a second per private chat: a send over them gets 429), so
  with enough rooms the bot's limit is what bounds it. Shown next to it: the most messages
  each bot sent in any one second (must stay within 30 for Telegram, 50 requests for Discord)
  and the 429s the emulator answered. More workers must not lower it, nor pass the limits.
* **Failover**: ``--kills`` times, the holder of one listener (a ``listen:…`` row of
  ``leases``; the listeners taken in turn) is SIGKILLed and a new worker started at once; the
  time from the kill until a live worker holds that listener's lease again, and for the chat
  listeners the time until a ``/help`` typed right after the kill is answered (Discord: typed
  again every 2 s, as an interaction sent while nobody holds the gateway reaches nobody).
  With one worker, that is the restart plus the wait for the dead holder's lease to expire.
* **Statements per delivery**: every worker's connections go through ``bench/pgcount.py``, a
  forwarder that counts the statements sent to Postgres on the wire (simple queries and
  extended-protocol executes; the server's ``pg_stat_statements`` is not preloaded here). The
  count over the throughput phase, all workers' statements of every kind (leases, heartbeats,
  ledger, cursors), divided by the deliveries; and apart, the statements per second the
  workers make when idle (the cost of the leases themselves).

    python -m bench.workers [--workers 1,2,3] [--posts 30] [--tg-rooms 40] [--discord-rooms 10] [--kills 10]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench.databases import throwaway
from bench.pgcount import StatementCounter
from bench.report import publish
from tests.atproto.harness import AtprotoStack, provision
from tests.faults.bridge_process import BridgeProcess
from tests.faults.chat_world import ChatWorld
from tests.faults.crash import READY_LINE, make_accounts
from tests.faults.workers import _discord_probe, _telegram_probe, warm_up, workers_config

MARK = re.compile(r"bench-workers #(\d+)\b")
TELEGRAM_PER_SECOND = 30  # Telegram: about 30 messages a second per bot
DISCORD_PER_SECOND = 50  # Discord: 50 requests a second per bot


@dataclass
class Figures:
    workers: int
    deliveries: int = 0
    seconds: float = 0.0
    telegram_peak: int = 0
    discord_peak: int = 0
    rejected_429: int = 0
    statements: int = 0
    idle_per_second: float = 0.0
    lease_seconds: float = 0.0
    failover: dict[str, list[float]] = field(default_factory=dict)  # listener lease → seconds until held again
    answered: dict[str, list[float]] = field(default_factory=dict)  # platform → /help answered after kill
    unanswered: int = 0
    idle_top: list[tuple[str, float]] = field(default_factory=list)  # most frequent idle statements, per second

    @property
    def per_second(self) -> float:
        return self.deliveries / self.seconds if self.seconds else 0.0


def peak_per_second(times: Sequence[float]) -> int:
    """The most events in any window of one second."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] >= 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def _held(conn: asyncpg.Connection) -> dict[str, int]:
    """Live listener leases → pid of the holder."""
    rows = await conn.fetch(
        'SELECT l."name", w."pid" FROM "leases" l JOIN "workers" w ON w."id"=l."holder"'
        ' WHERE l."name" LIKE \'listen:%\' AND l."expires_at">now()'
    )
    return {r["name"]: int(r["pid"]) for r in rows}


async def run_one(
    stack: AtprotoStack,
    workdir: Path,
    workers: int,
    *,
    posts: int,
    tg_rooms: int,
    discord_rooms: int,
    kills: int,
    lease_seconds: float | None,
    idle_seconds: float,
    say: Callable[[str], None],
) -> Figures:
    fig = Figures(workers)
    world = await ChatWorld.start(tg_chats=tg_rooms, discord_channels=discord_rooms)
    world.tg.enforce_rate_limits = True
    ops_channel = world.discord.add_channel(world.discord_guild, "ops")
    ops_member = world.discord.add_member(world.discord_guild, "ops")
    procs: list[BridgeProcess] = []
    async with throwaway("postgres") as db_url:
        counter = StatementCounter(db_url)
        await counter.start()
        conn = await asyncpg.connect(db_url.replace("postgres://", "postgresql://", 1))
        try:
            team, author = await make_accounts(stack)
            config = workers_config(
                workdir / f"config-{workers}.toml", counter.url(db_url), stack, world, team, author, lease_seconds
            )
            fig.lease_seconds = lease_seconds or 10.0  # the bridge's default

            def spawn() -> BridgeProcess:
                p = BridgeProcess(config, workdir / f"w{workers}-{len(procs) + 1}.log")
                procs.append(p)
                return p

            await spawn().wait_log(READY_LINE, timeout=90)
            for _ in range(workers - 1):
                spawn()
            for p in procs:
                await p.wait_log(READY_LINE, timeout=90)
            await warm_up(stack, author, world, "bench-workers", timeout=120)

            # Idle: what the workers cost the database with nothing to relay.
            await asyncio.sleep(2)
            before, t, by_query = counter.statements, time.monotonic(), counter.by_query.copy()
            await asyncio.sleep(idle_seconds)
            took = time.monotonic() - t
            fig.idle_per_second = (counter.statements - before) / took
            fig.idle_top = [(q, n / took) for q, n in (counter.by_query - by_query).most_common(5)]

            # Throughput.
            tg_before = {d: len(world.tg.messages(int(d.split(":")[1]))) for d in world.destinations if d[0] == "t"}
            dc_before = {d: len(world.discord.bot_messages(int(d.split(":")[1]))) for d in world.destinations if d[0] == "d"}
            rejected_before = sum(1 for _, _, e in world.tg.rejected if e.code == 429)
            statements_before = counter.statements
            first = time.monotonic()
            for n in range(posts):
                await stack.post(author, f"bench-workers #{n} of {posts}")
            want = posts * len(world.destinations)

            def delivered() -> int:
                return sum(len(MARK.findall(t)) for d in world.destinations for t in world.texts(d))

            await world.tg.wait_until(lambda: delivered() >= want, timeout=60 + want / 5)
            tg_new = [m.at for d, k in tg_before.items() for m in world.tg.messages(int(d.split(":")[1]))[k:]]
            dc_new = [m.at for d, k in dc_before.items() for m in world.discord.bot_messages(int(d.split(":")[1]))[k:]]
            fig.deliveries = delivered()
            fig.seconds = max(tg_new + dc_new) - first
            fig.statements = counter.statements - statements_before
            fig.telegram_peak = peak_per_second(tg_new)
            fig.discord_peak = peak_per_second(dc_new)
            fig.rejected_429 = sum(1 for _, _, e in world.tg.rejected if e.code == 429) - rejected_before
            say(f"{workers} workers: {fig.deliveries} deliveries in {fig.seconds:.1f} s")

            # Failover.
            names = sorted(await _held(conn))
            if not names:
                say("no listener lease held: failover not measured")
            for k in range(kills if names else 0):
                name = names[k % len(names)]
                held = await _held(conn)
                victim = next((p for p in procs if p.pid == held.get(name) and p.proc.poll() is None), None)
                if victim is None:
                    await asyncio.sleep(1)
                    continue
                victim_held = [n for n, pid in held.items() if pid == victim.pid]
                victim.kill()
                killed_at = time.monotonic()
                spawn()
                chats = []
                if any(n.startswith("listen:telegram") for n in victim_held):
                    chats.append(("telegram", _telegram_probe(world, 100 * workers + k, killed_at, timeout=60)))
                if any(n.startswith("listen:discord") for n in victim_held):
                    chats.append(("discord", _discord_probe(world, ops_channel, ops_member, killed_at, timeout=60)))
                probes = asyncio.gather(*(c for _, c in chats))
                pending = set(victim_held)
                deadline = killed_at + 90
                while pending and time.monotonic() < deadline:
                    now_held = await _held(conn)
                    for n in list(pending):
                        pid = now_held.get(n)
                        if pid is not None and pid != victim.pid:
                            fig.failover.setdefault(n, []).append(time.monotonic() - killed_at)
                            pending.discard(n)
                    await asyncio.sleep(0.05)
                for (platform, _), seconds in zip(chats, await probes, strict=True):
                    if seconds is None:
                        fig.unanswered += 1
                    else:
                        fig.answered.setdefault(platform, []).append(seconds)
                say(f"  kill {k + 1}/{kills}: {name} (held {', '.join(victim_held)})")
                await asyncio.sleep(1)
            await asyncio.gather(*(p.terminate(timeout=30) for p in procs if p.proc.poll() is None))
        finally:
            for p in procs:
                p.close()
            await conn.close()
            await counter.stop()
            await world.stop()
    return fig


def _p50_max(values: list[float]) -> str:
    if not values:
        return "–"
    return f"{statistics.median(values):.1f} / {max(values):.1f} s ({len(values)})"


def table(figures: Sequence[Figures], posts: int, tg_rooms: int, discord_rooms: int) -> list[str]:
    listeners = sorted({n for f in figures for n in f.failover})
    lines = [
        f"{posts} posts × {tg_rooms} Telegram private chats + {discord_rooms} Discord channels; "
        f"the Telegram emulator enforces 30 messages/s per bot and 1/s per private chat.",
        "",
        "| workers | deliveries | deliveries/s | Telegram peak msgs/s (limit 30) | Discord peak msgs/s (limit 50) | 429s "
        "| statements per delivery | idle statements/s (all workers) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        lines.append(
            f"| {f.workers} | {f.deliveries} | {f.per_second:.1f} | {f.telegram_peak} | {f.discord_peak} | {f.rejected_429} "
            f"| {f.statements / max(1, f.deliveries):.2f} | {f.idle_per_second:.1f} |"
        )
    lines += [
        "",
        "Failover after SIGKILL of the holder, p50 / max (kills): until a live worker holds the lease again; "
        "for chat listeners, until a `/help` typed right after the kill is answered.",
        "",
        "| " + " | ".join(["workers", "lease_seconds", *(f"`{n}`" for n in listeners), "/help Telegram", "/help Discord"]) + " |",
        "|---|---|" + "---|" * (len(listeners) + 2),
    ]
    for f in figures:
        cells = [_p50_max(f.failover.get(n, [])) for n in listeners]
        cells += [_p50_max(f.answered.get("telegram", [])), _p50_max(f.answered.get("discord", []))]
        unanswered = f" ({f.unanswered} unanswered)" if f.unanswered else ""
        lines.append(f"| {f.workers} | {f.lease_seconds:g} | " + " | ".join(cells) + f" |{unanswered}")
    last = figures[-1] if figures else None
    if last is not None and last.idle_top:
        lines += ["", f"Most frequent statements while idle, {last.workers} workers (per second, all workers):", ""]
        lines += [f"* {rate:.1f}/s `{' '.join(q.split())[:110]}`" for q, rate in last.idle_top]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", default="1,2,3", help="worker counts, comma-separated")
    p.add_argument("--posts", type=int, default=30)
    p.add_argument("--tg-rooms", type=int, default=40)
    p.add_argument("--discord-rooms", type=int, default=10)
    p.add_argument("--kills", type=int, default=10, help="SIGKILLs of a listener's holder per worker count")
    p.add_argument("--lease-seconds", type=float, default=None, help="[bridge] lease_seconds (default: the bridge's, 10)")
    p.add_argument("--idle-seconds", type=float, default=10, help="how long the idle statements are counted")
    p.add_argument("--no-save", action="store_true", help="print only; do not append to bench/RESULTS.md")
    args = p.parse_args(argv)
    counts = [int(x) for x in args.workers.split(",")]

    def say(line: str) -> None:
        print(f"  {line}", flush=True)

    stack = AtprotoStack.start(provision())
    try:
        with tempfile.TemporaryDirectory(prefix="bridge-bench-workers-") as tmp:
            figures = [
                asyncio.run(
                    run_one(
                        stack,
                        Path(tmp),
                        n,
                        posts=args.posts,
                        tg_rooms=args.tg_rooms,
                        discord_rooms=args.discord_rooms,
                        kills=args.kills,
                        lease_seconds=args.lease_seconds,
                        idle_seconds=args.idle_seconds,
                        say=say,
                    )
                )
                for n in counts
            ]
    finally:
        stack.close()
    publish("Several workers", table(figures, args.posts, args.tg_rooms, args.discord_rooms), save=not args.no_save)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
