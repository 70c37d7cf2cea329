"""Looking before following: /find, /who, /recent, /search and the buttons under their answers,
on fake adapters (SQLite and Postgres). Who may press which button, paging, presses after a
restart, /recent outside the ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bridge.app import Bridge
from bridge.config import config_from_dict
from bridge.errors import RateLimited
from bridge.model import Answer, Button, ButtonAction, Profile, Source, SourceKind
from bridge.storage.store import Store
from tests.fakes import FakeChat, FakeNetwork, author

FAKES = {"fakenet": FakeNetwork, "fakechat": FakeChat}
Factory = Callable[..., Awaitable[Bridge]]

PEOPLE = [
    Profile(author("ada.fake"), "CEO at Helix Biotech\nformerly at Genentech", followers=1200, posts=340),
    Profile(author("bob.fake"), "Biotech investor", followers=50, posts=10, followed_by_team=True),
    Profile(author("cyd.fake"), "CEO of a biotech startup", followers=7),
]


@pytest.fixture
async def bridge_with(db_url: str) -> AsyncIterator[Factory]:
    running: list[Bridge] = []

    async def make(**networks: dict[str, Any]) -> Bridge:
        data = {
            "database": {"url": db_url},
            "bridge": {"admins": ["fakechat:boss"], "senders": ["fakechat:sender"]},
            "fakechat": {},
            **(networks or {"fakenet": {}}),
        }
        b = Bridge(config_from_dict(data, adapter_classes=FAKES), adapter_classes=FAKES)
        await b.start()
        for net in b.networks.values():
            net.accounts = list(PEOPLE)
        running.append(b)
        return b

    yield make
    for b in running:
        await b.stop()


def button(answer: Answer, label: str) -> Button:
    found = [b for b in answer.buttons if b.label == label]
    assert found, f"no button {label!r} in {[b.label for b in answer.buttons]}"
    return found[0]


async def test_find_lists_accounts_with_their_bio_and_counts_and_buttons_per_account(bridge_with: Factory) -> None:
    b = await bridge_with()
    chat = b.chats["fakechat"]
    answer = await chat.command("r", "someone", "/find CEO biotech")
    assert answer.ok, answer.text
    assert "Ada (@ada.fake) – CEO at Helix Biotech" in answer.text and "formerly" not in answer.text
    assert "1,200 followers · 340 posts" in answer.text
    assert "Cyd (@cyd.fake) – CEO of a biotech startup" in answer.text and "bob.fake" not in answer.text
    labels = [x.label for x in answer.buttons]
    assert labels == ["1 Follow here", "1 Recent", "1 Follow on fakenet", "2 Follow here", "2 Recent", "2 Follow on fakenet"]
    assert all(len(x.token.encode()) <= 64 for x in answer.buttons)
    nothing = await chat.command("r", "someone", "/find zebra keeper")
    assert nothing.ok and "No fakenet account matches 'zebra keeper'" in nothing.text and not nothing.buttons
    usage = await chat.command("r", "someone", "/find   ")
    assert not usage.ok and "Usage: /find <words>" in usage.text


async def test_follow_here_is_for_room_admins_and_subscribes_the_room(bridge_with: Factory) -> None:
    b = await bridge_with()
    chat, net = b.chats["fakechat"], b.networks["fakenet"]
    found = await chat.command("r", "someone", "/find helix")
    token = button(found, "Follow here").token
    refused = await chat.press("r", "someone", token)
    assert not refused.ok and "Only this room's admins" in refused.text and "@ada.fake" in refused.text
    assert await Store().subscriptions() == []
    done = await chat.press("r", "boss", token)
    assert done.ok and done.public and "Following @ada.fake on fakenet here" in done.text
    [sub] = await Store().subscriptions()
    assert sub.source == Source("fakenet", SourceKind.FOLLOW, "id:ada.fake") and str(sub.destination) == "fakechat:r"
    again = await chat.press("r", "boss", token)
    assert "Already following @ada.fake here" in again.text
    await net.publish("ada.fake", "new trial results")
    [delivery] = await chat.wait_sent(1)
    assert delivery.post.text == "new trial results"


async def test_follow_on_the_network_is_for_senders_and_done_once(bridge_with: Factory) -> None:
    b = await bridge_with()
    chat, net = b.chats["fakechat"], b.networks["fakenet"]
    token = button(await chat.command("r", "someone", "/find helix"), "Follow on fakenet").token
    refused = await chat.press("r", "someone", token)
    assert not refused.ok and "Only the bridge's senders" in refused.text and "fakechat:someone" in refused.text
    assert net.actions == []
    done = await chat.press("r", "sender", token)
    assert done.ok and "Now following @ada.fake from the team account" in done.text
    assert net.actions == [("follow", "id:ada.fake")]
    rows = await Store().actions()
    assert sorted((r["action"], r["status"], r["actor"]) for r in rows) == [
        ("follow", "done", "fakechat:sender"),
        ("follow", "refused", "fakechat:someone"),
    ]


async def test_recent_shows_posts_as_relays_without_touching_the_ledger(bridge_with: Factory) -> None:
    b = await bridge_with()
    chat, net = b.chats["fakechat"], b.networks["fakenet"]
    for i in range(7):
        net.published.append(net.make_post("ada.fake", f"post {i}"))
    answer = await chat.command("r", "someone", "/recent ada.fake 3")
    assert answer.ok and "the last 3 posts of @ada.fake" in answer.text and "/follow fakenet:ada.fake" in answer.text
    assert [d.post.text for d in chat.sent] == ["post 4", "post 5", "post 6"]
    assert all(d.id == 0 for d in chat.sent)
    assert await Store().status_rows() == [] and await Store().pending_by_destination() == []
    # Recent under a /find answer shows the default five.
    chat.sent.clear()
    pressed = await chat.press("r", "someone", button(await chat.command("r", "x", "/find helix"), "Recent").token)
    assert pressed.ok and [d.post.text for d in chat.sent] == [f"post {i}" for i in range(2, 7)]
    # A later subscription still relays a post shown by /recent (nothing counted it delivered).
    await chat.command("r", "boss", "/follow ada.fake", admin=True)
    await net.deliver(net.published[-1])
    relayed = (await chat.wait_sent(6))[-1]
    assert relayed.id != 0 and relayed.post.text == "post 6"
    bad = await chat.command("r", "someone", "/recent ada.fake 50")
    assert not bad.ok and "1 to 20" in bad.text


async def test_paging_next_and_previous(bridge_with: Factory) -> None:
    b = await bridge_with()
    net = b.networks["fakenet"]
    net.accounts = [Profile(author(f"bio{i:02d}.fake"), f"biotech person {i}") for i in range(12)]
    chat = b.chats["fakechat"]
    first = await chat.command("r", "someone", "/find biotech")
    assert "(1-5)" in first.text and "Bio00" in first.text and "Previous" not in str(first.buttons)
    second = await chat.press("r", "someone", button(first, "Next ›").token)
    assert second.public and "(6-10)" in second.text and "6. Bio05" in second.text
    third = await chat.press("r", "someone", button(second, "Next ›").token)
    assert "(11-12)" in third.text and "Next ›" not in [x.label for x in third.buttons]
    back = await chat.press("r", "someone", button(third, "‹ Previous").token)
    assert "(6-10)" in back.text
    # The buttons of a page name its own accounts.
    here = await chat.press("r", "boss", button(back, "7 Follow here").token)
    assert "@bio06.fake" in here.text


async def test_search_then_watch_here_and_a_press_after_a_restart(bridge_with: Factory, db_url: str) -> None:
    b = await bridge_with()
    chat, net = b.chats["fakechat"], b.networks["fakenet"]
    net.published.append(net.make_post("ada.fake", "Gene therapy is here"))
    answer = await chat.command("r", "someone", "/search gene therapy")
    assert answer.ok and "• @ada.fake: Gene therapy is here" in answer.text
    token = button(answer, "Watch here").token
    await b.stop()
    b2 = await bridge_with()  # a new process on the same database
    chat2 = b2.chats["fakechat"]
    refused = await chat2.press("r", "someone", token)
    assert not refused.ok and "Only this room's admins" in refused.text
    elsewhere = await chat2.press("other", "boss", token)
    assert not elsewhere.ok and "another chat" in elsewhere.text
    done = await chat2.press("r", "boss", token)
    assert done.ok and "Watching 'gene therapy' on fakenet here" in done.text
    [sub] = await Store().subscriptions()
    assert sub.source == Source("fakenet", SourceKind.QUERY, "gene therapy")


async def test_who_says_whether_the_team_follows_and_which_rooms_relay(bridge_with: Factory) -> None:
    b = await bridge_with()
    chat = b.chats["fakechat"]
    await chat.command("r", "boss", "/follow bob.fake")
    answer = await chat.command("q", "someone", "/who bob.fake")
    assert answer.ok and "Bob (@bob.fake)" in answer.text and "Biotech investor" in answer.text
    assert "The team account follows it." in answer.text and "Relayed to: fakechat:r." in answer.text
    assert [x.label for x in answer.buttons] == ["Follow here", "Recent", "Follow on fakenet"]


async def test_refusals_and_costs_come_from_the_network(bridge_with: Factory) -> None:
    b = await bridge_with(
        fakenet={
            "refuse": {"find": "user search is not in the plan", "follow": "no follows"},
            "cost": "about $0.05 of the $25 budget",
        }
    )
    chat, net = b.chats["fakechat"], b.networks["fakenet"]
    refused = await chat.command("r", "x", "/find ceo")
    assert not refused.ok and refused.text == "fakenet cannot do that: user search is not in the plan."
    net.published.append(net.make_post("ada.fake", "ceo news"))
    found = await chat.command("r", "x", "/search ceo")
    assert "(This look-up costs about $0.05 of the $25 budget.)" in found.text
    who = await chat.command("r", "x", "/who ada.fake")
    assert "Follow on fakenet" not in [x.label for x in who.buttons]


@pytest.mark.parametrize("token", ["lk:here:999999:0", "lk:here:1:x", "lk:nope:1:0", "lk:here:1"])
async def test_forged_tokens_are_refused(bridge_with: Factory, token: str) -> None:
    b = await bridge_with()
    answer = await b.chats["fakechat"].press("r", "boss", token)
    assert not answer.ok and ("too old" in answer.text or "not one of the bridge's" in answer.text)
    assert ButtonAction.HERE.value == "here"


async def test_recent_waits_out_a_short_pace_and_says_when_the_chat_is_busy(bridge_with: Factory) -> None:
    b = await bridge_with()
    chat, net = b.chats["fakechat"], b.networks["fakenet"]
    for i in range(3):
        net.published.append(net.make_post("ada.fake", f"post {i}"))
    chat.fail["r"] = [RateLimited(0.05, "r")]
    answer = await chat.command("r", "someone", "/recent ada.fake 3")
    assert answer.ok and [d.post.text for d in chat.sent] == ["post 0", "post 1", "post 2"]
    chat.sent.clear()
    chat.fail["r"] = [RateLimited(0.0, "r"), RateLimited(600, "r")]
    busy = await chat.command("r", "someone", "/recent ada.fake 3")
    assert not busy.ok and busy.text == "Showed 0 of 3 posts of @ada.fake; the chat is busy, try again in a minute."


async def test_answers_older_than_30_days_are_forgotten_and_their_buttons_say_so(bridge_with: Factory) -> None:
    from datetime import timedelta

    from bridge.storage.models import LookupResult
    from bridge.storage.store import utcnow

    b = await bridge_with()
    chat = b.chats["fakechat"]
    old = button(await chat.command("r", "someone", "/find helix"), "Recent").token
    await LookupResult.all().update(created_at=utcnow() - timedelta(days=31))
    fresh = button(await chat.command("r", "someone", "/find helix"), "Recent").token
    while (await LookupResult.all().order_by("-id").first()).id % 100:  # type: ignore[union-attr]
        await b.store.save_lookup(chat.target("r"), "fakenet", "search", "x", {"query": "x"})
    answer = await chat.press("r", "someone", old)
    assert not answer.ok and "too old" in answer.text and "ask again" in answer.text
    assert (await chat.press("r", "someone", fresh)).ok
