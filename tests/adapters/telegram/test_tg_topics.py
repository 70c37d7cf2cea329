"""End to end over the Bot API emulator: a forum topic per followed account (/follow … --topic),
kept across restarts, made again after deletion, reopened after closing; replies inside a topic;
and the room's compact format (/format)."""

from __future__ import annotations

from pathlib import Path

from bridge.app import Bridge
from bridge.config import config_from_dict
from tests.adapters.telegram.tg_world import CLASSES, World
from tests.emulators.telegram import Chat, SentMessage, TelegramEmulator


async def restart(world: World) -> None:
    """Stop the bridge and start a new one on the same database and emulator (the fixture stops
    the last one)."""
    await world.bridge.stop()
    world.bridge = Bridge(world.bridge.config, adapter_classes=CLASSES)
    await world.bridge.start()
    world.net = world.bridge.networks["fakenet"]  # type: ignore[assignment]


def forum(world: World) -> Chat:
    return world.tg.add_group("Prospects", admins=[world.boss], kind="supergroup", forum=True)


def in_topic(world: World, chat: Chat, thread_id: int) -> list[SentMessage]:
    return world.tg.messages(chat.id, thread_id)


async def relayed_in(world: World, chat: Chat, thread_id: int, text: str) -> SentMessage:
    """Wait until a message holding ``text`` is in topic ``thread_id``; return it."""
    await world.tg.wait_until(lambda: any(text in m.text for m in in_topic(world, chat, thread_id)), timeout=15)
    return next(m for m in in_topic(world, chat, thread_id) if text in m.text)


async def test_a_topic_per_account_reused_after_a_restart(world: World) -> None:
    room = forum(world)
    answer = await world.command(room, world.boss, "/follow alice.fake --topic")
    assert "Following @alice.fake" in answer and "in its own topic '@alice.fake'" in answer
    assert "Following @bob.fake" in await world.command(room, world.boss, "/follow bob.fake --topic")
    assert "topic:on" in await world.command(room, world.boss, "/subs")

    await world.net.publish("alice.fake", "alice one")
    await world.net.publish("bob.fake", "bob one")
    await world.tg.wait_until(lambda: len(world.tg.topics(room.id)) == 2, timeout=15)
    topics = {t.name: t.message_thread_id for t in world.tg.topics(room.id)}
    assert set(topics) == {"@alice.fake", "@bob.fake"}
    await relayed_in(world, room, topics["@alice.fake"], "alice one")
    await relayed_in(world, room, topics["@bob.fake"], "bob one")

    await world.net.publish("alice.fake", "alice two")
    await relayed_in(world, room, topics["@alice.fake"], "alice two")

    await restart(world)
    await world.net.publish("alice.fake", "alice after the restart", id="after-restart")
    await relayed_in(world, room, topics["@alice.fake"], "alice after the restart")
    assert len(world.tg.topics(room.id, alive=False)) == 2  # reused, none created again
    assert sum(1 for method, _ in world.tg.requests if method == "createForumTopic") == 2
    # Every post went into its topic, none into the group's General topic.
    assert not [m for m in world.tg.messages(room.id) if m.thread_id is None and "Open original" in m.text]


async def test_a_deleted_topic_is_made_again_and_a_closed_one_reopened(world: World) -> None:
    room = forum(world)
    await world.command(room, world.boss, "/follow alice.fake --topic")
    await world.net.publish("alice.fake", "first")
    await world.tg.wait_until(lambda: len(world.tg.topics(room.id)) == 1, timeout=15)
    [first] = world.tg.topics(room.id)
    await relayed_in(world, room, first.message_thread_id, "first")

    world.tg.delete_topic(room.id, first.message_thread_id)
    await world.net.publish("alice.fake", "after the deletion")
    await world.tg.wait_until(lambda: len(world.tg.topics(room.id)) == 1 and world.tg.topics(room.id)[0] != first, 15)
    [second] = world.tg.topics(room.id)
    assert second.name == "@alice.fake" and second.message_thread_id != first.message_thread_id
    await relayed_in(world, room, second.message_thread_id, "after the deletion")

    world.tg.close_topic(room.id, second.message_thread_id)
    await world.net.publish("alice.fake", "after the closing")
    await relayed_in(world, room, second.message_thread_id, "after the closing")
    assert not second.closed
    assert any(method == "reopenForumTopic" for method, _ in world.tg.requests)
    assert len(world.tg.topics(room.id)) == 1  # reopened, not made again
    # Nothing failed for good, and the room was not paused.
    assert "paused" not in await world.command(room, world.boss, "/status")


async def test_a_reply_inside_a_topic_goes_to_the_prospects_post(world: World) -> None:
    room = forum(world)
    await world.command(room, world.boss, "/follow alice.fake --topic")
    post = await world.net.publish("alice.fake", "what do you think?")
    await world.tg.wait_until(lambda: len(world.tg.topics(room.id)) == 1, timeout=15)
    topic = world.tg.topics(room.id)[0].message_thread_id
    relayed = await relayed_in(world, room, topic, "what do you think?")

    # A message in the topic that answers nothing: Telegram shows it as a reply to the topic's
    # first message; it is conversation, not a reply to a post.
    world.tg.send_text(room.id, world.boss, "chatting among us", thread_id=topic)
    world.tg.send_text(room.id, world.boss, "Great point!", reply_to=relayed.message_id, thread_id=topic)
    answer = await relayed_in(world, room, topic, "Replied to @alice.fake")
    assert world.net.actions == [("reply", post.ref.id, "Great point!")]
    assert answer.thread_id == topic


async def test_a_topic_in_a_group_that_is_not_a_forum_says_why(world: World) -> None:
    await world.command(world.group, world.boss, "/follow alice.fake --topic")
    await world.net.publish("alice.fake", "nowhere to go")
    await world.tg.wait_until(lambda: any("not a forum" in m.text for m in world.tg.messages(world.group.id)), 15)
    told = next(m for m in world.tg.messages(world.group.id) if "not a forum" in m.text)
    assert "Could not deliver a post by @alice.fake" in told.text and "topic:off" in told.text
    # The room is not paused: /filter … topic:off relays the next posts as usual.
    assert "topic" not in (await world.command(world.group, world.boss, "/filter 1 topic:off")).split("now:")[1]
    await world.net.publish("alice.fake", "in the group")
    await world.tg.wait_until(lambda: any("in the group" in m.text for m in world.tg.messages(world.group.id)), 15)


async def test_format_compact_by_room_admins_only(world: World) -> None:
    await world.command(world.group, world.boss, "/follow alice.fake")
    refused = await world.command(world.group, world.member, "/format compact")
    assert "Only this room's admins" in refused
    assert "Format of this room: full" in await world.command(world.group, world.member, "/format")

    assert "Format compact" in await world.command(world.group, world.boss, "/format compact")
    assert "(format compact)" in await world.command(world.group, world.member, "/subs")
    text = "Our new pricing page is live, with plans for teams of every size and a free trial for all"
    post = await world.net.publish("alice.fake", text + " " + "more " * 50)
    await world.tg.wait_until(lambda: any("pricing" in m.text for m in world.tg.messages(world.group.id)), 15)
    compact = next(m for m in world.tg.messages(world.group.id) if "pricing" in m.text)
    assert "\n" not in compact.text
    assert compact.text.startswith("Alice @alice.fake: Our new pricing page is live")
    assert compact.text.endswith("… · open") and len(compact.text) < 160
    assert ("open", post.url) in compact.links()
    assert [b["text"] for b in compact.buttons] == ["Open", "Reply", "Like", "Repost", "Follow"]

    assert "Format full" in await world.command(world.group, world.boss, "/format full")
    await world.net.publish("alice.fake", "a post shown whole")
    await world.tg.wait_until(lambda: any("shown whole" in m.text for m in world.tg.messages(world.group.id)), 15)
    full = next(m for m in world.tg.messages(world.group.id) if "shown whole" in m.text)
    assert "Open original" in full.text and "\n" in full.text


async def test_compact_format_survives_a_restart(world: World) -> None:
    await world.command(world.group, world.boss, "/follow alice.fake")
    await world.command(world.group, world.boss, "/format compact")
    await restart(world)
    await world.net.publish("alice.fake", "still compact", id="after-restart")
    await world.tg.wait_until(lambda: any("still compact" in m.text for m in world.tg.messages(world.group.id)), 15)
    relayed = next(m for m in world.tg.messages(world.group.id) if "still compact" in m.text)
    assert relayed.text == "Alice @alice.fake: still compact · open"



async def test_format_asked_inside_a_topic_is_the_whole_forums(world: World) -> None:
    room = forum(world)
    await world.command(room, world.boss, "/follow alice.fake --topic")
    await world.net.publish("alice.fake", "first, in full")
    await world.tg.wait_until(lambda: len(world.tg.topics(room.id)) == 1, timeout=15)
    topic = world.tg.topics(room.id)[0].message_thread_id
    assert "Open original" in (await relayed_in(world, room, topic, "first, in full")).text
    assert "Format compact" in await world.command(room, world.boss, "/format compact", thread_id=topic)
    await world.net.publish("alice.fake", "then compact")
    assert (await relayed_in(world, room, topic, "then compact")).text == "Alice @alice.fake: then compact · open"


async def test_a_config_subscription_with_topic_true_relays_into_a_topic(tg: TelegramEmulator, tmp_path: Path) -> None:
    boss = tg.add_user("Boss", "boss")
    room = tg.add_group("Prospects", admins=[boss], kind="supergroup", forum=True)
    data = {
        "database": {"url": f"sqlite://{tmp_path}/bridge.sqlite3"},
        "bridge": {"admins": [], "shutdown_timeout": 2},
        "telegram": {"token": tg.token, "api_url": tg.url, "poll_timeout": 1},
        "fakenet": {},
        "subscription": [{"network": "fakenet", "follow": "alice.fake", "to": [f"telegram:{room.id}"], "topic": True}],
    }
    bridge = Bridge(config_from_dict(data, adapter_classes=CLASSES), adapter_classes=CLASSES)
    await bridge.start()
    try:
        await tg.wait_until(lambda: len(bridge.matcher) == 1, timeout=15)
        await bridge.networks["fakenet"].publish("alice.fake", "from the config")  # type: ignore[attr-defined]
        await tg.wait_until(lambda: len(tg.topics(room.id)) == 1, timeout=15)
        [topic] = tg.topics(room.id)
        assert topic.name == "@alice.fake"
        await tg.wait_until(lambda: any("from the config" in m.text for m in tg.messages(room.id, topic.message_thread_id)), 15)
    finally:
        await bridge.stop()
