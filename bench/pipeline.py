"""Benchmark 1, pipeline overhead: the whole bridge against a bare python-telegram-bot loop.

Both send the same messages (rendered by the Telegram adapter's own ``plan_post``, with the
same buttons) to the same chats of the same Bot API emulator (its own process, rate limits
off), in the same run, one after the other, ``--runs`` times; the figure is the median.

* bare: one ``telegram.Bot`` with python-telegram-bot's default networking (httpx, a pool of
  256 connections, as an Application gets), one task per chat sending that chat's messages in
  order: a well-written relay script as users write it, and the baseline of the target. Also
  measured: the simplest script, one message after the other; and the same per-chat script on
  the bridge's own networking (``adapters.telegram.transport.AiohttpRequest``), so that what
  the bridge gains from its HTTP client is shown apart from what its own work costs.
* bridge: ``Bridge`` with the real Telegram adapter and a FakeNetwork as the source; each
  chat follows the author, posts are handed over in batches of 50 as a network adapter does,
  and the clock stops when the dispatcher has confirmed every delivery. That includes the
  matcher, the ledger (posts, deliveries, chat message map, in SQLite or Postgres), the
  rendering, the dispatcher and the pacer. The pacer's limits are lifted (``Pacer.unlimited``)
  since the emulator enforces none here.

Warm-up (connections, caches, the first transaction) is excluded: each side sends a few
posts before the clock starts. Logs are written at the production level (info) to a file.

    python -m bench.pipeline [--posts 200] [--chats 10] [--runs 3] [--db sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import itertools
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
from telegram import Bot, LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.request import HTTPXRequest

from adapters.telegram import TelegramAdapter
from adapters.telegram.outbox import markup_of
from adapters.telegram.pacing import Pacer
from adapters.telegram.render import plan_post
from adapters.telegram.transport import AiohttpRequest
from bench.databases import throwaway
from bench.emulator import EmulatorProcess, start_emulator
from bench.report import log_to_file, median, publish
from bridge.app import Bridge
from bridge.config import config_from_dict
from bridge.delivery.buttons import buttons_for
from bridge.model import Link, Post, Ref, Source, SourceKind
from bridge.ops.metrics import Metrics
from tests.fakes import FakeNetwork, author
from tests.tcp_proxy import free_port

CLASSES = {"fakenet": FakeNetwork, "telegram": TelegramAdapter}
AUTHOR = "alice.fake"
BATCH = 50
WARMUP_POSTS = 3
# The Application's bot uses a pool this size (python-telegram-bot's ApplicationBuilder default).
POOL = 256

_ids = itertools.count(1)


def make_posts(n: int, tag: str) -> list[Post]:
    """``n`` posts by the followed author: a sentence, a link, like a typical post."""
    posts = []
    for _ in range(n):
        i = next(_ids)
        text = f"Post {i} ({tag}): our Q3 numbers are out, pricing update and outage report at example.com/r/{i}"
        start = text.index("example.com")
        posts.append(
            Post(
                ref=Ref("fakenet", f"{tag}-{i}"),
                author=author(AUTHOR),
                text=text,
                created_at=datetime.now(UTC),
                url=f"https://fake.example/{tag}-{i}",
                links=(Link(start, len(text), f"https://example.com/r/{i}"),),
            )
        )
    return posts


# --- bare client -----------------------------------------------------------------------------


async def send_post(bot: Bot, chat_id: int, post: Post, delivery_id: int) -> int:
    """Send one post the way the bridge renders it (same pieces, same buttons); returns the
    messages sent."""
    pieces = plan_post(post, buttons_for(post, delivery_id))
    for piece in pieces:
        await bot.send_message(
            chat_id,
            piece.text,
            parse_mode=ParseMode.HTML,
            reply_markup=markup_of(piece),
            link_preview_options=LinkPreviewOptions(is_disabled=True),
        )
    return len(pieces)


async def bare_send(bot: Bot, chats: Sequence[int], posts: Sequence[Post]) -> int:
    """Send every post to every chat, one task per chat; returns the messages sent."""

    async def one_chat(chat_id: int) -> int:
        sent = 0
        for n, post in enumerate(posts):
            sent += await send_post(bot, chat_id, post, n + 1)
        return sent

    return sum(await asyncio.gather(*(one_chat(c) for c in chats)))


async def bare_send_sequential(bot: Bot, chats: Sequence[int], posts: Sequence[Post]) -> int:
    """The simplest relay script: every post to every chat, one message after the other."""
    sent = 0
    for n, post in enumerate(posts):
        for chat_id in chats:
            sent += await send_post(bot, chat_id, post, n + 1)
    return sent


@dataclass
class Side:
    """A side of the comparison: its throughputs, one per run."""

    name: str
    rates: list[float]
    cpu_ms: list[float]  # CPU time of this process (all threads) per message

    @property
    def median(self) -> float:
        return median(self.rates)


class BareClient:
    def __init__(self, emu: EmulatorProcess, transport: str = "httpx") -> None:
        self.emu = emu
        request = HTTPXRequest(connection_pool_size=POOL) if transport == "httpx" else AiohttpRequest(pool_size=POOL)
        self.bot = Bot(emu.token, base_url=f"{emu.url}/bot", request=request)

    async def __aenter__(self) -> BareClient:
        await self.bot.initialize()
        await bare_send(self.bot, self.emu.chats, make_posts(WARMUP_POSTS, "bare-warm"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.bot.shutdown()

    async def run(self, posts: int, sequential: bool = False) -> float:
        batch = make_posts(posts, "bare")
        t0 = time.perf_counter()
        sent = await (bare_send_sequential if sequential else bare_send)(self.bot, self.emu.chats, batch)
        elapsed = time.perf_counter() - t0
        assert sent == posts * len(self.emu.chats), sent
        return sent / elapsed


# --- the bridge -----------------------------------------------------------------------------


def bridge_config(
    emu: EmulatorProcess, db_url: str, telegram: dict[str, object] | None = None, listen: str = "", **bridge: object
) -> object:
    return config_from_dict(
        {
            "database": {"url": db_url},
            "bridge": {"shutdown_timeout": 5, **bridge},
            "telegram": {"token": emu.token, "api_url": emu.url, "poll_timeout": 1, **(telegram or {})},
            "fakenet": {},
            **({"http": {"listen": listen}} if listen else {}),
        },
        adapter_classes=CLASSES,
    )


async def start_bridge(
    emu: EmulatorProcess,
    db_url: str,
    pacer: Pacer | None = None,
    telegram: dict[str, object] | None = None,
    listen: str = "",
    **bridge: object,
) -> Bridge:
    """A running bridge on ``db_url`` whose chats all follow AUTHOR (``listen``: with the
    [http] endpoint on)."""
    b = Bridge(bridge_config(emu, db_url, telegram, listen, **bridge), adapter_classes=CLASSES)  # type: ignore[arg-type]
    if pacer is not None:
        # The adapter builds its Pacer with Telegram's limits and has no setting for them; the
        # outbox takes it at start, so swapping it before start changes every send.
        b.chats["telegram"]._pacer = pacer  # type: ignore[attr-defined]
    await b.start()
    source = Source("fakenet", SourceKind.FOLLOW, author(AUTHOR).id)
    telegram = b.chats["telegram"]
    for chat in emu.chats:
        await b.subscribe(source, AUTHOR, telegram.parse_target(str(chat)), "bench")
    return b


async def relay(b: Bridge, posts: Sequence[Post], expected: int, timeout: float = 600) -> float:
    """Hand ``posts`` to the bridge as a network adapter does; seconds until ``expected`` more
    deliveries were confirmed by the chat platform."""
    net: FakeNetwork = b.networks["fakenet"]  # type: ignore[assignment]
    target = b.dispatcher.sent + expected
    t0 = time.perf_counter()
    for i in range(0, len(posts), BATCH):
        await net.deliver(*posts[i : i + BATCH])
    while b.dispatcher.sent < target:
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"only {b.dispatcher.sent - target + expected} of {expected} deliveries in {timeout}s")
        if b.dispatcher.failed:
            raise RuntimeError(f"{b.dispatcher.failed} deliveries failed; see the log")
        await asyncio.sleep(0.002)
    return time.perf_counter() - t0


class BridgeClient:
    def __init__(self, emu: EmulatorProcess, db_url: str, listen: str = "") -> None:
        self.emu = emu
        self.db_url = db_url
        self.listen = listen
        self.bridge: Bridge | None = None
        self.scrapes = 0

    async def __aenter__(self) -> BridgeClient:
        self.bridge = await start_bridge(self.emu, self.db_url, Pacer.unlimited(), listen=self.listen)
        await relay(self.bridge, make_posts(WARMUP_POSTS, "bridge-warm"), WARMUP_POSTS * len(self.emu.chats))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.bridge is not None
        await self.bridge.stop()

    async def run(self, posts: int, scrape: bool = False) -> float:
        """Messages per second; with ``scrape``, GET /metrics every second meanwhile, as a
        Prometheus server would (in this process: its CPU is counted against the bridge)."""
        assert self.bridge is not None
        expected = posts * len(self.emu.chats)
        scraper = asyncio.create_task(self._scrape()) if scrape else None
        try:
            return expected / await relay(self.bridge, make_posts(posts, "bridge"), expected)
        finally:
            if scraper is not None:
                scraper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scraper

    async def _scrape(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                async with session.get(f"http://{self.listen}/metrics") as response:
                    assert response.status == 200
                    await response.read()
                self.scrapes += 1
                await asyncio.sleep(1.0)


async def compare_ops(emu: EmulatorProcess, db: str, posts: int, runs: int) -> tuple[Side, Side, int]:
    """(bridge with [http] on, not scraped), (the same, /metrics scraped every second),
    alternating within each run; and how many scrapes were made."""
    quiet, scraped = Side("http on", [], []), Side("scraped", [], [])
    async with throwaway(db) as url, BridgeClient(emu, url, listen=f"127.0.0.1:{free_port()}") as br:
        for i in range(runs):  # which side goes first alternates too, so drift hits both alike
            order = [(quiet, False), (scraped, True)]
            for side, scrape in order if i % 2 == 0 else order[::-1]:
                await measure(side, br.run(posts, scrape=scrape), posts * len(emu.chats))
            await emu.reset()
        return quiet, scraped, br.scrapes


def recording_cost_us() -> float:
    """CPU µs of one ``metrics.delivery`` call (what every send pays with or without [http])."""
    m = Metrics()
    n = 20000
    t0 = time.process_time()
    for _ in range(n):
        m.delivery("telegram", "bluesky", "sent", 0.5)
    return (time.process_time() - t0) * 1e6 / n


async def ops_main(args: argparse.Namespace) -> list[str]:
    log_to_file("pipeline-ops")
    emu = await start_emulator(private=args.chats // 2, groups=args.chats - args.chats // 2)
    cost = recording_cost_us()
    lines = [
        "| database | posts × chats | bridge, [http] on | bridge, /metrics scraped every 1 s | scraped / not "
        "| CPU ms/msg not / scraped | metrics recording per send |",
        "|---|---|---|---|---|---|---|",
    ]
    try:
        for db in args.db.split(","):
            quiet, scraped, scrapes = await compare_ops(emu, db, args.posts, args.runs)
            ratio = scraped.median / quiet.median
            verdict = "meets" if ratio >= 0.95 else "MISSES"
            share = cost / 1000 / median(quiet.cpu_ms) * 100
            lines.append(
                f"| {db} | {args.posts} × {args.chats} | {_rates(quiet)} | {_rates(scraped)} ({scrapes} scrapes) "
                f"| {ratio:.3f} ({verdict} ≥ 0.95) | {median(quiet.cpu_ms):.3f} / {median(scraped.cpu_ms):.3f} "
                f"| {cost:.1f} µs ({share:.2f}% of a message's CPU) |"
            )
            print(lines[-1], flush=True)
    finally:
        await emu.stop()
    lines.append("")
    lines.append(
        f"Median of {args.runs} runs, the two sides alternating on one bridge; the scraper runs in the bridge's process, "
        "so its CPU counts against the bridge. Recording (one labelled counter and histogram update per send) is "
        "paid with [http] on or off; its cost is the last column."
    )
    return lines


async def measure(side: Side, run: Awaitable[float], messages: int) -> None:
    cpu = time.process_time()
    side.rates.append(await run)
    side.cpu_ms.append((time.process_time() - cpu) * 1000 / messages)


async def compare(emu: EmulatorProcess, db: str, posts: int, runs: int, profile: str = "") -> tuple[Side, Side, Side, Side]:
    """(bare, one task per chat), (bare, sequential loop), (bare on the bridge's transport, one
    task per chat), (bridge), alternating within each run."""
    bare, sequential, same, bridge = (
        Side("bare", [], []),
        Side("sequential", [], []),
        Side("same", [], []),
        Side("bridge", [], []),
    )
    profiler = cProfile.Profile() if profile else None
    async with (
        throwaway(db) as url,
        BareClient(emu) as b,
        BareClient(emu, "aiohttp") as b2,
        BridgeClient(emu, url) as br,
    ):
        for _ in range(runs):  # alternate, so that drift of the machine hits both sides alike
            await measure(bare, b.run(posts), posts * len(emu.chats))
            await measure(sequential, b.run(posts, sequential=True), posts * len(emu.chats))
            await measure(same, b2.run(posts), posts * len(emu.chats))
            if profiler is not None:
                profiler.enable()
            await measure(bridge, br.run(posts), posts * len(emu.chats))
            if profiler is not None:
                profiler.disable()
            await emu.reset()
    if profiler is not None:
        profiler.dump_stats(f"{profile}.{db}")
    return bare, sequential, same, bridge


def _rates(side: Side) -> str:
    return f"{side.median:.0f} msg/s ({', '.join(f'{x:.0f}' for x in side.rates)})"


def lines_for(db: str, posts: int, chats: int, bare: Side, sequential: Side, same: Side, bridge: Side) -> list[str]:
    ratio = bridge.median / bare.median
    verdict = "meets" if ratio >= 0.8 else "MISSES"
    return [
        f"| {db} | {posts} × {chats} | {_rates(bare)} | {_rates(sequential)} | {_rates(same)} | {_rates(bridge)} "
        f"| {ratio:.2f} ({verdict} ≥ 0.8) | {bridge.median / sequential.median:.2f} | {bridge.median / same.median:.2f} "
        f"| {median(bare.cpu_ms):.2f} / {median(same.cpu_ms):.2f} / {median(bridge.cpu_ms):.2f} |"
    ]


async def main_async(args: argparse.Namespace) -> list[str]:
    logfile = log_to_file("pipeline")
    emu = await start_emulator(private=args.chats // 2, groups=args.chats - args.chats // 2)
    lines = [
        "| database | posts × chats | bare PTB, a task per chat | bare PTB, sequential loop "
        "| bare PTB on the bridge's transport | bridge | bridge / bare (per chat) | bridge / sequential "
        "| bridge / bare on its transport | CPU ms/msg bare / bare on aiohttp / bridge |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    try:
        for db in args.db.split(","):
            sides = await compare(emu, db, args.posts, args.runs, args.profile)
            lines += lines_for(db, args.posts, args.chats, *sides)
            print(lines[-1], flush=True)
    finally:
        await emu.stop()
    lines.append("")
    lines.append(f"Median of {args.runs} runs (each run's figure in brackets); warm-up excluded; log at info to {logfile}.")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=200, help="posts per run")
    parser.add_argument("--chats", type=int, default=10, help="chats following the author (half private, half groups)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--db", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument("--profile", default="", help="write a cProfile of the bridge's runs to FILE.<db>")
    parser.add_argument("--no-save", action="store_true", help="print only; do not append to RESULTS.md")
    parser.add_argument(
        "--ops", action="store_true", help="the bridge with [http] on, /metrics scraped every second or not (overhead)"
    )
    args = parser.parse_args(argv)
    if args.ops:
        lines = asyncio.run(ops_main(args))
        publish("Operations overhead ([http] on, /metrics scraped every second)", lines, save=not args.no_save)
        return
    lines = asyncio.run(main_async(args))
    publish("Pipeline overhead (bridge vs bare python-telegram-bot)", lines, save=not args.no_save)


if __name__ == "__main__":
    main()
