"""Hostile posts through the real renderers, client libraries and emulators (property-based):
every generated post (lone surrogates, zero-width and RTL controls, HTML and Markdown, fake
mentions, broken link facets, 10,000 characters) is accepted by the Telegram emulator (which
parses HTML as strictly as Telegram) and the Discord emulator (which enforces Discord's
limits); a reader sees the text as written (HTML and Markdown shown verbatim, nothing lost:
split on Telegram, shortened with a link to the original on Discord); no link points anywhere
the post did not link to; no mention pings anyone."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from adapters.discord import DiscordAdapter
from adapters.telegram import TelegramAdapter
from adapters.telegram.pacing import Pacer
from bridge.intake.sanitize import well_formed
from bridge.model import Author, Batch, Button, ButtonAction, ChatEvent, ChatTarget, Delivery, Post, Ref, Source
from tests.emulators.discord import DiscordEmulator
from tests.emulators.telegram import TelegramEmulator
from tests.faults.chat_world import DISCORD_TOKEN, TELEGRAM_TOKEN
from tests.faults.hostile import hostile_posts, visible
from tests.faults.loop_runner import LoopRunner

_ESCAPED = re.compile(r"\\([^\sA-Za-z0-9])")
_MASKED_LINK = re.compile(r"(?<!\\)\[((?:\\.|[^\]\\])*)\]\([^)\s]*\)")
_AUTOLINK = re.compile(r"<((?:https?|javascript):[^>\s]*)>")


def _as_read(markdown: str) -> str:
    """Discord markdown as a reader sees it: [label](url) shows the label, <url> the url."""
    return _AUTOLINK.sub(r"\1", _MASKED_LINK.sub(r"\1", markdown))


class QuietHost:
    """The core as a chat adapter sees it, for sends only."""

    def __init__(self) -> None:
        self.log = logging.getLogger("tests.faults.host")
        self.state: dict[str, str] = {}

    async def load_state(self, key: str) -> str | None:
        return self.state.get(key)

    async def save_state(self, key: str, value: str | None) -> None:
        self.state.pop(key, None) if value is None else self.state.__setitem__(key, value)

    def sources(self) -> frozenset[Source]:
        return frozenset()

    async def sources_changed(self) -> None:
        await asyncio.Event().wait()

    async def load_cursor(self, key: str) -> str | None:
        return None

    async def ingest(self, batch: Batch) -> None:
        return None

    async def handle(self, event: ChatEvent) -> Any:
        raise AssertionError("no events expected")

    async def link_message(self, target: ChatTarget, message_id: str, token: str) -> None:
        return None

    def workers(self) -> int:
        return 1  # one process sends: the per-bot limits are not divided

    async def listen(self, name: str, run: Callable[[], Awaitable[Any]]) -> Any:
        return await run()  # one process: it holds every listener

    async def chat_moved(self, old: ChatTarget, new: ChatTarget) -> None:
        return None

    async def destination_unavailable(self, target: ChatTarget, reason: str) -> None:
        raise AssertionError(f"{target} reported unavailable: {reason}")

    def pacing_wait(self, seconds: float) -> None:
        return None


@dataclass
class Wire:
    tg: TelegramEmulator
    dc: DiscordEmulator
    telegram: TelegramAdapter
    discord: DiscordAdapter
    channel: int


BUTTONS = (
    Button(ButtonAction.OPEN, "Open", url="https://bsky.app/profile/mallory.test/post/1"),
    Button(ButtonAction.LIKE, "Like", token="like:1"),
)
_keys = itertools.count(1)


async def _start() -> Wire:
    tg = TelegramEmulator(token=TELEGRAM_TOKEN)
    await tg.start()
    dc = DiscordEmulator(token=DISCORD_TOKEN)
    await dc.start()
    channel = dc.add_channel(dc.add_guild("Acme"), "feed")
    telegram = TelegramAdapter({"token": tg.token, "api_url": tg.url, "poll_timeout": 1}, QuietHost())
    # Rendering is under test here, not pacing (tests/adapters/telegram covers it): one
    # private chat per example would otherwise cost a second per message.
    telegram._pacer = Pacer(per_second=10_000, private_interval=0)
    await telegram.start()
    discord = DiscordAdapter({"token": dc.token, "api_url": dc.api_url, "guild_ready_timeout": 0.1}, QuietHost())
    await discord.start()
    await dc.wait_connected()
    return Wire(tg, dc, telegram, discord, channel)


async def _stop(w: Wire) -> None:
    await w.discord.stop()
    await w.telegram.stop()
    await w.dc.stop()
    await w.tg.stop()


@pytest.fixture(scope="module")
def wire() -> Iterator[tuple[LoopRunner, Wire]]:
    runner = LoopRunner()
    w = runner.run(_start())
    try:
        yield runner, w
    finally:
        runner.run(_stop(w))
        runner.close()


def allowed_urls(post: Post) -> set[str]:
    return {post.url, post.author.url, *(link.url for link in post.links)}


async def _through_telegram(w: Wire, post: Post) -> None:
    user = w.tg.add_user("Reader")
    chat = w.tg.private_chat(user)
    n = next(_keys)
    await w.telegram.send(Delivery(n, f"k{n}", post, ChatTarget("telegram", str(chat.id)), BUTTONS))
    messages = w.tg.messages(chat.id)
    assert messages, "nothing reached the chat"
    shown = "".join(m.text for m in messages)
    assert visible(post.text) in visible(shown)  # verbatim: no markup interpreted, nothing lost
    for m in messages:
        for entity in m.entities:
            if entity["type"] == "text_link":
                assert entity["url"] in allowed_urls(post) or entity["url"].startswith("https://bsky.app/"), entity
            assert entity["type"] not in ("pre", "code", "spoiler", "custom_emoji"), entity


async def _through_discord(w: Wire, post: Post) -> None:
    before = len(w.dc.bot_messages(w.channel))
    n = next(_keys)
    await w.discord.send(Delivery(n, f"k{n}", post, ChatTarget("discord", str(w.channel)), BUTTONS))
    sent_all = w.dc.bot_messages(w.channel)[before:]
    assert 1 <= len(sent_all) <= 5  # a long text continues in up to 5 messages
    for sent in sent_all:
        assert sent.payload.get("allowed_mentions") == {"parse": []}  # @everyone and <@id> ping no one
    description = "".join(m.embeds[0].get("description") or "" for m in sent_all)  # read in order
    text = visible(post.text)
    if not re.search(r"(?<!\\)\[Read the full post\]\(", description):
        # links become [label](url) or <url>; outside of them the text reads as written
        assert text in visible(_ESCAPED.sub(r"\1", _as_read(description))), (post.text, description)
    else:
        # beyond 5 messages, shortened: what is shown is the post's own text, and the original
        # is a click away
        assert len(sent_all) == 5
        head = visible(_ESCAPED.sub(r"\1", _as_read(description))).split("…", 1)[0]
        assert head in text, (head[:200], text[:200])
        assert post.url in description
    # A "[label](url)" typed in the post must not become a link: its bracket is escaped.
    unescaped_links = re.findall(r"(?<!\\)\[[^\]]*\]\((\S+?)\)", description)
    for url in unescaped_links:
        assert any(url.startswith(u.replace(")", "%29").replace(" ", "%20")[:30]) for u in allowed_urls(post)), url


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(post=hostile_posts())
def test_hostile_posts_render_verbatim_and_safely(wire: tuple[LoopRunner, Wire], post: Post) -> None:
    runner, w = wire
    # The core hands adapters posts as it stored them: lone surrogates already replaced
    # (bridge.intake.sanitize.well_formed, applied at ingest; tests/faults/test_hostile_core.py checks that part).
    post = well_formed(post)
    runner.run(_through_telegram(w, post))
    runner.run(_through_discord(w, post))


def test_a_long_word_is_cut_not_dropped_on_discord(wire: tuple[LoopRunner, Wire]) -> None:
    runner, w = wire
    post = Post(
        ref=Ref("bluesky", "at://did:plc:mallory/app.bsky.feed.post/2"),
        author=Author("did:plc:mallory", "mallory.test", "Mallory"),
        text="see " + "x" * 10_000,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        url="https://bsky.app/profile/mallory.test/post/2",
    )
    before = len(w.dc.bot_messages(w.channel))
    runner.run(w.discord.send(Delivery(9999, "k9999", post, ChatTarget("discord", str(w.channel)), BUTTONS)))
    sent = w.dc.bot_messages(w.channel)[before:]
    assert 3 <= len(sent) <= 5  # 10,004 characters: continued in further messages (a word is cut at 4096)
    assert "x" * 10_000 in "".join(m.embeds[0].get("description") or "" for m in sent)


def test_a_masked_link_with_spaces_is_not_a_link(wire: tuple[LoopRunner, Wire]) -> None:
    runner, w = wire
    post = Post(
        ref=Ref("bluesky", "at://did:plc:mallory/app.bsky.feed.post/3"),
        author=Author("did:plc:mallory", "mallory.test", "Mallory"),
        text="your invoice: [open your account](https://evil.example/steal)",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        url="https://bsky.app/profile/mallory.test/post/3",
    )
    before = len(w.dc.bot_messages(w.channel))
    runner.run(w.discord.send(Delivery(9998, "k9998", post, ChatTarget("discord", str(w.channel)), BUTTONS)))
    [sent] = w.dc.bot_messages(w.channel)[before:]
    assert not _MASKED_LINK.search(sent.embeds[0].get("description") or "")  # the post has no link facet
