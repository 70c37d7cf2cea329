"""End to end: the real core (Bridge, SQLite) with the Telegram adapter speaking HTTP to the Bot API
emulator, and a FakeNetwork standing in for Bluesky."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from adapters.telegram import TelegramAdapter
from bridge.cli.rooms import CLI_USER
from bridge.model import ChatEvent, EventKind, Media
from tests.adapters.telegram.tg_world import World, start_world
from tests.emulators.telegram import TelegramEmulator


async def test_follow_in_a_private_chat_then_posts_arrive(world: World) -> None:
    answer = await world.command(world.boss_chat, world.boss, "/follow alice.fake")
    assert "Following @alice.fake" in answer
    post = await world.net.publish("alice.fake", "hello from alice")
    messages = await world.tg.wait_messages(world.boss_chat.id, 2)
    relayed = messages[-1]
    assert "Alice @alice.fake" in relayed.text and "hello from alice" in relayed.text
    assert ("Open original", post.url) in relayed.links()
    assert [b["text"] for b in relayed.buttons] == ["Open", "Reply", "Like", "Repost", "Follow"]
    assert relayed.buttons[0]["url"] == post.url


async def test_follow_in_a_group_admin_only(world: World) -> None:
    refused = await world.command(world.group, world.member, "/follow alice.fake")
    assert "Only this room's admins" in refused
    accepted = await world.command(world.group, world.boss, "/follow@bridge_test_bot alice.fake")
    assert "Following @alice.fake" in accepted
    await world.net.publish("alice.fake", "to the group")
    messages = await world.tg.wait_messages(world.group.id, 3)
    assert "to the group" in messages[-1].text


async def test_follow_in_a_topic_relays_into_the_topic(world: World) -> None:
    forum = world.tg.add_group("Forum", admins=[world.boss], kind="supergroup", forum=True)
    answer = await world.command(forum, world.boss, "/follow alice.fake", thread_id=9)
    assert "Following @alice.fake" in answer
    await world.net.publish("alice.fake", "topic news")
    messages = await world.tg.wait_messages(forum.id, 2)
    assert all(m.thread_id == 9 for m in messages)
    assert "topic news" in messages[-1].text


@pytest.mark.parametrize(
    "text",
    [
        "<b>not bold</b> & </b> <script>alert(1)</script> a<b & c>d &amp; &lt;",
        "5 < 6 && 7 > 3 </i></b></a> <a href='x'>",
    ],
)
async def test_markup_in_posts_is_shown_verbatim(world: World, text: str) -> None:
    await world.command(world.group, world.boss, "/follow alice.fake")
    await world.net.publish("alice.fake", text)
    relayed = (await world.tg.wait_messages(world.group.id, 2))[-1]
    body = relayed.text.split("\n\n")[1]
    assert body == text
    assert not world.tg.rejected


async def test_photo_and_5000_characters_arrive_whole(world: World) -> None:
    await world.command(world.group, world.boss, "/follow alice.fake")
    await world.net.publish("alice.fake", "a photo", media=(Media("image", "https://cdn.example/cat.jpg"),))
    long_text = ("word <&> " * 600)[:5000]
    await world.net.publish("alice.fake", long_text)
    messages = await world.tg.wait_messages(world.group.id, 4)
    photo, part1, part2 = messages[1:4]
    assert photo.photo == "https://cdn.example/cat.jpg" and "a photo" in photo.text and photo.buttons
    assert len(part1.text) <= 4096 and len(part2.text) <= 4096
    shown = "".join((part1.text + part2.text).split())
    assert "".join(long_text.split()) in shown
    assert part2.buttons and not part1.buttons


async def test_reply_to_a_relayed_message_replies_on_the_network(world: World) -> None:
    await world.command(world.group, world.boss, "/follow alice.fake")
    post = await world.net.publish("alice.fake", "what do you think?")
    relayed = (await world.tg.wait_messages(world.group.id, 2))[-1]
    world.tg.send_text(world.group.id, world.boss, "Great point!", reply_to=relayed.message_id)
    answer = (await world.tg.wait_messages(world.group.id, 3))[-1]
    assert world.net.actions == [("reply", post.ref.id, "Great point!")]
    assert answer.text.startswith("Replied to @alice.fake: https://fake.example/out")
    # Someone who may not speak as the team account is refused and nothing is posted.
    world.tg.send_text(world.group.id, world.member, "me too", reply_to=relayed.message_id)
    refusal = (await world.tg.wait_messages(world.group.id, 4))[-1]
    assert "Only the bridge's senders" in refusal.text
    assert len(world.net.actions) == 1


async def test_each_button(world: World) -> None:
    await world.command(world.group, world.boss, "/follow alice.fake")
    post = await world.net.publish("alice.fake", "press me")
    relayed = (await world.tg.wait_messages(world.group.id, 2))[-1]
    data = {b["text"]: b.get("callback_data") for b in relayed.buttons}
    assert data["Open"] is None  # a URL button, opened by Telegram itself
    for label in ("Like", "Repost", "Follow"):
        world.tg.press(world.group.id, world.boss, relayed.message_id, data[label])
    await world.tg.wait_until(lambda: len(world.tg.callback_answers) == 3)
    assert sorted(world.net.actions) == sorted([("like", post.ref.id), ("repost", post.ref.id), ("follow", post.author.id)])
    assert {a["text"] for a in world.tg.callback_answers} == {
        "Liked @alice.fake's post.",
        "Reposted @alice.fake's post.",
        "Now following @alice.fake from the team account.",
    }
    # Reply: a ForceReply prompt, and the answer to the prompt is the reply on the network.
    world.tg.press(world.group.id, world.boss, relayed.message_id, data["Reply"])
    prompt = (await world.tg.wait_messages(world.group.id, 3))[-1]
    assert prompt.force_reply and "@alice.fake" in prompt.text
    await world.tg.wait_until(lambda: len(world.tg.callback_answers) == 4)
    world.tg.send_text(world.group.id, world.boss, "via the button", reply_to=prompt.message_id)
    done = (await world.tg.wait_messages(world.group.id, 4))[-1]
    assert ("reply", post.ref.id, "via the button") in world.net.actions
    assert done.text.startswith("Replied to @alice.fake")
    # A member's press is refused with an alert.
    world.tg.press(world.group.id, world.member, relayed.message_id, data["Like"])
    await world.tg.wait_until(lambda: len(world.tg.callback_answers) == 5)
    assert world.tg.callback_answers[-1]["show_alert"] and "senders" in world.tg.callback_answers[-1]["text"]


async def test_429_storm_in_one_chat_does_not_stall_another(world: World) -> None:
    other = world.tg.add_group("Support", admins=[world.boss])
    await world.command(world.group, world.boss, "/follow alice.fake")
    await world.command(other, world.boss, "/follow alice.fake")
    world.tg.storm(world.group.id, retry_after=2, count=2)
    await world.net.publish("alice.fake", "storm post")
    calm = (await world.tg.wait_messages(other.id, 2, timeout=3))[-1]
    assert "storm post" in calm.text
    stormy = (await world.tg.wait_messages(world.group.id, 2, timeout=10))[-1]
    assert "storm post" in stormy.text
    assert stormy.at - calm.at >= 3.0  # waited retry_after (2 s) twice, for that chat only
    assert len([r for r in world.tg.rejected if r[2].code == 429]) == 2


async def test_blocked_chat_is_paused_and_others_continue(world: World) -> None:
    await world.command(world.boss_chat, world.boss, "/follow alice.fake")
    await world.command(world.group, world.boss, "/follow alice.fake")
    world.tg.block(world.boss_chat.id)
    await world.net.publish("alice.fake", "first")
    await world.tg.wait_messages(world.group.id, 2)
    paused: dict[str, str] = {}
    for _ in range(100):  # the pause is committed right after the refused send
        paused = await world.bridge.store.paused_destinations()
        if paused:
            break
        await asyncio.sleep(0.05)
    assert "blocked" in paused[f"telegram:{world.boss_chat.id}"]
    await world.net.publish("alice.fake", "second")
    assert "second" in (await world.tg.wait_messages(world.group.id, 3))[-1].text
    assert len(world.tg.rejected) == 1  # the paused chat is not tried again


async def test_group_migration_subscriptions_follow(world: World) -> None:
    await world.command(world.group, world.boss, "/follow alice.fake")
    new_id = world.tg.migrate(world.group.id)
    await world.net.publish("alice.fake", "after the upgrade")
    [relayed] = await world.tg.wait_messages(new_id, 1)
    assert "after the upgrade" in relayed.text
    # Replies in the new chat reach the post.
    world.tg.send_text(new_id, world.boss, "answer", reply_to=relayed.message_id)
    await world.tg.wait_messages(new_id, 2)
    assert world.net.actions and world.net.actions[-1][0] == "reply"


async def test_send_to_a_group_that_migrated_unnoticed(world: World) -> None:
    await world.command(world.group, world.boss, "/follow alice.fake")
    # The upgrade happens without the service message reaching the bot: the send learns it.
    new_id = world.tg.migrate(world.group.id, announce=False)
    await world.net.publish("alice.fake", "found the new chat")
    [relayed] = await world.tg.wait_messages(new_id, 1)
    assert "found the new chat" in relayed.text


async def test_help_and_start(world: World) -> None:
    help_text = await world.command(world.group, world.member, "/help")
    assert "/follow <handle>" in help_text and "/watch <query>" in help_text
    welcome = await world.command(world.boss_chat, world.boss, "/start")
    assert welcome.startswith("Welcome!") and "/follow <handle>" in welcome


async def test_pacing_keeps_within_telegram_limits(world: World) -> None:
    world.tg.enforce_rate_limits = True
    await world.command(world.boss_chat, world.boss, "/follow alice.fake")
    for n in range(3):
        await world.net.publish("alice.fake", f"burst {n}")
    messages = await world.tg.wait_messages(world.boss_chat.id, 4, timeout=8)
    assert not world.tg.rejected  # no 429: the adapter paced itself to 1 message/s in a private chat
    assert [m.text.split("\n\n")[1] for m in messages[1:]] == ["burst 0", "burst 1", "burst 2"]
    assert all(b.at - a.at >= 0.95 for a, b in itertools.pairwise(messages))


async def test_bot_removed_from_a_group_pauses_it(world: World) -> None:
    await world.command(world.group, world.boss, "/follow alice.fake")
    world.tg.kick_bot(world.group.id, world.boss)
    paused: dict[str, str] = {}
    for _ in range(100):
        paused = await world.bridge.store.paused_destinations()
        if paused:
            break
        await asyncio.sleep(0.05)
    assert paused == {f"telegram:{world.group.id}": "the bot was removed from the chat"}
    await world.net.publish("alice.fake", "nobody hears this")
    await asyncio.sleep(0.3)
    assert not world.tg.rejected  # nothing is sent to a chat the bot has left


async def test_follow_in_a_channel(world: World) -> None:
    channel = world.tg.add_group("News", kind="channel")
    update = world.tg.channel_post(channel.id, "/follow alice.fake")
    answer = (await world.tg.wait_messages(channel.id, 1))[0]
    assert "Following @alice.fake" in answer.text and answer.reply_to == update["channel_post"]["message_id"]
    await world.net.publish("alice.fake", "on the channel")
    assert "on the channel" in (await world.tg.wait_messages(channel.id, 2))[-1].text


async def test_start_and_help_say_this_chats_destination_and_your_id(world: World) -> None:
    answer = await world.command(world.group, world.member, "/start")
    assert f"This chat is telegram:{world.group.id}: use it as --to telegram:{world.group.id}" in answer
    assert f'to = ["telegram:{world.group.id}"]' in answer
    assert f'You are telegram:{world.member["id"]}: an admin adds you with admins = ["telegram:{world.member["id"]}"]' in answer
    forum = world.tg.add_group("Forum", admins=[world.boss], kind="supergroup", forum=True)
    answer = await world.command(forum, world.boss, "/help", thread_id=9)
    assert f"--to telegram:{forum.id}/9" in answer and f"The whole chat is telegram:{forum.id}" in answer


async def test_a_public_channel_named_by_its_username_gets_the_posts(world: World) -> None:
    channel = world.tg.add_group("Acme news", admins=[world.boss], kind="channel", username="acme_news")
    target = TelegramAdapter.parse_target("@Acme_News")
    assert str(target) == "telegram:@acme_news"
    # What `bridge follow alice.fake --to telegram:@acme_news` does, through the same command layer.
    answer = await world.bridge.commands.handle(ChatEvent(EventKind.COMMAND, target, CLI_USER, command="follow", args="alice.fake"))
    assert answer.ok and "Following @alice.fake on fakenet in telegram:@acme_news" in answer.text
    await world.net.publish("alice.fake", "news for the channel")
    relayed = (await world.tg.wait_messages(channel.id, 1))[-1]
    assert "news for the channel" in relayed.text
    assert not world.tg.rejected


async def test_pause_holds_a_room_until_an_admin_resumes_it(world: World) -> None:
    await world.command(world.group, world.boss, "/follow alice.fake")
    assert "Only this room's admins" in await world.command(world.group, world.member, "/pause")
    paused = await world.command(world.group, world.boss, "/pause")
    assert paused.startswith("Paused: nothing is relayed here until /resume")
    await world.net.publish("alice.fake", "while paused")
    # Someone acting in the room does not end a pause asked for on purpose (it does end one
    # caused by a failure); /status says how the room comes back.
    status = await world.command(world.group, world.member, "/status")
    assert "This room is paused" in status and "it resumes with /resume" in status
    assert "Resumed" in await world.command(world.group, world.boss, "/resume")
    await world.net.publish("alice.fake", "after the pause")
    for _ in range(100):
        texts = [m.text for m in world.tg.messages(world.group.id)]
        if any("after the pause" in t for t in texts):
            break
        await asyncio.sleep(0.05)
    assert any("after the pause" in t for t in texts)
    assert not any("while paused" in t for t in texts)


async def test_a_token_revoked_while_running_is_reported_once_and_picked_up_when_it_works(
    tg: TelegramEmulator, tmp_path: Path
) -> None:
    world = await start_world(tg, f"sqlite://{tmp_path}/bridge.sqlite3", telegram={"login_check_interval": 1})
    store = world.bridge.store
    try:
        tg.revoke_token()
        deadline = time.monotonic() + 15
        while (health := (await store.platform_health()).get("telegram")) is None or health.state != "down":
            assert time.monotonic() < deadline, "the refused token was never reported"
            await asyncio.sleep(0.1)
        assert "Telegram refused the bot token" in health.reason and "check telegram.token" in health.reason
        assert tg.token not in health.reason
        since = health.since

        # calm: about one getMe a second here (login_check_interval), no new report
        calls = sum(1 for method, _ in tg.requests if method == "getMe")
        await asyncio.sleep(3)
        assert (await store.platform_health())["telegram"].since == since
        assert sum(1 for method, _ in tg.requests if method == "getMe") - calls <= 5

        tg.revoke_token(False)  # the token works again: picked up without a restart
        deadline = time.monotonic() + 15
        while (await store.platform_health())["telegram"].state != "ok":
            assert time.monotonic() < deadline, "the working token was never noticed"
            await asyncio.sleep(0.1)
        # polling runs again: a command is answered
        answer = await asyncio.wait_for(world.command(world.boss_chat, world.boss, "/help"), 15)
        assert "This chat is telegram:" in answer
    finally:
        await world.bridge.stop()
