"""Find, look, follow, end to end: the real core with the Bluesky adapter against the reference
AT Protocol stack (its AppView asking tests/atproto/search.py for actor and post search, as
bsky.app's does), and the Telegram and Discord adapters against their emulators.

The story a new sales team lives: /find people by words in their names and bios, look at
their recent posts (nothing counted as delivered), follow one into the room (the next post
arrives), have the team account follow one (senders only); /search once, then Watch here after a
restart; page through many results."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.bluesky import BlueskyAdapter
from adapters.discord import DiscordAdapter
from adapters.telegram import TelegramAdapter
from bridge.app import Bridge
from bridge.config import config_from_dict
from bridge.storage.models import DeliveryRow
from tests.adapters.bluesky.conftest import Team, bluesky_settings
from tests.atproto.harness import AtprotoStack, provision
from tests.atproto.search import SearchService
from tests.emulators.discord import DiscordEmulator, SentMessage
from tests.emulators.telegram import TelegramEmulator
from tests.faults.bridge_process import run_cli

CLASSES = {"bluesky": BlueskyAdapter, "telegram": TelegramAdapter, "discord": DiscordAdapter}


@pytest.fixture(scope="module")
def search() -> Iterator[SearchService]:
    service = SearchService().start()
    try:
        yield service
    finally:
        service.close()


@pytest.fixture(scope="module")
def atproto(search: SearchService) -> Iterator[AtprotoStack]:
    """A stack of this module's own: its AppView searches through ``search``."""
    stack = AtprotoStack.start(provision(), search_url=search.url)
    search.pds, search.appview = stack.pds, stack.appview
    try:
        yield stack
    finally:
        stack.close()


class World:
    def __init__(self, tg: TelegramEmulator, dc: DiscordEmulator, atproto: AtprotoStack, team: Team, db: str) -> None:
        self.tg, self.dc, self.atproto, self.team, self.db = tg, dc, atproto, team, db
        self.tg_boss = tg.add_user("Boss", "boss")
        self.tg_member = tg.add_user("Mallory", "mallory")
        self.tg_sender = tg.add_user("Sam", "sam")
        self.group = tg.add_group("Sales", admins=[self.tg_boss])
        guild = dc.add_guild("Acme")
        self.dc_admin = dc.add_member(guild, "ann", manage_channels=True)
        self.dc_member = dc.add_member(guild, "mallory")
        self.dc_feed = dc.add_channel(guild, "leads")
        self.bridge: Bridge | None = None

    async def start(self) -> Bridge:
        await self.stop()
        config = config_from_dict(
            {
                "database": {"url": self.db},
                "bridge": {"admins": [], "senders": [f"telegram:{self.tg_sender['id']}"]},
                "bluesky": bluesky_settings(self.atproto, self.team),
                "telegram": {"token": self.tg.token, "api_url": self.tg.url, "poll_timeout": 1},
                "discord": {"token": self.dc.token, "api_url": self.dc.api_url, "guild_ready_timeout": 0.1},
            },
            adapter_classes=CLASSES,
        )
        self.bridge = Bridge(config, adapter_classes=CLASSES)
        await self.bridge.start()
        await self.dc.wait_connected()
        return self.bridge

    async def stop(self) -> None:
        if self.bridge is not None:
            await self.bridge.stop()
            self.bridge = None

    # --- Telegram, as people in the group meet it --------------------------------------------

    async def say(self, user: dict[str, Any], text: str) -> Any:
        before = len(self.tg.messages(self.group.id))
        self.tg.send_text(self.group.id, user, text)
        return (await self.tg.wait_messages(self.group.id, before + 1, timeout=30))[-1]

    async def press(self, user: dict[str, Any], message: Any, label: str) -> dict[str, Any]:
        data = next(b["callback_data"] for b in message.buttons if b["text"] == label)
        before = len(self.tg.callback_answers)
        self.tg.press(self.group.id, user, message.message_id, data)
        await self.tg.wait_until(lambda: len(self.tg.callback_answers) > before, timeout=30)
        return self.tg.callback_answers[-1]

    # --- Discord ---------------------------------------------------------------------------

    async def slash(self, user: int, name: str, **options: Any) -> dict[str, Any]:
        return await self.dc.wait_shown(await self.dc.slash(self.dc_feed, user, name, **options), timeout=30)

    async def dc_press(self, user: int, shown: dict[str, Any], label: str) -> dict[str, Any]:
        message = SentMessage({"id": "1", **shown}, {})
        custom_id = next(b["custom_id"] for b in message.buttons() if b["label"] == label)
        return await self.dc.wait_shown(await self.dc.press(self.dc_feed, user, message, custom_id), timeout=30)


def labels(shown: dict[str, Any]) -> list[str]:
    return [c["label"] for row in shown.get("components") or [] for c in row.get("components", [])]


@pytest.fixture
async def world(atproto: AtprotoStack, team: Team, tmp_path: Path) -> AsyncIterator[World]:
    async with TelegramEmulator(token="55555:LOOKUP-token") as tg:
        dc = DiscordEmulator(token="lookup-discord-token")
        await dc.start()
        w = World(tg, dc, atproto, team, f"sqlite://{tmp_path}/bridge.sqlite3")
        try:
            yield w
        finally:
            await w.stop()
            await dc.stop()


async def test_find_look_and_follow_on_telegram(world: World, atproto: AtprotoStack, search: SearchService) -> None:
    w = world
    ada = await atproto.create_account("ada", "Ada Quinn", "CEO at Helix Biotech\nBoston")
    bob = await atproto.create_account("bob", "Bob Stone", "Investor; biotech, ex-CEO")
    await atproto.create_account("cyd", "Cyd Moss", "Gardener and CEO of nothing")
    for n in range(3):
        await atproto.post(ada, f"Helix trial update {n}")
    await atproto.process_all()
    bridge = await w.start()

    # Anyone finds people by words in their names and bios (not in their handles).
    found = await w.say(w.tg_member, "/find CEO biotech")
    assert ("app.bsky.unspecced.searchActorsSkeleton", "CEO biotech") in search.calls
    assert "Ada Quinn (@" in found.text and "– CEO at Helix Biotech" in found.text and "Boston" not in found.text
    assert "Bob Stone (@" in found.text and "Cyd Moss" not in found.text
    who_is = {1: ada, 2: bob} if found.text.index("Ada Quinn") < found.text.index("Bob Stone") else {1: bob, 2: ada}
    n_ada = next(n for n, a in who_is.items() if a is ada)
    assert [b["text"] for b in found.buttons][:3] == ["1 Follow here", "1 Recent", "1 Follow on bluesky"]

    # Recent: anyone; the posts arrive as relays do, and the ledger does not change.
    deliveries = await DeliveryRow.all().count()
    before = len(w.tg.messages(w.group.id))
    answer = await w.press(w.tg_member, found, f"{n_ada} Recent")
    assert "the last 3 posts of @" in answer["text"], answer
    shown = [m.text for m in await w.tg.wait_messages(w.group.id, before + 3)][before:]
    assert all(f"Helix trial update {n}" in t for n, t in enumerate(shown)), shown
    assert await DeliveryRow.all().count() == deliveries

    # Follow on Bluesky: refused for a non-sender (who may is said), done for a sender.
    refused = await w.press(w.tg_member, found, f"{n_ada} Follow on bluesky")
    assert refused["show_alert"] and "Only the bridge's senders" in refused["text"], refused
    done = await w.press(w.tg_sender, found, f"{n_ada} Follow on bluesky")
    assert "Now following @" in done["text"], done
    await atproto.process_all()
    follows = await atproto.query_appview("app.bsky.graph.getFollows", actor=w.team.account.did)
    assert ada.did in [f["did"] for f in follows["follows"]]

    # Follow here: room admins only; then the next post arrives in the room.
    refused = await w.press(w.tg_member, found, f"{n_ada} Follow here")
    assert refused["show_alert"] and "Only this room's admins" in refused["text"], refused
    before = len(w.tg.messages(w.group.id))
    await w.press(w.tg_boss, found, f"{n_ada} Follow here")
    followed = (await w.tg.wait_messages(w.group.id, before + 1))[-1]
    assert f"Following @{ada.handle} on bluesky here" in followed.text
    await atproto.post(ada, "Helix phase 3 starts today")
    await atproto.process_all()
    await bridge.networks["bluesky"].poll_once()  # type: ignore[attr-defined]
    relayed = (await w.tg.wait_messages(w.group.id, before + 2, timeout=30))[-1]
    assert "Helix phase 3 starts today" in relayed.text

    # /who says the team follows it and which room relays it.
    who = await w.say(w.tg_member, f"/who {ada.handle}")
    assert "CEO at Helix Biotech" in who.text and "The team account follows it." in who.text
    assert f"Relayed to: telegram:{w.group.id}." in who.text


async def test_search_watch_after_a_restart_and_paging_on_discord(world: World, atproto: AtprotoStack) -> None:
    w = world
    author = await atproto.create_account("gene", "Gene Lab", "gene therapy news")
    await atproto.post(author, "Gene therapy approval expected this week")
    await atproto.post(author, "Nothing to see")
    for n in range(7):
        await atproto.create_account(f"pager{n}", f"Pager {n}", "marine zymurgy buff")
    await atproto.process_all()
    await w.start()

    shown = await w.slash(w.dc_member, "search", query="gene therapy")
    assert "Gene therapy approval expected this week" in shown["content"] and "Nothing to see" not in shown["content"]
    assert labels(shown) == ["Watch here"]

    await w.start()  # a restart between the search and the press
    refused = await w.dc_press(w.dc_member, shown, "Watch here")
    assert "Only this room's admins" in refused["content"]
    done = await w.dc_press(w.dc_admin, shown, "Watch here")
    assert "Watching 'gene therapy' on bluesky here" in done["content"], done

    first = await w.slash(w.dc_member, "find", words="marine zymurgy")
    assert "(1-5)" in first["content"] and "Next ›" in labels(first) and "‹ Previous" not in labels(first)
    second = await w.dc_press(w.dc_member, first, "Next ›")
    assert "(6-7)" in second["content"] and "‹ Previous" in labels(second) and "Next ›" not in labels(second)
    names = {
        line.split(" (@")[0].split(". ", 1)[1]
        for line in (first["content"] + "\n" + second["content"]).splitlines()
        if " (@" in line
    }
    assert names == {f"Pager {n}" for n in range(7)}
    back = await w.dc_press(w.dc_member, second, "‹ Previous")
    assert "(1-5)" in back["content"]


async def test_the_four_look_ups_from_the_terminal(atproto: AtprotoStack, team: Team, tmp_path: Path) -> None:
    ada = await atproto.create_account("tada", "Tada Rune", "Chief scientist, protein folding\nsecond line")
    for n in range(4):
        await atproto.post(ada, f"folding note {n}\nwith a second line")
    await atproto.process_all()
    config = tmp_path / "bridge.toml"
    config.write_text(
        f'[database]\nurl = "sqlite://{tmp_path}/cli.sqlite3"\n'
        f'[bluesky]\nservice = "{atproto.pds}"\nidentifier = "{team.handle}"\npassword = "{team.app_password}"\n'
    )

    found = await asyncio.to_thread(run_cli, config, "find", "protein", "folding")
    assert found.returncode == 0, found.stderr
    assert f"1. Tada Rune (@{ada.handle}) – Chief scientist, protein folding" in found.stdout

    who = await asyncio.to_thread(run_cli, config, "who", ada.handle)
    assert who.returncode == 0, who.stderr
    assert "Chief scientist, protein folding\nsecond line" in who.stdout and "4 posts" in who.stdout
    assert "The team account does not follow it." in who.stdout and "No room relays it." in who.stdout

    recent = await asyncio.to_thread(run_cli, config, "recent", ada.handle, "2")
    assert recent.returncode == 0, recent.stderr
    assert f"The last 2 posts of @{ada.handle} on bluesky, oldest first:" in recent.stdout
    assert "  folding note 2\n  with a second line" in recent.stdout and "folding note 1" not in recent.stdout

    searched = await asyncio.to_thread(run_cli, config, "search", "folding", "note", "3")
    assert searched.returncode == 0, searched.stderr
    assert "The newest 3 posts matching 'folding note' on bluesky" in searched.stdout
    assert "`bridge watch 'folding note' --to <chat>` relays new ones." in searched.stdout

    bad = await asyncio.to_thread(run_cli, config, "recent", ada.handle, "50")
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1] == "error: Ask for 1 to 20 posts, not 50."
    missing = await asyncio.to_thread(run_cli, config, "who", "nobody-here.test")
    assert missing.returncode == 1 and "no Bluesky account @nobody-here.test" in missing.stderr


async def test_the_adapter_looks_up_without_start(atproto: AtprotoStack, make_adapter: Any, team: Team) -> None:
    kim = await atproto.create_account("kim", "Kim Vale", "Harpsichord restorer, Leipzig")
    await atproto.create_account("lou", "Lou Vale", "harpsichord tuner")
    await atproto.post(kim, "A 1740 harpsichord, restored")
    await atproto.follow(team.account, kim)
    await atproto.process_all()
    adapter, _ = await make_adapter(start=False)

    first = await adapter.find_accounts("harpsichord", 1)
    assert [p.author.handle for p in first.profiles] == [kim.handle] and first.next_cursor
    [p] = first.profiles
    assert p.author.id == kim.did and p.author.display_name == "Kim Vale" and p.bio.startswith("Harpsichord restorer")
    assert p.followed_by_team is True
    second = await adapter.find_accounts("harpsichord", 1, first.next_cursor)
    assert [q.author.display_name for q in second.profiles] == ["Lou Vale"] and second.profiles[0].followed_by_team is False

    profile = await adapter.profile(f"@{kim.handle}")
    assert (profile.followers, profile.posts, profile.followed_by_team) == (1, 1, True)
    [post] = await adapter.search_posts("1740 harpsichord", 5)
    assert post.text == "A 1740 harpsichord, restored" and post.author.id == kim.did
    with pytest.raises(ValueError, match="no word"):
        await adapter.find_accounts(" ?! ", 5)
    assert adapter.lookup_cost("find", 5) == ""
