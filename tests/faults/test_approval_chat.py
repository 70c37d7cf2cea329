"""Approval as a team meets it, over the real Telegram and Discord adapters and emulators: a
sender's reply waits as a draft in the room; a sender's Approve is refused; an approver's sends
it once (two presses at the same moment: one reply); Edit (ForceReply / modal) then Approve
sends the edited text; Reject sends nothing; a draft from before a restart is approved after
it, edited in place; /audit and ``bridge audit --csv`` (the real command line) name who asked
and who approved."""

from __future__ import annotations

import asyncio
import csv
import io
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.discord import DiscordAdapter
from adapters.telegram import TelegramAdapter
from bridge.app import Bridge
from bridge.config import config_from_dict
from tests.emulators.discord import DiscordEmulator, SentMessage
from tests.emulators.telegram import TelegramEmulator
from tests.fakes import FakeNetwork
from tests.faults.chat_world import DISCORD_TOKEN, TELEGRAM_TOKEN

CLASSES = {"fakenet": FakeNetwork, "telegram": TelegramAdapter, "discord": DiscordAdapter}


@pytest.fixture
async def world() -> AsyncIterator[tuple[TelegramEmulator, DiscordEmulator]]:
    async with TelegramEmulator(token=TELEGRAM_TOKEN) as tg:
        dc = DiscordEmulator(token=DISCORD_TOKEN)
        await dc.start()
        try:
            yield tg, dc
        finally:
            await dc.stop()


def _config(
    tg: TelegramEmulator, dc: DiscordEmulator, db: str, admins: list[str], senders: list[str], approvers: list[str]
) -> dict:
    return {
        "database": {"url": db},
        "bridge": {"admins": admins, "senders": senders, "approvers": approvers},
        "fakenet": {},
        "telegram": {"token": tg.token, "api_url": tg.url, "poll_timeout": 1},
        "discord": {"token": dc.token, "api_url": dc.api_url, "guild_ready_timeout": 0.1},
    }


async def _start(data: dict) -> Bridge:
    bridge = Bridge(config_from_dict(data, adapter_classes=CLASSES), adapter_classes=CLASSES)
    await bridge.start()
    return bridge


def _latest(tg: TelegramEmulator, chat: int, start: str) -> Any:
    found = [m for m in tg.messages(chat) if m.text.startswith(start)]
    return found[-1] if found else None


async def test_a_team_approves_edits_and_rejects_drafts_on_telegram_across_a_restart(
    world: tuple[TelegramEmulator, DiscordEmulator], tmp_path: Path
) -> None:
    tg, dc = world
    boss, sam, lea = tg.add_user("Boss", "boss"), tg.add_user("Sam", "sam"), tg.add_user("Lea", "lea")
    group = tg.add_group("Sales", admins=[boss])
    db = f"sqlite://{tmp_path}/bridge.sqlite3"
    data = _config(
        tg, dc, db, [f"telegram:{boss['id']}"], [f"telegram:{sam['id']}"], [f"telegram:{lea['id']}", f"telegram:{boss['id']}"]
    )
    bridge = await _start(data)
    net: FakeNetwork = bridge.networks["fakenet"]  # type: ignore[assignment]
    try:
        tg.send_text(group.id, boss, "/follow alice.fake")
        tg.send_text(group.id, boss, "/approval on")
        await tg.wait_until(lambda: _latest(tg, group.id, "Approval on") is not None)
        await net.publish("alice.fake", "anyone tried the new pricing?")
        await tg.wait_until(lambda: any("new pricing" in m.text for m in tg.messages(group.id)))
        post = next(m for m in tg.messages(group.id) if "new pricing" in m.text)

        # Sam's reply waits as a draft: who, where, the length check, three buttons.
        tg.send_text(group.id, sam, "Yes! DM us for a quote", reply_to=post.message_id)
        await tg.wait_until(lambda: _latest(tg, group.id, "Draft #1") is not None)
        draft = _latest(tg, group.id, "Draft #1")
        assert "reply on fakenet by @sam (telegram:" in draft.text and "To: https://fake.example/" in draft.text
        assert "Length: 22 of 300 characters, fits" in draft.text
        buttons = {b["text"]: b["callback_data"] for b in draft.buttons}
        assert set(buttons) == {"Approve", "Edit", "Reject"}
        assert net.actions == []

        tg.press(group.id, sam, draft.message_id, buttons["Approve"])  # a sender, not an approver
        await tg.wait_until(lambda: len(tg.callback_answers) == 1)
        assert tg.callback_answers[0]["show_alert"] and "Only the bridge's approvers" in tg.callback_answers[0]["text"]
        # Two approvers press at the same moment: one reply.
        tg.press(group.id, lea, draft.message_id, buttons["Approve"])
        tg.press(group.id, boss, draft.message_id, buttons["Approve"])
        await tg.wait_until(lambda: len(tg.callback_answers) == 3)
        assert net.actions == [("reply", net.published[0].ref.id, "Yes! DM us for a quote")]
        draft = _latest(tg, group.id, "Draft #1")
        assert "Approved by @" in draft.text and "sent: https://fake.example/out" in draft.text and draft.buttons == []

        # Edit (ForceReply prompt) then Approve sends the edited text.
        tg.send_text(group.id, sam, "we're way cheaper than Globex", reply_to=post.message_id)
        await tg.wait_until(lambda: _latest(tg, group.id, "Draft #2") is not None)
        draft2 = _latest(tg, group.id, "Draft #2")
        b2 = {b["text"]: b["callback_data"] for b in draft2.buttons}
        tg.press(group.id, lea, draft2.message_id, b2["Edit"])
        await tg.wait_until(lambda: _latest(tg, group.id, "New text for draft #2") is not None)
        prompt = _latest(tg, group.id, "New text for draft #2")
        assert prompt.reply_markup and prompt.reply_markup.get("force_reply")
        tg.send_text(group.id, lea, "Happy to walk you through our pricing: DM us.", reply_to=prompt.message_id)
        await tg.wait_until(lambda: "Text: Happy to walk you" in _latest(tg, group.id, "Draft #2").text)
        assert _latest(tg, group.id, "Draft #2").message_id == draft2.message_id  # edited in place
        tg.press(group.id, lea, draft2.message_id, b2["Approve"])
        await tg.wait_until(lambda: len(net.actions) == 2)
        assert net.actions[-1][2] == "Happy to walk you through our pricing: DM us."

        # Reject asks for a reason and sends nothing.
        tg.send_text(group.id, sam, "lol", reply_to=post.message_id)
        await tg.wait_until(lambda: _latest(tg, group.id, "Draft #3") is not None)
        draft3 = _latest(tg, group.id, "Draft #3")
        b3 = {b["text"]: b["callback_data"] for b in draft3.buttons}
        tg.press(group.id, boss, draft3.message_id, b3["Reject"])
        await tg.wait_until(lambda: _latest(tg, group.id, "Why is draft #3 rejected?") is not None)
        prompt = _latest(tg, group.id, "Why is draft #3 rejected?")
        tg.send_text(group.id, boss, "not our tone", reply_to=prompt.message_id)
        await tg.wait_until(lambda: "Rejected by @boss" in _latest(tg, group.id, "Draft #3").text)
        assert "not our tone. Nothing was sent." in _latest(tg, group.id, "Draft #3").text

        # A draft written before a restart is approved after it.
        tg.send_text(group.id, sam, "Thanks for asking, Alice!", reply_to=post.message_id)
        await tg.wait_until(lambda: _latest(tg, group.id, "Draft #4") is not None)
        draft4 = _latest(tg, group.id, "Draft #4")
    finally:
        await bridge.stop()
    assert len(net.actions) == 2

    bridge = await _start(data)
    net = bridge.networks["fakenet"]  # type: ignore[assignment]
    try:
        b4 = {b["text"]: b["callback_data"] for b in draft4.buttons}
        tg.press(group.id, lea, draft4.message_id, b4["Approve"])
        await tg.wait_until(lambda: len(net.actions) == 1)
        assert net.actions[0][2] == "Thanks for asking, Alice!"
        await tg.wait_until(lambda: "Approved by @lea" in _latest(tg, group.id, "Draft #4").text)

        tg.send_text(group.id, boss, "/audit 30")
        await tg.wait_until(lambda: any(" drafted" in m.text and "@lea" in m.text for m in tg.messages(group.id)))
        audit = [m for m in tg.messages(group.id) if ": drafted" in m.text][-1].text
        assert f"by @sam (telegram:{sam['id']}): refused" in audit  # Sam's own Approve press
        assert f"by @sam (telegram:{sam['id']}): done, approved by @lea (telegram:{lea['id']})" in audit
        assert f"by @sam (telegram:{sam['id']}): rejected by @boss (telegram:{boss['id']})" in audit
        assert f"by @lea (telegram:{lea['id']}): edited" in audit
    finally:
        await bridge.stop()

    # The command line reads the same trail.
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[database]\nurl = "{db}"\n[bridge]\nadmins = ["telegram:{boss["id"]}"]\n'
        f'[telegram]\ntoken = "{tg.token}"\napi_url = "{tg.url}"\n'
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bridge", "audit", "--csv", "--room", f"telegram:{group.id}", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    sent = [r for r in rows if r["status"] == "done"]
    # A cell that starts with @ = + - is quoted, so a spreadsheet shows it instead of running it.
    assert [r["actor_name"] for r in sent] == ["'@sam"] * 3
    assert sent[0]["approved_by_name"] in ("'@lea", "'@boss") and [r["approved_by_name"] for r in sent[1:]] == ["'@lea", "'@lea"]
    assert sent[1]["approved_by"] == f"telegram:{lea['id']}" and sent[1]["actor"] == f"telegram:{sam['id']}"
    assert all(r["result_url"].startswith("https://fake.example/") for r in sent)
    assert [r["status"] for r in rows].count("rejected") == 1 and [r["status"] for r in rows].count("drafted") == 4


async def test_a_discord_draft_is_edited_in_a_modal_and_approved_once(
    world: tuple[TelegramEmulator, DiscordEmulator], tmp_path: Path
) -> None:
    tg, dc = world
    guild = dc.add_guild("Acme")
    admin = dc.add_member(guild, "ann", manage_channels=True)
    rep = dc.add_member(guild, "sam")
    lead = dc.add_member(guild, "lea")
    feed = dc.add_channel(guild, "leads")
    data = _config(tg, dc, f"sqlite://{tmp_path}/bridge.sqlite3", [f"discord:{admin}"], [f"discord:{rep}"], [f"discord:{lead}"])
    bridge = await _start(data)
    net: FakeNetwork = bridge.networks["fakenet"]  # type: ignore[assignment]
    try:
        await dc.wait_connected()
        await dc.wait_shown(await dc.slash(feed, admin, "follow", handle="alice.fake"))
        shown = await dc.wait_shown(await dc.slash(feed, admin, "approval", mode="on"))
        assert "Approval on" in shown["content"]
        await net.publish("alice.fake", "which CRM do you use?")
        [post] = await dc.wait_sent(feed, 1)
        await dc.user_message(feed, rep, f"<@{dc.application_id}> ours, of course", reply_to=post.id)

        def draft() -> SentMessage | None:
            found = [m for m in dc.bot_messages(feed) if (m.message.get("content") or "").startswith("Draft #1")]
            return found[-1] if found else None

        await tg.wait_until(lambda: draft() is not None)
        ids = {b["label"]: b["custom_id"] for b in draft().buttons()}
        assert set(ids) == {"Approve", "Edit", "Reject"}
        refused = await dc.wait_shown(await dc.press(feed, rep, draft(), ids["Approve"]))
        assert "Only the bridge's approvers" in refused["content"]

        modal = await dc.wait_interaction(await dc.press(feed, lead, draft(), ids["Edit"]))
        assert modal[0]["type"] == 9 and modal[0]["data"]["custom_id"] == "bridge-text:" + ids["Edit"]  # a modal
        await dc.submit_modal(feed, lead, modal[0]["data"]["custom_id"], {"text": "We use our own, happy to demo it."})
        await tg.wait_until(lambda: "Text: We use our own" in (draft().message.get("content") or ""))
        first, second = await asyncio.gather(
            dc.press(feed, lead, draft(), ids["Approve"]), dc.press(feed, lead, draft(), ids["Approve"])
        )
        await dc.wait_shown(first)
        await dc.wait_shown(second)
        assert net.actions == [("reply", net.published[0].ref.id, "We use our own, happy to demo it.")]
        content = draft().message.get("content") or ""
        assert "Approved by lea" in content and "sent: https://fake.example/out" in content and draft().buttons() == []
    finally:
        await bridge.stop()
