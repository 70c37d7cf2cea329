"""Approval: a sender's reply waits as a draft; only an approver's press sends it, once; Edit
changes it, Reject sends nothing; drafts outlive the process and expire with a notice; the
audit trail lists every step with who asked and who decided (SQLite and Postgres)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from bridge.app import Bridge
from bridge.config import config_from_dict
from bridge.model import ButtonAction, Source, SourceKind
from bridge.storage.models import Draft
from bridge.storage.store import Store, utcnow
from tests.fakes import FakeChat, FakeNetwork

FAKES = {"fakenet": FakeNetwork, "fakechat": FakeChat}
Factory = Callable[..., Awaitable[Bridge]]


@pytest.fixture
async def bridge_with(db_url: str) -> AsyncIterator[Factory]:
    running: list[Bridge] = []

    async def make(**bridge: Any) -> Bridge:
        data = {
            "database": {"url": db_url},
            "bridge": {"admins": ["fakechat:boss"], "senders": ["fakechat:sender", "fakechat:rep2"], **bridge},
            "fakechat": {},
            "fakenet": {},
        }
        b = Bridge(config_from_dict(data, adapter_classes=FAKES), adapter_classes=FAKES)
        await b.start()
        running.append(b)
        return b

    yield make
    for b in running:
        await b.stop()


async def _relayed(b: Bridge) -> tuple[FakeChat, FakeNetwork, str]:
    """A post of @alice relayed into room r (approval on there); its chat message id."""
    chat, net = b.chats["fakechat"], b.networks["fakenet"]
    await b.subscribe(Source("fakenet", SourceKind.FOLLOW, "id:alice.fake"), "alice.fake", chat.target("r"), "boss")
    assert (await chat.command("r", "boss", "/approval on", admin=True)).ok
    await net.publish("alice.fake", "what do you think of the new pricing?")
    [delivery] = await chat.wait_sent(1)
    return chat, net, chat.message_id_of(delivery.post.ref.id, "r")


def _draft_message(chat: FakeChat) -> tuple[str, str, tuple[str, ...]]:
    """The last draft shown: (message id, its text now, its button tokens)."""
    mid, (_, text, buttons) = [(m, v) for m, v in chat.shown.items() if v[1].startswith("Draft #")][-1]
    return mid, text, tuple(b.token for b in buttons)


async def test_a_reply_waits_and_only_an_approvers_press_sends_it_once(bridge_with: Factory) -> None:
    b = await bridge_with()
    chat, net, mid = await _relayed(b)

    answer = await chat.reply("r", "sender", mid, "Thanks Alice, DM us for a quote")
    assert answer.ok and "waits for an approver" in answer.text
    assert net.actions == []
    draft_mid, text, tokens = _draft_message(chat)
    assert "reply on fakenet by user sender (fakechat:sender)" in text
    assert "To: https://fake.example/" in text and "Text: Thanks Alice, DM us for a quote" in text
    assert "Length: 31 of 300 characters, fits" in text
    approve, edit, reject = tokens
    assert approve.startswith("approve:d") and edit.startswith("edit:d") and reject.startswith("reject:d")

    refused = await chat.press("r", "rep2", approve)  # a sender, not an approver
    assert not refused.ok and "Only the bridge's approvers may approve drafts" in refused.text
    assert net.actions == []

    # Two approvers press at the same moment: one post.
    first, second = await asyncio.gather(chat.press("r", "boss", approve), chat.press("r", "boss", approve))
    assert sorted([first.ok, second.ok]) == [False, True]
    assert net.actions == [("reply", net.published[0].ref.id, "Thanks Alice, DM us for a quote")]
    _, text, tokens = _draft_message(chat)
    assert chat.shown[draft_mid][1] == text and tokens == ()  # edited in place, buttons gone
    assert "Approved by user boss (fakechat:boss); sent: https://fake.example/out" in text
    again = await chat.press("r", "boss", approve)
    assert not again.ok and "already sent" in again.text and len(net.actions) == 1

    rows = await Store().actions(room=chat.target("r"))
    done = [r for r in rows if r["status"] == "done"]
    assert len(done) == 1 and done[0]["actor"] == "fakechat:sender" and done[0]["approved_by"] == "fakechat:boss"
    refusals = [r for r in rows if r["status"] == "refused"]
    assert refusals and refusals[0]["actor"] == "fakechat:rep2" and refusals[0]["error"] == "not an approver"

    audit = await chat.command("r", "boss", "/audit 10")
    lines = audit.text.splitlines()
    assert any("reply on fakenet by user sender (fakechat:sender): drafted" in line for line in lines)
    assert any("by user rep2 (fakechat:rep2): refused" in line and "not an approver" in line for line in lines)
    assert any(": done, approved by user boss (fakechat:boss) https://fake.example/out" in line for line in lines), audit.text
    assert not (await chat.command("r", "rep2", "/audit")).ok  # a sender does not read the trail


async def test_edit_then_approve_sends_the_edited_text_and_reject_sends_nothing(bridge_with: Factory) -> None:
    b = await bridge_with(approvers=["fakechat:lead"])
    chat, net, mid = await _relayed(b)
    await chat.reply("r", "sender", mid, "Thx!!")
    _, _, (approve, edit, _) = _draft_message(chat)

    assert not (await chat.press("r", "boss", approve)).ok  # approvers are set: the admin is not one
    prompt = await chat.press("r", "sender", edit)  # the author may edit
    assert prompt.ask_text_for == edit
    assert not (await chat.answer_prompt("r", "sender", edit, "x" * 301)).ok  # still checked against the limit
    changed = await chat.answer_prompt("r", "sender", edit, "Thanks Alice! Our pricing page: example.com/pricing")
    assert changed.ok, changed.text
    _, text, _ = _draft_message(chat)
    assert "Text: Thanks Alice! Our pricing page" in text
    assert (await chat.press("r", "lead", approve)).ok
    assert net.actions[-1][2] == "Thanks Alice! Our pricing page: example.com/pricing"

    await chat.reply("r", "sender", mid, "we are cheaper than them lol")
    _, _, (approve2, _, reject2) = _draft_message(chat)
    asked = await chat.press("r", "lead", reject2)
    assert asked.ask_text_for == reject2 and "optional" in asked.text
    assert (await chat.answer_prompt("r", "lead", reject2, "no comparisons with competitors")).ok
    _, text, tokens = _draft_message(chat)
    assert "Rejected by user lead (fakechat:lead): no comparisons with competitors. Nothing was sent." in text
    assert tokens == ()
    assert not (await chat.press("r", "lead", approve2)).ok
    assert len(net.actions) == 1
    [rejected] = [r for r in await Store().actions() if r["status"] == "rejected"]
    assert rejected["actor"] == "fakechat:sender" and rejected["approved_by"] == "fakechat:lead"


async def test_a_draft_outlives_the_bridge_and_expires_with_a_notice(bridge_with: Factory) -> None:
    b = await bridge_with()
    chat, _, mid = await _relayed(b)
    await chat.reply("r", "sender", mid, "first")
    _, _, (approve, _, _) = _draft_message(chat)
    await chat.reply("r", "sender", mid, "second")
    await b.stop()

    b2 = await bridge_with()  # the same database: the drafts are there
    chat2, net2 = b2.chats["fakechat"], b2.networks["fakenet"]
    answer = await chat2.press("r", "boss", approve)
    assert answer.ok and net2.actions[-1][2] == "first"

    await Draft.filter(status="waiting").update(expires_at=utcnow() - timedelta(seconds=1))
    assert await b2.commands.approvals.expire() == 1
    # (A new fake chat cannot edit the first one's messages: the outcome comes as a notice.)
    (_, text, buttons) = list(chat2.shown.values())[-1]
    assert "Text: second" in text and "Expired after 24 h without an approval. Nothing was sent." in text and buttons == ()
    assert [r["status"] for r in await Store().actions() if r["text"] == "second"] == ["expired", "drafted"]


async def test_approval_all_holds_likes_and_only_admins_switch_it(bridge_with: Factory) -> None:
    b = await bridge_with()
    chat, net = b.chats["fakechat"], b.networks["fakenet"]
    await b.subscribe(Source("fakenet", SourceKind.FOLLOW, "id:alice.fake"), "alice.fake", chat.target("r"), "boss")
    refused = await chat.command("r", "sender", "/approval all")
    assert not refused.ok and "admins" in refused.text
    bad = await chat.command("r", "boss", "/approval maybe", admin=True)
    assert not bad.ok and "/approval on" in bad.text
    assert (await chat.command("r", "boss", "/approval all", admin=True)).ok
    await net.publish("alice.fake", "hello")
    [delivery] = await chat.wait_sent(1)
    answer = await chat.press("r", "sender", f"{ButtonAction.LIKE.value}:{delivery.id}")
    assert "waits for an approver" in answer.text and net.actions == []
    _, text, (approve, _, _) = _draft_message(chat)
    assert "like on fakenet by user sender" in text and "Length" not in text
    assert (await chat.press("r", "boss", approve)).ok and net.actions == [("like", delivery.post.ref.id)]
    assert (await chat.command("r", "boss", "/approval off", admin=True)).ok
    assert (await chat.command("r", "sender", "/post straight out")).text.startswith("Posted: ")


async def test_a_draft_a_dead_process_left_sending_waits_again_or_takes_its_outcome(bridge_with: Factory) -> None:
    b = await bridge_with()
    chat, net, mid = await _relayed(b)
    await chat.reply("r", "sender", mid, "one")
    await chat.reply("r", "sender", mid, "two")
    _, _, (approve_two, _, _) = _draft_message(chat)
    assert (await chat.press("r", "boss", approve_two)).ok
    # As a process killed right after the press would leave them: "one" claimed but never
    # written down (nothing sent); "two" claimed and sent, the draft not yet told.
    await Draft.filter(text="one").update(status="sending", decided_by="fakechat:boss", decided_by_name="user boss")
    await Draft.filter(text="two").update(status="sending")
    assert await b.commands.approvals.recover() == 2
    one, two = await Draft.filter(text="one").first(), await Draft.filter(text="two").first()
    assert one.status == "waiting" and two.status == "sent" and two.result_url.startswith("https://fake.example/")
    assert "Waiting for an approver" in chat.shown[one.message_id][1]
    _, _, (approve_one, _, _) = chat.shown[one.message_id]
    assert (await chat.press("r", "boss", approve_one.token)).ok
    assert [a[2] for a in net.actions] == ["two", "one"]
