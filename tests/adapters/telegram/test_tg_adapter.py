"""The adapter with real python-telegram-bot over HTTP against the Bot API emulator, and a fake host."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.telegram import TelegramAdapter
from bridge.errors import AuthFailed, DestinationMoved, DestinationUnavailable, Permanent, RateLimited, Transient
from bridge.model import (
    Answer,
    Author,
    Button,
    ButtonAction,
    ChatTarget,
    Delivery,
    EventKind,
    Media,
    Post,
    Ref,
)
from tests.adapters.telegram.conftest import settings_for
from tests.emulators.telegram import ApiError, TelegramEmulator
from tests.fakehost import FakeHost

AUTHOR = Author("did:alice", "alice.test", "Alice", url="https://bsky.app/profile/alice.test")
BUTTONS = (
    Button(ButtonAction.OPEN, "Open", url="https://bsky.app/profile/alice.test/post/p1"),
    Button(ButtonAction.REPLY, "Reply", token="reply:1"),
    Button(ButtonAction.LIKE, "Like", token="like:1"),
    Button(ButtonAction.REPOST, "Repost", token="repost:1"),
    Button(ButtonAction.FOLLOW, "Follow", token="follow:1"),
)


def delivery(chat_id: int, text: str = "hello world", thread: str = "", **fields: object) -> Delivery:
    post = Post(
        ref=Ref("bluesky", "p1"),
        author=AUTHOR,
        text=text,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        url="https://bsky.app/profile/alice.test/post/p1",
        **fields,  # type: ignore[arg-type]
    )
    return Delivery(1, "k1", post, ChatTarget("telegram", str(chat_id), thread), BUTTONS)


# --- check, start, targets -----------------------------------------------------------------


async def test_check_names_the_bot(tg: TelegramEmulator, host: FakeHost) -> None:
    assert await TelegramAdapter(settings_for(tg), host).check() == "ok: @bridge_test_bot"


async def test_wrong_token_is_auth_failed_with_the_fix(tg: TelegramEmulator, host: FakeHost) -> None:
    adapter = TelegramAdapter(settings_for(tg, token="999:wrong"), host)
    with pytest.raises(AuthFailed, match=r"telegram\.token.*BotFather"):
        await adapter.check()
    with pytest.raises(AuthFailed):
        await adapter.start()
    await adapter.stop()


async def test_start_registers_the_commands(adapter: TelegramAdapter, tg: TelegramEmulator) -> None:
    verbs = {c["command"] for c in tg.commands}
    assert verbs == {
        "follow",
        "unfollow",
        "watch",
        "unwatch",
        "subs",
        "filter",
        "post",
        "dm",
        "inbox",
        "digest",
        "quiet",
        "status",
        "pause",
        "resume",
        "find",
        "who",
        "recent",
        "search",
        "format",
        "approval",
        "audit",
        "help",
    }


async def test_set_commands_failure_is_not_fatal(tg: TelegramEmulator, host: FakeHost) -> None:
    adapter = TelegramAdapter(settings_for(tg), host)
    original = tg._m_setMyCommands

    async def refuse(params: dict) -> bool:
        raise ApiError(400, "Bad Request: BOT_COMMANDS_TOO_MUCH")

    tg._m_setMyCommands = refuse  # type: ignore[method-assign]
    try:
        await adapter.start()
        user = tg.add_user("Ann")
        chat = tg.private_chat(user)
        tg.send_text(chat.id, user, "/help")
        assert (await tg.wait_messages(chat.id, 1))[0].text == "did help"
    finally:
        tg._m_setMyCommands = original  # type: ignore[method-assign]
        await adapter.stop()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-1001234567890", ChatTarget("telegram", "-1001234567890")),
        ("42", ChatTarget("telegram", "42")),
        ("-1001234567890/7", ChatTarget("telegram", "-1001234567890", "7")),
        ("@MyChannel", ChatTarget("telegram", "@mychannel")),
        ("@my_channel/3", ChatTarget("telegram", "@my_channel", "3")),
    ],
)
def test_parse_target_accepts_numeric_chats_and_topics(host: FakeHost, text: str, expected: ChatTarget) -> None:
    adapter = TelegramAdapter({"token": "1:x"}, host)
    assert adapter.parse_target(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mychannel", "numeric chat id"),
        ("@ab", "numeric chat id"),
        ("#general", "@username"),
        ("-100/abc", "topic"),
        ("", "numeric"),
    ],
)
def test_parse_target_refuses_others_with_a_clear_message(host: FakeHost, text: str, message: str) -> None:
    adapter = TelegramAdapter({"token": "1:x"}, host)
    with pytest.raises(ValueError, match=message):
        adapter.parse_target(text)


# --- sending -----------------------------------------------------------------------------------


async def test_relayed_post_has_text_link_and_buttons(adapter: TelegramAdapter, tg: TelegramEmulator) -> None:
    group = tg.add_group("Sales")
    sent = await adapter.send(delivery(group.id, "Big <news> & more </b>"))
    [message] = tg.messages(group.id)
    assert sent.message_ids == (str(message.message_id),)
    assert message.parse_mode == "HTML"
    assert "Big <news> & more </b>" in message.text
    assert ("Open original", "https://bsky.app/profile/alice.test/post/p1") in message.links()
    buttons = {b["text"]: b for b in message.buttons}
    assert buttons["Open"] == {"text": "Open", "url": "https://bsky.app/profile/alice.test/post/p1"}
    assert {buttons[k]["callback_data"] for k in ("Reply", "Like", "Repost", "Follow")} == {
        "reply:1",
        "like:1",
        "repost:1",
        "follow:1",
    }


async def test_photo_and_album(adapter: TelegramAdapter, tg: TelegramEmulator) -> None:
    group = tg.add_group("Sales")
    one = await adapter.send(delivery(group.id, "one", media=(Media("image", "https://cdn.example/a.jpg"),)))
    [photo] = tg.messages(group.id)
    assert photo.photo == "https://cdn.example/a.jpg" and "one" in photo.text and photo.buttons
    assert one.message_ids == (str(photo.message_id),)
    media = tuple(Media("image", f"https://cdn.example/{i}.jpg") for i in range(4))
    album = await adapter.send(delivery(group.id, "four", media=media))
    messages = tg.messages(group.id)[1:]
    assert [m.photo for m in messages[:4]] == [m.url for m in media]
    assert "four" in messages[0].text and messages[4].buttons and not messages[0].buttons
    assert album.message_ids == tuple(str(m.message_id) for m in messages)


async def test_long_caption_text_follows_the_photo(adapter: TelegramAdapter, tg: TelegramEmulator) -> None:
    chat = tg.private_chat(tg.add_user("Ann"))
    text = "word & <tag> " * 150
    await adapter.send(delivery(chat.id, text, media=(Media("image", "https://cdn.example/a.jpg"),)))
    photo, follow_up = tg.messages(chat.id)
    assert photo.photo and len(photo.text) <= 1024
    assert text.strip() in follow_up.text


async def test_5000_characters_arrive_in_two_messages(adapter: TelegramAdapter, tg: TelegramEmulator) -> None:
    group = tg.add_group("Sales")
    text = ("lorem <ipsum> & dolor " * 250)[:5000]
    sent = await adapter.send(delivery(group.id, text))
    messages = tg.messages(group.id)
    assert len(messages) == 2 and len(sent.message_ids) == 2
    assert all(len(m.text) <= 4096 for m in messages)
    assert "".join("".join(m.text for m in messages).split()).count("lorem<ipsum>&dolor") == text.count("lorem <ipsum>")
    assert messages[-1].buttons


async def test_topic_destination_posts_in_the_topic(adapter: TelegramAdapter, tg: TelegramEmulator) -> None:
    forum = tg.add_group("Forum", kind="supergroup", forum=True)
    sent = await adapter.send(delivery(forum.id, "in topic", thread="7"))
    [message] = tg.messages(forum.id)
    assert message.thread_id == 7 and sent.thread_id == "7"


async def test_429_is_rate_limited_for_that_chat_only(adapter: TelegramAdapter, tg: TelegramEmulator) -> None:
    slow, fast = tg.add_group("Slow"), tg.add_group("Fast")
    tg.storm(slow.id, retry_after=30, count=5)
    with pytest.raises(RateLimited) as caught:
        await adapter.send(delivery(slow.id))
    assert caught.value.retry_after == 30 and caught.value.scope == str(slow.id)
    await adapter.send(delivery(fast.id))
    assert len(tg.messages(fast.id)) == 1
    with pytest.raises(RateLimited):  # the adapter keeps the chat's pause itself
        await adapter.send(delivery(slow.id))
    assert len(tg.rejected) == 1


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("block", DestinationUnavailable),
        ("delete", DestinationUnavailable),
        (ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified"), Permanent),
        (ApiError(500, "Internal Server Error"), Transient),
        (ApiError(502, "Bad Gateway"), Transient),
    ],
)
async def test_failures_map_to_the_error_hierarchy(
    adapter: TelegramAdapter, tg: TelegramEmulator, fault: object, error: type[Exception]
) -> None:
    chat = tg.private_chat(tg.add_user("Ann"))
    if fault == "block":
        tg.block(chat.id)
    elif fault == "delete":
        tg.delete_chat(chat.id)
    else:
        tg.fail_next.append(fault)  # type: ignore[arg-type]
    with pytest.raises(error) as caught:
        await adapter.send(delivery(chat.id))
    if error is DestinationUnavailable:
        assert "blocked" in str(caught.value) or "not found" in str(caught.value)


async def test_send_to_migrated_group_moves_the_chat(adapter: TelegramAdapter, tg: TelegramEmulator, host: FakeHost) -> None:
    group = tg.add_group("Old group")
    new_id = tg.migrate(group.id)
    # The delivery is handed back unsent, naming the new chat: the core moves the chat's rows there.
    with pytest.raises(DestinationMoved) as caught:
        await adapter.send(delivery(group.id, "after the move"))
    assert (caught.value.old, caught.value.new) == (ChatTarget("telegram", str(group.id)), ChatTarget("telegram", str(new_id)))
    assert tg.messages(new_id) == []
    # A notice moves the chat and follows it by itself.
    await adapter.notify(ChatTarget("telegram", str(group.id)), "moved along")
    assert (ChatTarget("telegram", str(group.id)), ChatTarget("telegram", str(new_id))) in host.moves
    assert [m.text for m in tg.messages(new_id)] == ["moved along"]


async def test_notify_escapes_plain_text(adapter: TelegramAdapter, tg: TelegramEmulator) -> None:
    group = tg.add_group("Sales")
    await adapter.notify(ChatTarget("telegram", str(group.id)), "feed <b>paused</b> & stopped")
    assert tg.messages(group.id)[0].text == "feed <b>paused</b> & stopped"


# --- receiving --------------------------------------------------------------------------------


async def test_private_command_is_from_a_room_admin(adapter: TelegramAdapter, tg: TelegramEmulator, host: FakeHost) -> None:
    ann = tg.add_user("Ann", "ann")
    chat = tg.private_chat(ann)
    update = tg.send_text(chat.id, ann, "/follow alice.test")
    [answer] = await tg.wait_messages(chat.id, 1)
    [event] = host.events
    assert event.kind == EventKind.COMMAND and event.command == "follow" and event.args == "alice.test"
    assert event.user.is_room_admin and event.user.id == str(ann["id"]) and event.user.name == "@ann"
    assert answer.text == "did follow alice.test"
    assert answer.reply_to == update["message"]["message_id"]


async def test_group_admin_and_member_and_other_bots(adapter: TelegramAdapter, tg: TelegramEmulator, host: FakeHost) -> None:
    boss, member = tg.add_user("Boss"), tg.add_user("Member")
    group = tg.add_group("Sales", admins=[boss])
    tg.send_text(group.id, boss, "/follow@bridge_test_bot alice.test")
    tg.send_text(group.id, member, "/follow@other_bot alice.test")
    tg.send_text(group.id, member, "/follow bob.test")
    await tg.wait_messages(group.id, 2)
    admin_event, member_event = host.events
    assert (admin_event.args, admin_event.user.is_room_admin) == ("alice.test", True)
    assert (member_event.args, member_event.user.is_room_admin) == ("bob.test", False)


async def test_command_in_a_topic_is_answered_in_the_topic(
    adapter: TelegramAdapter, tg: TelegramEmulator, host: FakeHost
) -> None:
    boss = tg.add_user("Boss")
    forum = tg.add_group("Forum", admins=[boss], kind="supergroup", forum=True)
    tg.send_text(forum.id, boss, "/watch CEO biotech", thread_id=5)
    [answer] = await tg.wait_messages(forum.id, 1)
    assert host.events[0].target == ChatTarget("telegram", str(forum.id), "5")
    assert answer.thread_id == 5


async def test_start_welcomes_with_the_help(tg: TelegramEmulator, host: FakeHost) -> None:
    host.answer = lambda e: Answer("/follow <handle> - relay an account\n/help - this text")
    adapter = TelegramAdapter(settings_for(tg), host)
    await adapter.start()
    try:
        ann = tg.add_user("Ann")
        chat = tg.private_chat(ann)
        tg.send_text(chat.id, ann, "/start")
        [welcome] = await tg.wait_messages(chat.id, 1)
    finally:
        await adapter.stop()
    assert host.events[0].command == "help"
    assert welcome.text.startswith("Welcome!") and "/follow <handle> - relay an account" in welcome.text


async def test_reply_to_a_relayed_message_is_a_reply_event(
    adapter: TelegramAdapter, tg: TelegramEmulator, host: FakeHost
) -> None:
    ann = tg.add_user("Ann")
    group = tg.add_group("Sales", admins=[ann])
    sent = await adapter.send(delivery(group.id))
    tg.send_text(group.id, ann, "great post!", reply_to=int(sent.message_ids[0]))
    tg.send_text(group.id, ann, "just chatting")
    await tg.wait_messages(group.id, 2)
    [event] = host.events
    assert event.kind == EventKind.REPLY and event.text == "great post!"
    assert event.reply_to_message == sent.message_ids[0]


async def test_button_press_answers_the_callback(adapter: TelegramAdapter, tg: TelegramEmulator, host: FakeHost) -> None:
    ann = tg.add_user("Ann")
    group = tg.add_group("Sales")
    sent = await adapter.send(delivery(group.id))
    host.answer = lambda e: Answer("Liked ✓") if e.token == "like:1" else Answer("Only senders may repost", ok=False)
    tg.press(group.id, ann, int(sent.message_ids[0]), "like:1")
    tg.press(group.id, ann, int(sent.message_ids[0]), "repost:1")
    await tg.wait_until(lambda: len(tg.callback_answers) == 2)
    answers = {a["text"]: a["show_alert"] for a in tg.callback_answers}
    assert answers == {"Liked ✓": False, "Only senders may repost": True}
    assert {e.token for e in host.events} == {"like:1", "repost:1"}


async def test_reply_button_prompts_with_force_reply_and_links_it(
    adapter: TelegramAdapter, tg: TelegramEmulator, host: FakeHost
) -> None:
    ann = tg.add_user("Ann")
    group = tg.add_group("Sales")
    sent = await adapter.send(delivery(group.id))
    host.answer = lambda e: Answer(
        "Reply to @alice.test's post: write your reply as an answer to this message", ask_text_for="reply:1"
    )
    tg.press(group.id, ann, int(sent.message_ids[0]), "reply:1")
    _, prompt = await tg.wait_messages(group.id, 2)
    assert prompt.force_reply and prompt.text.startswith("Reply to @alice.test's post")
    await host.wait_for(lambda: bool(host.links))
    assert host.links == [(ChatTarget("telegram", str(group.id)), str(prompt.message_id), "reply:1")]


async def test_migration_and_removal_reach_the_host(adapter: TelegramAdapter, tg: TelegramEmulator, host: FakeHost) -> None:
    boss = tg.add_user("Boss")
    group = tg.add_group("Sales", admins=[boss])
    new_id = tg.migrate(group.id)
    other = tg.add_group("Other")
    tg.kick_bot(other.id, boss)
    await host.wait_for(lambda: bool(host.moves) and bool(host.unavailable))
    assert host.moves == [(ChatTarget("telegram", str(group.id)), ChatTarget("telegram", str(new_id)))]
    assert host.unavailable == [(ChatTarget("telegram", str(other.id)), "the bot was removed from the chat")]


async def test_the_token_never_reaches_the_logs(tg: TelegramEmulator, host: FakeHost, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    adapter = TelegramAdapter(settings_for(tg), host)
    await adapter.start()
    try:
        chat = tg.private_chat(tg.add_user("Ann"))
        await adapter.send(delivery(chat.id))
        tg.block(chat.id)
        with pytest.raises(DestinationUnavailable):
            await adapter.send(delivery(chat.id))
    finally:
        await adapter.stop()
    assert caplog.records
    assert all(tg.token not in r.getMessage() and tg.token.split(":")[1] not in r.getMessage() for r in caplog.records)


async def test_an_answer_with_buttons_comes_with_an_inline_keyboard(
    adapter: TelegramAdapter, tg: TelegramEmulator, host: FakeHost
) -> None:
    ann = tg.add_user("Ann")
    group = tg.add_group("Sales")
    account = [
        Button(ButtonAction.HERE, "1 Follow here", token="lk:here:1:0"),
        Button(ButtonAction.RECENT, "1 Recent", token="lk:recent:1:0"),
        Button(ButtonAction.FOLLOW, "1 Follow on bluesky", token="lk:follow:1:0"),
        Button(ButtonAction.HERE, "2 Follow here", token="lk:here:1:1"),
    ]

    def answer(e):
        if e.token:
            return Answer("page 2", public=True, buttons=(Button(ButtonAction.PAGE, "‹ Previous", token="lk:prev:2:0"),))
        return Answer("page 1", public=True, buttons=(*account, Button(ButtonAction.PAGE, "Next ›", token="lk:next:1:0")))

    host.answer = answer
    tg.send_text(group.id, ann, "/find ceo biotech")
    [found] = await tg.wait_messages(group.id, 1)
    rows = [[b["text"] for b in row] for row in found.reply_markup["inline_keyboard"]]
    assert found.text == "page 1"
    assert rows == [["1 Follow here", "1 Recent", "1 Follow on bluesky"], ["2 Follow here"], ["Next ›"]]
    tg.press(group.id, ann, found.message_id, "lk:next:1:0")
    page2 = (await tg.wait_messages(group.id, 2))[-1]
    assert page2.text == "page 2" and [b["callback_data"] for b in page2.buttons] == ["lk:prev:2:0"]


class LeaseHost(FakeHost):
    """A host whose listener lease can be lost and won again (several workers): the listener
    runs while ``held`` is set and is cancelled when it is cleared."""

    def __init__(self) -> None:
        super().__init__()
        self.held = asyncio.Event()
        self.held.set()
        self.lost = asyncio.Event()

    async def listen(self, name: str, run: Any) -> Any:
        while True:
            await self.held.wait()
            self.listening.add(name)
            task = asyncio.ensure_future(run())
            lost = asyncio.ensure_future(self.lost.wait())
            try:
                await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                lost.cancel()
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                self.listening.discard(name)
            self.lost.clear()


async def test_polling_stops_when_the_listener_lease_is_lost_and_starts_again_when_won(tg: TelegramEmulator) -> None:
    host = LeaseHost()
    adapter = TelegramAdapter(settings_for(tg), host)
    await adapter.start()
    try:
        ann = tg.add_user("Ann")
        chat = tg.private_chat(ann)
        tg.send_text(chat.id, ann, "/help")
        await tg.wait_messages(chat.id, 1)
        assert host.listening == {"updates"}

        host.held.clear()
        host.lost.set()  # another worker holds it now: this one stops polling
        await tg.wait_until(lambda: not host.listening)
        polls = sum(m == "getUpdates" for m, _ in tg.requests)
        tg.send_text(chat.id, ann, "/help")
        await asyncio.sleep(1.5)
        assert sum(m == "getUpdates" for m, _ in tg.requests) == polls and len(tg.messages(chat.id)) == 1

        host.held.set()  # won back: polling resumes and the waiting command is answered
        await tg.wait_messages(chat.id, 2)
        assert len(host.events) == 2
    finally:
        await adapter.stop()
