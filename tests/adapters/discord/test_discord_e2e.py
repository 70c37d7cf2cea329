"""End to end: the real core (bridge.app.Bridge) with the Discord adapter over real discord.py
against the emulator, and the fake network from tests.fakes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

from discord_world import StartBridge, World

from bridge.model import Media
from tests.emulators.discord import DiscordEmulator
from tests.fakes import FakeNetwork


async def eventually(read: Callable[[], Awaitable], ok: Callable[[object], bool], timeout: float = 5) -> None:
    """Poll ``read`` until ``ok`` holds (for state the core keeps in its database)."""
    for _ in range(int(timeout / 0.05)):
        if ok(await read()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def follow(emulator: DiscordEmulator, channel: int, user: int, handle: str) -> dict:
    record = await emulator.slash(channel, user, "follow", handle=handle)
    return await emulator.wait_shown(record)


async def test_follow_by_admin_and_refusal_for_non_admin(
    emulator: DiscordEmulator, world: World, start_bridge: StartBridge
) -> None:
    await start_bridge()
    refused = await emulator.slash(world.feed, world.member, "follow", handle="alice.fake")
    shown = await emulator.wait_shown(refused)
    assert shown["content"].startswith("Only this room's admins")
    assert refused.is_ephemeral(shown)

    done = await emulator.slash(world.feed, world.admin, "follow", handle="alice.fake")
    shown = await emulator.wait_shown(done)
    assert shown["content"].startswith("Following @alice.fake")
    assert not done.is_ephemeral(shown)  # it changed the channel's feeds: everyone sees it

    subs = await emulator.slash(world.feed, world.member, "subs")
    assert "follow @alice.fake" in (await emulator.wait_shown(subs))["content"]


async def test_relay_embed_with_image_long_text_and_everyone(
    emulator: DiscordEmulator, world: World, start_bridge: StartBridge
) -> None:
    bridge = await start_bridge()
    net: FakeNetwork = bridge.adapters["fakenet"]
    await follow(emulator, world.feed, world.admin, "alice.fake")
    await net.publish("alice.fake", "hello @everyone and @here <@&42>", media=(Media("image", "https://cdn.test/a.jpg"),))
    await net.publish("alice.fake", "long " * 1200)
    first, second, third = await emulator.wait_sent(world.feed, 3)
    assert all(m.payload["allowed_mentions"] == {"parse": []} for m in (first, second, third))
    assert "@everyone" in first.embeds[0]["description"]
    assert first.embeds[0]["image"]["url"] == "https://cdn.test/a.jpg"
    assert first.embeds[0]["author"]["name"] == "Alice (@alice.fake)"
    # Too long for one embed: continued in a second message, nothing cut.
    texts = [m.embeds[0]["description"] for m in (second, third)]
    assert all(len(t) <= 4096 for t in texts) and "".join(texts).strip() == ("long " * 1200).strip()


async def test_buttons_work_and_keep_working_after_a_restart(
    emulator: DiscordEmulator, world: World, start_bridge: StartBridge
) -> None:
    bridge = await start_bridge()
    net: FakeNetwork = bridge.adapters["fakenet"]
    await follow(emulator, world.feed, world.admin, "alice.fake")
    post = await net.publish("alice.fake", "a post worth a like")
    [message] = await emulator.wait_sent(world.feed, 1)
    tokens = {b["label"]: b.get("custom_id") for b in message.buttons()}

    like = await emulator.press(world.feed, world.member, message, tokens["Like"])
    assert "Liked" in (await emulator.wait_shown(like))["content"]
    refused = await emulator.press(world.feed, world.outsider, message, tokens["Repost"])
    shown = await emulator.wait_shown(refused)
    assert refused.is_ephemeral(shown)
    assert ("repost", post.ref.id) not in [a[:2] for a in net.actions]

    # Reply button → modal → the text goes out as a reply to that post.
    pressed = await emulator.press(world.feed, world.member, message, tokens["Reply"])
    [modal] = await emulator.wait_interaction(pressed)
    assert modal["type"] == 9
    submit = await emulator.submit_modal(world.feed, world.member, modal["data"]["custom_id"], {"text": "Thanks!"})
    assert "Replied" in (await emulator.wait_shown(submit))["content"]
    assert any(a[0] == "reply" and "Thanks!" in a for a in net.actions)

    bridge = await start_bridge()  # restart on the same database; the old message's buttons still work
    net = bridge.adapters["fakenet"]
    for label, verb in (("Repost", "repost"), ("Follow", "follow")):
        record = await emulator.press(world.feed, world.member, message, tokens[label])
        shown = await emulator.wait_shown(record)
        assert shown["content"] and record.is_ephemeral(shown)
        assert net.actions[-1][0] == verb
    assert len(net.actions) == 2


async def test_reply_by_message_with_and_without_visible_content(
    emulator: DiscordEmulator, world: World, start_bridge: StartBridge
) -> None:
    bridge = await start_bridge()
    net: FakeNetwork = bridge.adapters["fakenet"]
    await follow(emulator, world.feed, world.admin, "alice.fake")
    post = await net.publish("alice.fake", "reply to me")
    [message] = await emulator.wait_sent(world.feed, 1)

    await emulator.user_message(world.feed, world.member, f"<@{emulator.application_id}> Great!", reply_to=message.id)
    answer = (await emulator.wait_sent(world.feed, 2))[1]
    assert answer.message["content"].startswith("Replied to @alice.fake")
    [action] = net.actions
    assert action[0] == "reply" and post.ref.id in str(action) and "Great!" in action

    await emulator.user_message(world.feed, world.member, "Great!", reply_to=message.id, content_visible=False)
    hint = (await emulator.wait_sent(world.feed, 3))[2]
    assert "Reply button" in hint.message["content"]
    assert len(net.actions) == 1


async def test_thread_per_post_and_reply_inside_it(emulator: DiscordEmulator, world: World, start_bridge: StartBridge) -> None:
    bridge = await start_bridge()
    net: FakeNetwork = bridge.adapters["fakenet"]
    followed = await follow(emulator, world.feed, world.admin, "alice.fake")
    sub_id = re.search(r"#(\d+)", followed["content"])[1]
    record = await emulator.slash(world.feed, world.admin, "filter", subscription=sub_id, rules="thread:on")
    assert "thread:on" in (await emulator.wait_shown(record))["content"]
    post = await net.publish("alice.fake", "discuss this")
    [message] = await emulator.wait_sent(world.feed, 1)
    thread = await emulator.wait_channel(message.id)  # a thread under a message has the message's id
    assert thread.type == 11 and thread.parent_id == world.feed

    await emulator.user_message(thread.id, world.member, f"<@{emulator.application_id}> my answer")
    answer = (await emulator.wait_sent(thread.id, 1))[0]
    assert answer.message["content"].startswith("Replied to @alice.fake")
    [action] = net.actions
    assert action[0] == "reply" and post.ref.id in str(action) and "my answer" in action


async def test_429_on_one_channel_while_another_keeps_receiving(
    emulator: DiscordEmulator, world: World, start_bridge: StartBridge
) -> None:
    bridge = await start_bridge()
    net: FakeNetwork = bridge.adapters["fakenet"]
    await follow(emulator, world.feed, world.admin, "alice.fake")
    await follow(emulator, world.other, world.admin, "alice.fake")
    emulator.rate_limit(world.feed, 120.0, times=5)
    await net.publish("alice.fake", "one")
    await net.publish("alice.fake", "two")
    received = await emulator.wait_sent(world.other, 2)
    assert [m.embeds[0]["description"] for m in received] == ["one", "two"]
    assert emulator.bot_messages(world.feed) == []


async def test_gateway_disconnect_resumes_without_losing_or_doubling(
    emulator: DiscordEmulator, world: World, start_bridge: StartBridge
) -> None:
    bridge = await start_bridge()
    net: FakeNetwork = bridge.adapters["fakenet"]
    await follow(emulator, world.feed, world.admin, "alice.fake")
    await net.publish("alice.fake", "before")
    [before] = await emulator.wait_sent(world.feed, 1)

    await emulator.drop_gateway()
    await net.publish("alice.fake", "during")
    await emulator.user_message(world.feed, world.member, f"<@{emulator.application_id}> hi", reply_to=before.id)
    await emulator.wait_connected()
    await emulator.wait_sent(world.feed, 3)  # the relay and the answer to the replayed reply
    await net.publish("alice.fake", "after")
    await emulator.wait_sent(world.feed, 4)
    await asyncio.sleep(0.3)
    relayed = [m.embeds[0]["description"] for m in emulator.bot_messages(world.feed) if m.embeds]
    assert relayed == ["before", "during", "after"]
    assert [a[0] for a in net.actions] == ["reply"]
    assert (emulator.identifies, emulator.resumes) == (1, 1)


async def test_deleted_channel_is_paused_and_others_continue(
    emulator: DiscordEmulator, world: World, start_bridge: StartBridge
) -> None:
    bridge = await start_bridge()
    net: FakeNetwork = bridge.adapters["fakenet"]
    await follow(emulator, world.feed, world.admin, "alice.fake")
    await follow(emulator, world.other, world.admin, "alice.fake")
    await emulator.delete_channel(world.feed)
    await eventually(lambda: bridge.store.paused_destinations(), lambda paused: f"discord:{world.feed}" in paused)
    await net.publish("alice.fake", "still here")
    [message] = await emulator.wait_sent(world.other, 1)
    assert message.embeds[0]["description"] == "still here"
    assert emulator.bot_messages(world.feed) == []


async def test_long_post_with_a_5xx_on_part_2_arrives_once_in_order(
    emulator: DiscordEmulator, world: World, start_bridge: StartBridge
) -> None:
    bridge = await start_bridge()
    net: FakeNetwork = bridge.adapters["fakenet"]
    await follow(emulator, world.feed, world.admin, "alice.fake")
    emulator.fail_nth(world.feed, 2, 503, "Service Unavailable")  # part 2's first try
    creates_before = sum(1 for m, p in emulator.requests if m == "POST" and p.endswith(f"/channels/{world.feed}/messages"))
    text = " ".join(f"word{n}" for n in range(1400))  # about 10,000 characters: three messages
    await net.publish("alice.fake", text)
    messages = await emulator.wait_sent(world.feed, 3, timeout=15)
    await asyncio.sleep(1.0)  # a duplicate would show up now
    messages = emulator.bot_messages(world.feed)
    assert len(messages) == 3
    shown = "".join(m.embeds[0]["description"] for m in messages)
    assert shown.split() == text.split()  # every part once, in order
    assert [m.embeds[0].get("footer", {}).get("text", "")[-11:] for m in messages[1:]] == ["part 2 of 3", "part 3 of 3"]
    # The retry resumed at part 2: part 1 was not even asked for again.
    creates = [p for m, p in emulator.requests if m == "POST" and p.endswith(f"/channels/{world.feed}/messages")]
    assert len(creates) - creates_before == 4  # part 1, part 2 (503), part 2, part 3


async def test_help_says_this_channels_destination_and_your_id(
    emulator: DiscordEmulator, world: World, start_bridge: StartBridge
) -> None:
    await start_bridge()
    shown = await emulator.wait_shown(await emulator.slash(world.feed, world.member, "help"))
    assert f"This chat is discord:{world.feed}: use it as --to discord:{world.feed}" in shown["content"]
    assert f'You are discord:{world.member}: an admin adds you with admins = ["discord:{world.member}"]' in shown["content"]
    assert "/pause, /resume" in shown["content"]


async def test_pause_and_resume_are_slash_commands_for_room_admins(
    emulator: DiscordEmulator, world: World, start_bridge: StartBridge
) -> None:
    await start_bridge()
    refused = await emulator.wait_shown(await emulator.slash(world.feed, world.member, "pause"))
    assert refused["content"].startswith("Only this room's admins")
    paused = await emulator.wait_shown(await emulator.slash(world.feed, world.admin, "pause"))
    assert paused["content"].startswith("Paused: nothing is relayed here until /resume")
    resumed = await emulator.wait_shown(await emulator.slash(world.feed, world.admin, "resume"))
    assert resumed["content"].startswith("Resumed")
