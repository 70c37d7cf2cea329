"""Permission abuse over the real Telegram and Discord adapters and emulators: people who are
not senders try every action that speaks as the team account (reply, /post, /dm, the Like,
Repost, Follow and Reply buttons, the Reply modal), a room admin who is not a sender tries too,
and a sender presses a button from another chat (a forwarded message). Every attempt is
refused with a line that says who may, recorded in outbound_actions as refused with who tried,
and nothing reaches the network."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.discord import DiscordAdapter
from adapters.telegram import TelegramAdapter
from bridge.app import Bridge
from bridge.config import config_from_dict
from bridge.storage.store import Store
from tests.emulators.discord import DiscordEmulator
from tests.emulators.telegram import TelegramEmulator
from tests.fakes import FakeNetwork
from tests.faults.chat_world import DISCORD_TOKEN, TELEGRAM_TOKEN

CLASSES = {"fakenet": FakeNetwork, "telegram": TelegramAdapter, "discord": DiscordAdapter}
REFUSAL = "Only the bridge's senders"


@dataclass
class Rooms:
    tg: TelegramEmulator
    dc: DiscordEmulator
    tg_boss: dict[str, Any]  # administrator of the Telegram group, not a sender
    tg_member: dict[str, Any]
    tg_sender: dict[str, Any]
    dc_admin: int  # Manage Channels, not a sender
    dc_member: int
    dc_sender: int
    dc_feed: int
    dc_other: int


@pytest.fixture
async def rooms() -> AsyncIterator[Rooms]:
    async with TelegramEmulator(token=TELEGRAM_TOKEN) as tg:
        dc = DiscordEmulator(token=DISCORD_TOKEN)
        await dc.start()
        try:
            guild = dc.add_guild("Acme")
            yield Rooms(
                tg=tg,
                dc=dc,
                tg_boss=tg.add_user("Boss", "boss"),
                tg_member=tg.add_user("Mallory", "mallory"),
                tg_sender=tg.add_user("Sam", "sam"),
                dc_admin=dc.add_member(guild, "ann", manage_channels=True),
                dc_member=dc.add_member(guild, "mallory"),
                dc_sender=dc.add_member(guild, "sam"),
                dc_feed=dc.add_channel(guild, "feed"),
                dc_other=dc.add_channel(guild, "other"),
            )
        finally:
            await dc.stop()


async def start_bridge(r: Rooms, db: str) -> Bridge:
    config = config_from_dict(
        {
            "database": {"url": db},
            "bridge": {"admins": [], "senders": [f"telegram:{r.tg_sender['id']}", f"discord:{r.dc_sender}"]},
            "fakenet": {},
            "telegram": {"token": r.tg.token, "api_url": r.tg.url, "poll_timeout": 1},
            "discord": {"token": r.dc.token, "api_url": r.dc.api_url, "guild_ready_timeout": 0.1},
        },
        adapter_classes=CLASSES,
    )
    bridge = Bridge(config, adapter_classes=CLASSES)
    await bridge.start()
    return bridge


async def test_non_senders_are_refused_everything_on_telegram_and_discord(rooms: Rooms, tmp_path: Any) -> None:
    r = rooms
    group = r.tg.add_group("Sales", admins=[r.tg_boss])
    sender_chat = r.tg.private_chat(r.tg_sender)
    bridge = await start_bridge(r, f"sqlite://{tmp_path}/bridge.sqlite3")
    try:
        net: FakeNetwork = bridge.networks["fakenet"]  # type: ignore[assignment]
        await r.dc.wait_connected()
        # The rooms follow an account (room admins may); a post is relayed with its buttons.
        r.tg.send_text(group.id, r.tg_boss, "/follow alice.fake")
        await r.tg.wait_messages(group.id, 1)
        shown = await r.dc.wait_shown(await r.dc.slash(r.dc_feed, r.dc_admin, "follow", handle="alice.fake"))
        assert "alice.fake" in shown["content"]
        await net.publish("alice.fake", "our pricing is unfair")
        tg_post = (await r.tg.wait_messages(group.id, 2))[-1]
        [dc_post] = await r.dc.wait_sent(r.dc_feed, 1)
        tg_data = {b["text"]: b.get("callback_data") for b in tg_post.buttons}
        dc_ids = {b["label"]: b.get("custom_id") for b in dc_post.buttons()}

        # --- Telegram: a member, and the group's own admin (not a sender) ----------------------
        tg_answers = 0
        for user in (r.tg_member, r.tg_boss):
            for text in ("/post we are giving away free licences", "/dm bob.fake send me your password"):
                r.tg.send_text(group.id, user, text)
            r.tg.send_text(group.id, user, "yes, it is unfair", reply_to=tg_post.message_id)
            tg_answers += 3
        texts = [m.text for m in await r.tg.wait_messages(group.id, 2 + tg_answers)][2:]
        assert len(texts) == tg_answers and all(REFUSAL in t for t in texts), texts
        for label in ("Like", "Repost", "Follow", "Reply"):
            r.tg.press(group.id, r.tg_member, tg_post.message_id, tg_data[label])
        # a sender presses the buttons of a message forwarded into another chat
        r.tg.press(sender_chat.id, r.tg_sender, tg_post.message_id, tg_data["Like"])
        await r.tg.wait_until(lambda: len(r.tg.callback_answers) == 5)
        alerts = r.tg.callback_answers
        assert all(a["show_alert"] for a in alerts), alerts
        texts = sorted(a["text"] for a in alerts)
        assert sum(REFUSAL in t for t in texts) == 4, texts
        assert sum("another chat" in t for t in texts) == 1, texts

        # --- Discord: a member, and a channel admin (not a sender) -----------------------------
        records = []
        for user in (r.dc_member, r.dc_admin):
            records.append(await r.dc.slash(r.dc_feed, user, "post", text="free licences for all"))
            records.append(await r.dc.slash(r.dc_feed, user, "dm", handle="bob.fake", text="hi"))
            for label in ("Like", "Repost", "Follow", "Reply"):
                records.append(await r.dc.press(r.dc_feed, user, dc_post, dc_ids[label]))
        records.append(await r.dc.press(r.dc_other, r.dc_sender, dc_post, dc_ids["Like"]))  # from another channel
        for record in records:
            message = await r.dc.wait_shown(record)
            assert record.is_ephemeral(message)  # the refusal is shown to them only
            assert REFUSAL in message["content"] or "another" in message["content"], message
        before = len(r.dc.bot_messages(r.dc_feed))
        await r.dc.user_message(r.dc_feed, r.dc_member, f"<@{r.dc.application_id}> agreed", reply_to=dc_post.id)
        refusal = (await r.dc.wait_sent(r.dc_feed, before + 1))[-1]
        assert REFUSAL in refusal.message["content"]

        recorded = await Store().actions(limit=200)
    finally:
        await bridge.stop()

    assert net.actions == []  # nothing was said as the team account
    assert {a["status"] for a in recorded} == {"refused"}
    actors = {a["actor"] for a in recorded}
    assert {
        f"telegram:{r.tg_member['id']}",
        f"telegram:{r.tg_boss['id']}",
        f"discord:{r.dc_member}",
        f"discord:{r.dc_admin}",
    } <= actors
    by = {(a["actor"], a["action"]) for a in recorded}
    for who in (f"telegram:{r.tg_member['id']}", f"discord:{r.dc_member}"):
        for action in ("post", "dm", "reply", "like", "repost", "follow"):
            assert (who, action) in by, (who, action)
    # the Telegram sender's press from another chat and the Discord one are refused and recorded too
    assert (f"telegram:{r.tg_sender['id']}", "like") in by
    assert (f"discord:{r.dc_sender}", "like") in by
