"""The adapter over real discord.py and real sockets against the emulator, with a fake core."""

from __future__ import annotations

import asyncio
import time

import discord
import pytest
from discord_world import World, make_delivery, make_post

from adapters.discord import DiscordAdapter
from bridge.errors import AuthFailed, DestinationUnavailable, RateLimited
from bridge.model import Answer, ChatTarget, EventKind, Media, SubscriptionSummary
from tests.emulators.discord import DiscordEmulator
from tests.fakehost import FakeHost


async def test_relay_is_one_embed_with_image_buttons_and_no_mentions(
    emulator: DiscordEmulator, adapter: DiscordAdapter, world: World
) -> None:
    post = make_post("@everyone look <@&123> @here", media=(Media("image", "https://cdn.test/p.jpg"),))
    sent = await adapter.send(make_delivery(world.feed, post))
    [message] = emulator.bot_messages(world.feed)
    assert sent.message_ids == (str(message.id),)
    assert message.payload["allowed_mentions"] == {"parse": []}  # nobody is pinged
    [embed] = message.embeds
    assert "@everyone look" in embed["description"]
    assert embed["image"]["url"] == "https://cdn.test/p.jpg"
    assert [b.get("custom_id") or b.get("url") for b in message.buttons()] == [
        "https://bsky.app/profile/alice.test/post/1",
        "reply:1",
        "like:1",
        "repost:1",
        "follow:1",
    ]
    assert message.payload["enforce_nonce"] is True


async def test_6000_character_post_is_accepted_by_discord(
    emulator: DiscordEmulator, adapter: DiscordAdapter, world: World
) -> None:
    post = make_post("x" * 10 + " word" * 1200)
    sent = await adapter.send(make_delivery(world.feed, post))
    first, second = emulator.bot_messages(world.feed)
    assert [str(m.message["id"]) for m in (first, second)] == list(sent.message_ids)
    texts = [m.embeds[0]["description"] for m in (first, second)]
    assert all(len(t) <= 4096 for t in texts) and "".join(texts) == post.text  # split at a word, nothing lost
    assert second.embeds[0]["footer"]["text"].endswith("part 2 of 2")
    assert not first.message.get("components") and second.message.get("components")  # buttons under the whole text


async def test_post_beyond_five_messages_is_shortened_with_its_link(
    emulator: DiscordEmulator, adapter: DiscordAdapter, world: World
) -> None:
    post = make_post(" word" * 6000)
    await adapter.send(make_delivery(world.feed, post))
    messages = emulator.bot_messages(world.feed)
    assert len(messages) == 5
    assert messages[-1].embeds[0]["description"].endswith(f"({post.url})")


async def test_retry_of_the_same_delivery_does_not_double_the_message(
    emulator: DiscordEmulator, adapter: DiscordAdapter, world: World
) -> None:
    first = await adapter.send(make_delivery(world.feed, key="delivery-7"))
    again = await adapter.send(make_delivery(world.feed, key="delivery-7"))
    assert first.message_ids == again.message_ids
    assert len(emulator.bot_messages(world.feed)) == 1


async def test_send_to_a_thread_and_open_a_thread(
    emulator: DiscordEmulator, adapter: DiscordAdapter, host: FakeHost, world: World
) -> None:
    sent = await adapter.send(make_delivery(world.feed, open_thread=True))
    [message] = emulator.bot_messages(world.feed)
    assert sent.thread_id == str(message.id)
    thread_id = int(sent.thread_id)
    await adapter.send(make_delivery(world.feed, key="d-2", thread_id=sent.thread_id))
    assert len(emulator.bot_messages(thread_id)) == 1
    # A reply written in that thread is a reply to the post that opened it.
    await emulator.user_message(thread_id, world.member, f"<@{emulator.application_id}> great point")
    await host.wait_for(lambda: any(e.kind is EventKind.REPLY for e in host.events))
    [event] = host.events
    assert (event.text, event.reply_to_message) == ("great point", str(message.id))
    assert event.target == ChatTarget("discord", str(world.feed), str(thread_id))


async def test_slash_command_by_admin_is_public_refusal_is_ephemeral(
    emulator: DiscordEmulator, adapter: DiscordAdapter, host: FakeHost, world: World
) -> None:
    def answer(event):
        if not event.user.is_room_admin:
            return Answer("Only room admins (Manage Channels) may do that.", ok=False)
        return Answer(f"Following {event.args} here.", public=True)

    host.answer = answer
    ok = await emulator.slash(world.feed, world.admin, "follow", handle="alice.test")
    shown = await emulator.wait_shown(ok)
    assert shown["content"] == "Following alice.test here."
    assert not ok.is_ephemeral(shown)
    refused = await emulator.slash(world.feed, world.member, "follow", handle="alice.test")
    shown = await emulator.wait_shown(refused)
    assert shown["content"].startswith("Only room admins")
    assert refused.is_ephemeral(shown)
    assert [(e.command, e.args, e.user.is_room_admin) for e in host.events] == [
        ("follow", "alice.test", True),
        ("follow", "alice.test", False),
    ]


async def test_slow_core_answer_is_deferred_then_shown(
    emulator: DiscordEmulator, adapter: DiscordAdapter, host: FakeHost, world: World, monkeypatch
) -> None:
    monkeypatch.setattr("adapters.discord.adapter.ANSWER_WAIT", 0.05)
    original = host.handle

    async def slow(event):
        await asyncio.sleep(0.3)
        return await original(event)

    host.handle = slow  # type: ignore[method-assign]
    record = await emulator.slash(world.feed, world.admin, "status")
    shown = await emulator.wait_shown(record)
    assert record.responses[0]["type"] == 5  # deferred within Discord's 3 seconds
    assert shown["content"] == "did status"


async def test_buttons_reply_modal_and_refusal(
    emulator: DiscordEmulator, adapter: DiscordAdapter, host: FakeHost, world: World
) -> None:
    await adapter.send(make_delivery(world.feed))
    [message] = emulator.bot_messages(world.feed)

    def answer(event):
        if event.kind is EventKind.BUTTON and event.token.startswith("reply:"):
            return Answer("Reply to @alice.test", ask_text_for="reply-token-1")
        if event.kind is EventKind.BUTTON:
            return Answer(f"done {event.token}")
        return Answer("Replied.", public=False)

    host.answer = answer
    liked = await emulator.press(world.feed, world.member, message, "like:1")
    shown = await emulator.wait_shown(liked)
    assert shown["content"] == "done like:1" and liked.is_ephemeral(shown)

    pressed = await emulator.press(world.feed, world.member, message, "reply:1")
    [modal] = await emulator.wait_interaction(pressed)
    assert modal["type"] == 9  # MODAL
    assert modal["data"]["custom_id"].endswith("reply-token-1")
    submitted = await emulator.submit_modal(world.feed, world.member, modal["data"]["custom_id"], {"text": "Thanks!"})
    shown = await emulator.wait_shown(submitted)
    assert shown["content"] == "Replied."
    reply = host.events[-1]
    assert (reply.kind, reply.token, reply.text) == (EventKind.REPLY, "reply-token-1", "Thanks!")


async def test_reply_by_message_with_and_without_visible_content(
    emulator: DiscordEmulator, adapter: DiscordAdapter, host: FakeHost, world: World
) -> None:
    await adapter.send(make_delivery(world.feed))
    [relayed] = emulator.bot_messages(world.feed)
    host.answer = lambda event: Answer("Replied on Bluesky.")
    await emulator.user_message(world.feed, world.member, f"<@{emulator.application_id}> Nice post", reply_to=relayed.id)
    await emulator.wait_sent(world.feed, 2)
    [event] = host.events
    assert (event.kind, event.text, event.reply_to_message) == (EventKind.REPLY, "Nice post", str(relayed.id))
    assert emulator.bot_messages(world.feed)[1].message["content"] == "Replied on Bluesky."

    await emulator.user_message(world.feed, world.member, "hidden", reply_to=relayed.id, content_visible=False)
    hint = (await emulator.wait_sent(world.feed, 3))[2]
    assert "Reply button" in hint.message["content"]
    assert hint.payload["allowed_mentions"]["parse"] == []
    assert len(host.events) == 1  # nothing empty reached the core


async def test_unwatch_autocompletes_subscription_ids(
    emulator: DiscordEmulator, adapter: DiscordAdapter, host: FakeHost, world: World
) -> None:
    host.subs[ChatTarget("discord", str(world.feed))] = (
        SubscriptionSummary(12, "watch 'CEO biotech' (bluesky)"),
        SubscriptionSummary(15, "follow @alice.test (bluesky)"),
    )
    record = await emulator.autocomplete(world.feed, world.admin, "unwatch", "query_or_id", "ceo")
    [response] = await emulator.wait_interaction(record)
    assert response["type"] == 8
    assert response["data"]["choices"] == [{"name": "12 watch 'CEO biotech' (bluesky)", "value": "12"}]


async def test_429_on_one_channel_does_not_block_another(
    emulator: DiscordEmulator, adapter: DiscordAdapter, world: World
) -> None:
    # A short 429 is waited out by discord.py's bucket for that channel only.
    emulator.rate_limit(world.feed, 1.0)
    started = time.monotonic()
    slow = asyncio.create_task(adapter.send(make_delivery(world.feed, key="a")))
    await asyncio.sleep(0.1)
    await adapter.send(make_delivery(world.other, key="b"))
    assert time.monotonic() - started < 0.8  # the other channel did not wait
    await slow
    assert len(emulator.bot_messages(world.feed)) == 1
    # A long 429 is handed to the engine as RateLimited for that destination.
    emulator.rate_limit(world.feed, 120.0)
    with pytest.raises(RateLimited) as caught:
        await adapter.send(make_delivery(world.feed, key="c"))
    assert caught.value.retry_after == 120.0
    assert caught.value.scope == f"discord:{world.feed}"
    await adapter.send(make_delivery(world.other, key="d"))
    assert len(emulator.bot_messages(world.other)) == 2


@pytest.mark.parametrize("code", [50001, 50013])
async def test_missing_access_pauses_the_destination(
    emulator: DiscordEmulator, adapter: DiscordAdapter, world: World, code: int
) -> None:
    emulator.forbid(world.feed, code)
    with pytest.raises(DestinationUnavailable, match="missing"):
        await adapter.send(make_delivery(world.feed))
    await adapter.send(make_delivery(world.other))
    assert len(emulator.bot_messages(world.other)) == 1


async def test_deleted_channel_and_removed_bot_are_reported(
    emulator: DiscordEmulator, adapter: DiscordAdapter, host: FakeHost, world: World
) -> None:
    await emulator.delete_channel(world.feed)
    await host.wait_for(lambda: len(host.unavailable) == 1)
    target, reason = host.unavailable[0]
    assert target == ChatTarget("discord", str(world.feed)) and "deleted" in reason
    with pytest.raises(DestinationUnavailable, match="deleted"):
        await adapter.send(make_delivery(world.feed))
    await emulator.remove_bot(world.guild)
    await host.wait_for(lambda: any(t.chat_id == str(world.other) for t, _ in host.unavailable))
    assert "removed" in host.unavailable[-1][1]


async def test_gateway_drop_resumes_and_replays_missed_events_once(
    emulator: DiscordEmulator, adapter: DiscordAdapter, host: FakeHost, world: World
) -> None:
    await adapter.send(make_delivery(world.feed))
    [relayed] = emulator.bot_messages(world.feed)
    await emulator.drop_gateway()
    # Happens while the bot is away: Discord keeps it for the RESUME.
    await emulator.user_message(world.feed, world.member, f"<@{emulator.application_id}> hi", reply_to=relayed.id)
    await emulator.wait_connected()
    await host.wait_for(lambda: len(host.events) == 1)
    await asyncio.sleep(0.2)
    assert len(host.events) == 1
    assert (emulator.identifies, emulator.resumes) == (1, 1)
    await adapter.send(make_delivery(world.feed, key="after"))
    assert len(emulator.bot_messages(world.feed)) == 3  # relay, answer to the reply, next relay


async def test_commands_are_synced_only_when_they_change(
    emulator: DiscordEmulator, adapter: DiscordAdapter, host: FakeHost
) -> None:
    assert emulator.command_overwrites == 1
    again = DiscordAdapter({"token": emulator.token, "api_url": emulator.api_url}, host)
    await again.start()
    await again.stop()
    assert emulator.command_overwrites == 1


async def test_check_and_bad_token(emulator: DiscordEmulator, host: FakeHost) -> None:
    good = DiscordAdapter({"token": emulator.token, "api_url": emulator.api_url}, host)
    assert await good.check() == "ok: @bridgebot"
    bad = DiscordAdapter({"token": "wrong", "api_url": emulator.api_url}, host)
    with pytest.raises(AuthFailed, match=r"discord\.token"):
        await bad.check()
    with pytest.raises(AuthFailed, match=r"discord\.token"):
        await bad.start()
    await bad.stop()


async def test_api_url_is_per_client_not_global(emulator: DiscordEmulator, adapter: DiscordAdapter) -> None:
    assert discord.http.Route.BASE == "https://discord.com/api/v10"
    assert ("GET", "/api/v10/gateway/bot") in emulator.requests


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("112233445566778899", ChatTarget("discord", "112233445566778899")),
        ("112233445566778899/998877665544332211", ChatTarget("discord", "112233445566778899", "998877665544332211")),
    ],
)
def test_parse_target(text: str, expected: ChatTarget, host: FakeHost) -> None:
    assert DiscordAdapter({"token": "t"}, host).parse_target(text) == expected


@pytest.mark.parametrize("text", ["general", "-100123", "123/abc", ""])
def test_parse_target_refuses(text: str, host: FakeHost) -> None:
    with pytest.raises(ValueError, match="channel id"):
        DiscordAdapter({"token": "t"}, host).parse_target(text)


async def test_an_answer_with_buttons_shows_them_and_a_press_answers_with_new_ones(
    emulator: DiscordEmulator, adapter: DiscordAdapter, host: FakeHost, world: World, monkeypatch
) -> None:
    from bridge.model import Button, ButtonAction
    from tests.emulators.discord import SentMessage

    def answer(event):
        if event.kind is EventKind.BUTTON:
            return Answer("page 2", public=True, buttons=(Button(ButtonAction.PAGE, "‹ Previous", token="lk:prev:2:0"),))
        return Answer(
            "page 1",
            public=True,
            buttons=(
                Button(ButtonAction.HERE, "1 Follow here", token="lk:here:1:0"),
                Button(ButtonAction.RECENT, "1 Recent", token="lk:recent:1:0"),
                Button(ButtonAction.PAGE, "Next ›", token="lk:next:1:0"),
            ),
        )

    host.answer = answer
    shown = await emulator.wait_shown(await emulator.slash(world.feed, world.member, "find", words="ceo biotech"))
    ids = {c["label"]: c["custom_id"] for row in shown["components"] for c in row["components"]}
    assert shown["content"] == "page 1" and ids == {"1 Follow here": "lk:here:1:0", "1 Recent": "lk:recent:1:0", "Next ›": "lk:next:1:0"}
    # A slow answer (deferred first, then a follow-up) keeps its buttons too.
    monkeypatch.setattr("adapters.discord.adapter.ANSWER_WAIT", 0.05)
    original = host.handle

    async def slow(event):
        await asyncio.sleep(0.3)
        return await original(event)

    host.handle = slow  # type: ignore[method-assign]
    pressed = await emulator.press(world.feed, world.member, SentMessage({"id": "1", **shown}, {}), ids["Next ›"])
    await emulator.wait_interaction(pressed, 3)
    assert pressed.responses[0]["type"] == 5  # deferred
    [page2] = [r["data"] for r in pressed.responses if r.get("kind") == "followup"]
    assert page2["content"] == "page 2" and page2["components"][0]["components"][0]["custom_id"] == "lk:prev:2:0"
    assert [(e.kind, e.command or e.token) for e in host.events] == [(EventKind.COMMAND, "find"), (EventKind.BUTTON, "lk:next:1:0")]
