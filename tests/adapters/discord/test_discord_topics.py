"""End to end over real discord.py and the emulator: one forum post per followed account in a
forum channel, one thread per account in a text channel (/follow thread:True), kept across a
restart, unarchived after archiving, made again after deletion; replies inside a thread; and
/format compact."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from discord_world import StartBridge, World

from bridge.cli.rooms import CLI_USER
from bridge.model import ChatEvent, ChatTarget, EventKind
from tests.emulators.discord import DiscordEmulator, SentMessage
from tests.fakes import FakeNetwork


async def sent_with(emulator: DiscordEmulator, channel_id: int, text: str, timeout: float = 15) -> SentMessage:
    """Wait until the bot sent a message holding ``text`` (content or embed) to ``channel_id``."""

    def found() -> SentMessage | None:
        for m in emulator.bot_messages(channel_id):
            shown = " ".join([m.payload.get("content") or "", *(e.get("description") or "" for e in m.embeds)])
            if text in shown:
                return m
        return None

    await until(lambda: found() is not None, timeout)
    return found()  # type: ignore[return-value]


async def until(condition: Callable[[], bool], timeout: float = 15) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def threads_of(emulator: DiscordEmulator, parent: int, count: int) -> list:
    await until(lambda: len(emulator.threads(parent)) >= count)
    return emulator.threads(parent)


async def test_a_forum_post_per_account_reused_after_a_restart_and_made_again_after_deletion(
    emulator: DiscordEmulator, world: World, start_bridge: StartBridge
) -> None:
    forum = emulator.add_channel(world.guild, "prospects", forum=True)
    bridge = await start_bridge()
    # A forum channel has no message box: an admin sets it up from the command line.
    for handle in ("alice.fake", "bob.fake"):
        event = ChatEvent(EventKind.COMMAND, ChatTarget("discord", str(forum)), CLI_USER, command="follow", args=f"{handle} --topic")
        answer = await bridge.commands.handle(event)
        assert answer.ok and f"in its own topic '@{handle}'" in answer.text
    net: FakeNetwork = bridge.adapters["fakenet"]
    await net.publish("alice.fake", "alice one")
    await net.publish("bob.fake", "bob one")
    posts = {t.name: t for t in await threads_of(emulator, forum, 2)}
    assert set(posts) == {"@alice.fake", "@bob.fake"}
    alice = posts["@alice.fake"].id
    starter = emulator.bot_messages(alice)[0]
    assert starter.payload["content"].startswith("Posts of @alice.fake") and starter.payload["allowed_mentions"] == {"parse": []}
    await sent_with(emulator, alice, "alice one")
    await sent_with(emulator, posts["@bob.fake"].id, "bob one")

    bridge = await start_bridge()
    net = bridge.adapters["fakenet"]
    await net.publish("alice.fake", "alice after the restart", id="after-restart")
    await sent_with(emulator, alice, "alice after the restart")
    assert len(emulator.threads(forum, alive=False)) == 2

    await emulator.delete_thread(alice)
    await net.publish("alice.fake", "alice after the deletion", id="after-deletion")
    await until(lambda: any(t.name == "@alice.fake" for t in emulator.threads(forum)))
    [again] = [t for t in emulator.threads(forum) if t.name == "@alice.fake"]
    assert again.id != alice
    await sent_with(emulator, again.id, "alice after the deletion")
    # The deletion paused nothing: bob's forum post still receives.
    await net.publish("bob.fake", "bob still here", id="bob-2")
    await sent_with(emulator, posts["@bob.fake"].id, "bob still here")


async def test_a_thread_per_account_in_a_text_channel_unarchived_and_replied_in(
    emulator: DiscordEmulator, world: World, start_bridge: StartBridge
) -> None:
    bridge = await start_bridge()
    net: FakeNetwork = bridge.adapters["fakenet"]
    refused = await emulator.slash(world.feed, world.member, "follow", handle="alice.fake", thread=True)
    assert (await emulator.wait_shown(refused))["content"].startswith("Only this room's admins")
    done = await emulator.slash(world.feed, world.admin, "follow", handle="alice.fake", thread=True)
    assert "in its own topic '@alice.fake'" in (await emulator.wait_shown(done))["content"]

    post = await net.publish("alice.fake", "what do you think?")
    [thread] = await threads_of(emulator, world.feed, 1)
    assert thread.name == "@alice.fake" and thread.type == 11
    relayed = await sent_with(emulator, thread.id, "what do you think?")
    assert not [m for m in emulator.bot_messages(world.feed) if m.embeds]  # nothing in the channel itself

    # A reply inside the thread goes to the prospect's post.
    await emulator.user_message(thread.id, world.member, f"<@{emulator.application_id}> Great point!", reply_to=int(relayed.id))
    await sent_with(emulator, thread.id, "Replied to @alice.fake")
    assert net.actions == [("reply", post.ref.id, "Great point!")]

    await emulator.archive_thread(thread.id)
    await net.publish("alice.fake", "after the archiving")
    await sent_with(emulator, thread.id, "after the archiving")
    assert not emulator.channels[thread.id].archived
    assert ("PATCH", f"/api/v10/channels/{thread.id}") in emulator.requests
    assert len(emulator.threads(world.feed)) == 1


async def test_format_compact_is_one_line_and_for_room_admins(
    emulator: DiscordEmulator, world: World, start_bridge: StartBridge
) -> None:
    bridge = await start_bridge()
    net: FakeNetwork = bridge.adapters["fakenet"]
    await emulator.wait_shown(await emulator.slash(world.feed, world.admin, "follow", handle="alice.fake"))
    refused = await emulator.slash(world.feed, world.member, "format", style="compact")
    assert (await emulator.wait_shown(refused))["content"].startswith("Only this room's admins")
    done = await emulator.slash(world.feed, world.admin, "format", style="compact")
    assert (await emulator.wait_shown(done))["content"].startswith("Format compact")

    post = await net.publish("alice.fake", "Launch day: **bold** claims and @everyone " + "more words " * 30)
    compact = await sent_with(emulator, world.feed, "Launch day")
    content = compact.payload["content"]
    assert not compact.embeds and "\n" not in content
    assert content.startswith("**Alice (@alice.fake)**: Launch day: \\*\\*bold\\*\\* claims")
    assert content.endswith(f"… <{post.url}>") and len(content) < 200
    assert compact.payload["allowed_mentions"] == {"parse": []}
    assert [b["label"] for b in compact.buttons()] == ["Open", "Reply", "Like", "Repost", "Follow"]

    await emulator.wait_shown(await emulator.slash(world.feed, world.admin, "format", style="full"))
    await net.publish("alice.fake", "a post shown whole")
    full = await sent_with(emulator, world.feed, "a post shown whole")
    assert full.embeds and not full.payload.get("content")
