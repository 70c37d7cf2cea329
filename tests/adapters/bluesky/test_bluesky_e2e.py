"""The user stories of the Bluesky adapter, end to end: the real core (bridge.app.Bridge) with
the Bluesky adapter against the reference AT Protocol stack, and tests.fakes.FakeChat as the
chat room where people type commands, reply and press buttons."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from bridge.app import Bridge
from bridge.model import ButtonAction, Delivery
from tests.adapters.bluesky.conftest import BridgeFactory, Team
from tests.atproto.harness import AtprotoStack
from tests.emulators.bsky_chat import BskyChatEmulator
from tests.fakes import FakeChat
from tests.faults.bridge_process import run_cli

ROOM = "room1"


def sub_id(answer_text: str) -> str:
    m = re.search(r"\(#(\d+)\)", answer_text)
    assert m, answer_text
    return m.group(1)


async def settle(atproto: AtprotoStack, b: Bridge) -> None:
    """Let the AppView index what was just written, then run one poll cycle."""
    await atproto.process_all()
    await b.networks["bluesky"].poll_once()  # type: ignore[attr-defined]


def token(delivery: Delivery, action: ButtonAction) -> str:
    return next(button.token for button in delivery.buttons if button.action is action)


async def test_follow_post_reply_and_repost_follow_the_filters(atproto: AtprotoStack, bluesky_bridge: BridgeFactory) -> None:
    alice = await atproto.create_account("alice", "Alice")
    bob = await atproto.create_account("bob", "Bob")
    b = await bluesky_bridge()
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    answer = await chat.command(ROOM, "boss", f"/follow {alice.handle}", admin=True)
    assert answer.ok and f"Following @{alice.handle}" in answer.text
    await settle(atproto, b)  # the subscription starts from now

    rec = await atproto.post(alice, "launch day! details at example.com/launch", images=[{"alt": "our logo"}])
    await settle(atproto, b)
    [delivery] = await chat.wait_sent(1, timeout=15)
    post = delivery.post
    assert post.ref.id == rec.uri and post.text == "launch day! details at example.com/launch"
    assert post.author.label == f"Alice (@{alice.handle})"
    assert [(m.kind, m.alt) for m in post.media] == [("image", "our logo")]
    assert post.url.startswith(f"https://bsky.app/profile/{alice.handle}/post/")

    # a reply and a repost pass with the default filters ...
    bob_post = await atproto.post(bob, "bob says hi")
    reply = await atproto.post(alice, "replying to bob", reply=bob_post)
    await atproto.repost(alice, bob_post)
    await settle(atproto, b)
    sent = await chat.wait_sent(3, timeout=15)
    assert {(d.post.ref.id, d.post.reposted_by is not None) for d in sent[1:]} == {(reply.uri, False), (bob_post.uri, True)}

    # ... and not once the room turns them off
    answer = await chat.command(ROOM, "boss", f"/filter {sub_id(answer.text)} replies:off reposts:off", admin=True)
    assert answer.ok, answer.text
    bob_second = await atproto.post(bob, "bob again")
    await atproto.post(alice, "another reply", reply=bob_second)
    await atproto.repost(alice, bob_second)
    plain = await atproto.post(alice, "a plain post")
    await settle(atproto, b)
    await chat.wait_sent(4, timeout=15)
    await settle(atproto, b)
    assert chat.sent_to(ROOM)[3:] == [plain.uri]
    assert chat.sent_to(ROOM).count(rec.uri) == 1, "relayed once"


async def test_watch_relays_matching_posts_only(atproto: AtprotoStack, bluesky_bridge: BridgeFactory) -> None:
    carol = await atproto.create_account("carol")
    word = f"quokka{carol.handle.split('.')[0]}"
    b = await bluesky_bridge()
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    answer = await chat.command(ROOM, "boss", f"/watch {word}", admin=True)
    assert answer.ok, answer.text
    await settle(atproto, b)
    hit = await atproto.post(carol, f"spotted a {word} today")
    await atproto.post(carol, "nothing about marsupials")
    await settle(atproto, b)
    await chat.wait_sent(1, timeout=15)
    await settle(atproto, b)
    assert chat.sent_to(ROOM) == [hit.uri]


async def test_reply_like_repost_and_follow_from_chat_reach_the_network(
    atproto: AtprotoStack, bluesky_bridge: BridgeFactory, team: Team
) -> None:
    dana = await atproto.create_account("dana", "Dana")
    b = await bluesky_bridge()
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    assert (await chat.command(ROOM, "boss", f"/follow {dana.handle}", admin=True)).ok
    await settle(atproto, b)
    root = await atproto.post(dana, "what do you all think?")
    child = await atproto.post(dana, "(answering myself first)", reply=root)
    await settle(atproto, b)
    sent = await chat.wait_sent(2, timeout=15)
    relayed_child = next(d for d in sent if d.post.ref.id == child.uri)

    # a reply in chat to the relayed reply threads under it, with the thread's root as root
    mid = chat.message_id_of(child.uri, ROOM)
    answer = await chat.reply(ROOM, "sender", mid, "we think it's great @" + dana.handle)
    assert answer.ok, answer.text
    await atproto.process_all()
    thread = await atproto.thread(root.uri)
    [under_child] = thread["replies"][0]["replies"]
    ours = under_child["post"]
    assert ours["author"]["did"] == team.account.did
    assert ours["record"]["text"] == f"we think it's great @{dana.handle}"
    assert ours["record"]["reply"]["parent"]["uri"] == child.uri
    assert ours["record"]["reply"]["root"]["uri"] == root.uri
    [mention] = ours["record"]["facets"]
    assert mention["features"][0]["did"] == dana.did

    # the buttons: like, repost, follow
    for action in (ButtonAction.LIKE, ButtonAction.REPOST, ButtonAction.FOLLOW):
        answer = await chat.press(ROOM, "sender", token(relayed_child, action))
        assert answer.ok, answer.text
    await atproto.process_all()
    likes = await atproto.query_appview("app.bsky.feed.getLikes", uri=child.uri)
    assert [like["actor"]["did"] for like in likes["likes"]] == [team.account.did]
    reposts = await atproto.query_appview("app.bsky.feed.getRepostedBy", uri=child.uri)
    assert [r["did"] for r in reposts["repostedBy"]] == [team.account.did]
    follows = await atproto.query_appview("app.bsky.graph.getFollows", actor=team.account.did)
    assert dana.did in [f["did"] for f in follows["follows"]]

    # /unfollow: the follow the adapter made for the subscription is dropped only if the team
    # did not ask for it itself; here the Follow button made it the team's own
    assert (await chat.command(ROOM, "boss", f"/unfollow {dana.handle}", admin=True)).ok
    await settle(atproto, b)
    await atproto.process_all()
    follows = await atproto.query_appview("app.bsky.graph.getFollows", actor=team.account.did)
    assert dana.did in [f["did"] for f in follows["follows"]]


async def test_mention_of_the_team_arrives_in_the_inbox_room(
    atproto: AtprotoStack, bluesky_bridge: BridgeFactory, team: Team, chat_emulator: BskyChatEmulator
) -> None:
    erin = await atproto.create_account("erin", "Erin")
    b = await bluesky_bridge(chat_service=chat_emulator.url)  # DMs: tests/emulators/bsky_chat.py
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    answer = await chat.command("inbox", "boss", "/inbox on", admin=True)
    assert answer.ok, answer.text
    await settle(atproto, b)
    text = f"@{team.handle} is your product any good?"
    facets = [
        {
            "index": {"byteStart": 0, "byteEnd": len(team.handle) + 1},
            "features": [{"$type": "app.bsky.richtext.facet#mention", "did": team.account.did}],
        }
    ]
    mention = await atproto.post(erin, text, facets=facets)
    await settle(atproto, b)
    [delivery] = await chat.wait_sent(1, timeout=15)
    assert delivery.target.chat_id == "inbox"
    assert (delivery.post.ref.id, delivery.post.reason) == (mention.uri, "mention")


async def test_bad_input_gets_a_clear_answer_and_sends_nothing(
    atproto: AtprotoStack, bluesky_bridge: BridgeFactory, team: Team
) -> None:
    fay = await atproto.create_account("fay")
    b = await bluesky_bridge()
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    answer = await chat.command(ROOM, "boss", "/follow nobody-at-all.test", admin=True)
    assert not answer.ok and "no Bluesky account @nobody-at-all.test" in answer.text
    answer = await chat.command(ROOM, "boss", "/follow not_a_handle!", admin=True)
    assert not answer.ok

    assert (await chat.command(ROOM, "boss", f"/follow {fay.handle}", admin=True)).ok
    await settle(atproto, b)
    rec = await atproto.post(fay, "reply to this")
    await settle(atproto, b)
    await chat.wait_sent(1, timeout=15)
    answer = await chat.reply(ROOM, "sender", chat.message_id_of(rec.uri, ROOM), "x" * 301)
    assert not answer.ok and "301 graphemes; Bluesky allows 300" in answer.text
    answer = await chat.command(ROOM, "sender", "/post " + "🇺🇸" * 301)  # 301 flags: 602 code points
    assert not answer.ok and "301 graphemes" in answer.text
    await atproto.process_all()
    feed = await atproto.query_appview("app.bsky.feed.getAuthorFeed", actor=team.account.did)
    assert feed["feed"] == [], "nothing was posted"
    await asyncio.sleep(0)


async def test_revoked_app_password_mid_run_gives_a_clear_message_and_sends_nothing(
    atproto: AtprotoStack, bluesky_bridge: BridgeFactory, team: Team
) -> None:
    b = await bluesky_bridge()
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    adapter = b.networks["bluesky"]
    await atproto.revoke_app_password(team.account)
    # the access token the bridge holds expires: the refresh is refused, then the one login
    session = adapter.client._session  # type: ignore[attr-defined]
    session.access_jwt = await atproto.expired_access_token(team.account)

    answer = await chat.command(ROOM, "sender", "/post hello from the team")
    assert not answer.ok
    assert "login was refused" in answer.text and "[bluesky]" in answer.text
    answer = await chat.command(ROOM, "sender", "/post second try")
    assert not answer.ok and "login was refused" in answer.text
    assert await atproto.login_count(team.handle) == 2, "one login at start, one attempt after the refusal: no loop"
    await atproto.process_all()
    feed = await atproto.query_appview("app.bsky.feed.getAuthorFeed", actor=team.account.did)
    assert feed["feed"] == [], "nothing was posted"


async def test_revoked_app_password_mid_run_is_told_once_shown_in_status_and_picked_up_when_fixed(
    atproto: AtprotoStack, bluesky_bridge: BridgeFactory, team: Team, tmp_path: Path
) -> None:
    gus = await atproto.create_account("gus", "Gus")
    b = await bluesky_bridge()
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    assert (await chat.command(ROOM, "boss", f"/follow {gus.handle}", admin=True)).ok
    await settle(atproto, b)
    adapter = b.networks["bluesky"]
    adapter.session.login_retry = 2.0  # type: ignore[attr-defined]  # the calm pace (10 min), shortened
    await atproto.revoke_app_password(team.account)
    adapter.client._session.access_jwt = await atproto.expired_access_token(team.account)  # type: ignore[attr-defined]

    # the room it feeds and the admin are told, once each
    def told(chat_id: str, words: str) -> list[str]:
        return [text for target, text in chat.notices if target.chat_id == chat_id and words in text]

    deadline = time.monotonic() + 20
    while not (told(ROOM, "Bluesky stopped working") and told("boss", "Bluesky stopped working")):
        assert time.monotonic() < deadline, chat.notices
        await asyncio.sleep(0.1)
    [notice] = told(ROOM, "Bluesky stopped working")
    assert f"Bluesky refused the login of {team.handle}" in notice and "[bluesky]" in notice
    assert team.app_password not in notice

    # `bridge status` shows it, from the database the running bridge writes
    config = tmp_path / "status.toml"
    config.write_text(
        f'[database]\nurl = "sqlite://{tmp_path}/bridge.sqlite3"\n'
        f'[bluesky]\nservice = "{atproto.pds}"\nidentifier = "{team.handle}"\npassword = "{team.app_password}"\n'
    )
    status = run_cli(config, "status")
    assert status.returncode == 0, status.stderr
    assert re.search(
        rf"^bluesky: down since [0-9-]+ [0-9:]+: Bluesky refused the login of {re.escape(team.handle)}", status.stdout, re.M
    )
    assert team.app_password not in status.stdout + status.stderr

    # it keeps trying at its calm pace, and says nothing more meanwhile
    logins = await atproto.login_count(team.handle)
    await asyncio.sleep(5)
    assert 1 <= await atproto.login_count(team.handle) - logins <= 3
    assert len(told(ROOM, "stopped working")) == 1 and len(told("boss", "stopped working")) == 1

    # the login works again (here: the account takes another app password, as a fixed
    # [bluesky] password or a lifted suspension would): picked up without a restart
    adapter.session._password = await atproto.app_password(team.account, name="bridge-fixed")  # type: ignore[attr-defined]
    deadline = time.monotonic() + 20
    while not told(ROOM, "Bluesky works again"):
        assert time.monotonic() < deadline, chat.notices
        await asyncio.sleep(0.1)
    assert len(told("boss", "works again")) == 1
    rec = await atproto.post(gus, "relayed again after the fix")
    await settle(atproto, b)
    await chat.wait_sent(1, timeout=15)
    assert chat.sent_to(ROOM) == [rec.uri]
    status = run_cli(config, "status")
    assert "bluesky: down" not in status.stdout


async def test_a_restart_with_a_fixed_password_tells_the_rooms_it_is_back(
    atproto: AtprotoStack, bluesky_bridge: BridgeFactory, team: Team
) -> None:
    b = await bluesky_bridge()
    await b.report_health("bluesky", False, "Bluesky refused the login of the team")  # as the adapter does
    fixed = await atproto.app_password(team.account, name="bridge-restart")
    b = await bluesky_bridge(password=fixed)  # the operator put the new password in and restarted
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    deadline = time.monotonic() + 10
    while not any("Bluesky works again" in text for target, text in chat.notices if target.chat_id == "boss"):
        assert time.monotonic() < deadline, chat.notices
        await asyncio.sleep(0.05)


async def test_follow_by_profile_link_as_bsky_app_shows_it(atproto: AtprotoStack, bluesky_bridge: BridgeFactory) -> None:
    alice = await atproto.create_account("alice", "Alice")
    b = await bluesky_bridge()
    chat: FakeChat = b.chats["fakechat"]  # type: ignore[assignment]
    answer = await chat.command(ROOM, "boss", f"/follow https://bsky.app/profile/{alice.handle}", admin=True)
    assert answer.ok and f"Following @{alice.handle} on bluesky here" in answer.text
    again = await chat.command(ROOM, "boss", f"/follow bsky.app/profile/{alice.handle.upper()}/", admin=True)
    assert again.ok and f"Already following @{alice.handle} here" in again.text
    wrong = await chat.command(ROOM, "boss", "/follow mastodon:@alice@mastodon.social", admin=True)
    assert not wrong.ok and wrong.text == "The mastodon network is not configured; configured: bluesky."
