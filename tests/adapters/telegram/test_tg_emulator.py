"""The Bot API emulator answers the documented errors, as python-telegram-bot sees them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from telegram import Bot
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, RetryAfter

from tests.conftest import until
from tests.emulators.telegram import TelegramEmulator


@pytest.fixture
async def bot(tg: TelegramEmulator) -> AsyncIterator[Bot]:
    instance = Bot(tg.token, base_url=f"{tg.url}/bot", base_file_url=f"{tg.url}/file/bot")
    async with instance:
        yield instance


@pytest.mark.parametrize(
    ("markup", "error"),
    [
        ("a < b", "start tag"),
        ("<b>open", "Can't find end tag"),
        ("<b><i>x</b></i>", "Unmatched end tag"),
        ("fish & chips", "reserved"),
        ("<span>x</span>", "Unsupported start tag"),
        ("<a>x</a>", "href"),
    ],
)
async def test_invalid_html_is_refused(bot: Bot, tg: TelegramEmulator, markup: str, error: str) -> None:
    group = tg.add_group("G")
    with pytest.raises(BadRequest, match="Can't parse entities") as caught:
        await bot.send_message(group.id, markup, parse_mode="HTML")
    assert error.lower() in str(caught.value).lower()  # PTB lower-cases the description
    assert not tg.messages(group.id)


async def test_valid_html_is_parsed_into_entities(bot: Bot, tg: TelegramEmulator) -> None:
    group = tg.add_group("G")
    message = await bot.send_message(
        group.id, '<b>hi</b> &lt;3 <a href="https://x.example/?a=1&amp;b=2">link</a>', parse_mode="HTML"
    )
    assert message.text == "hi <3 link"
    assert [(e.type, e.offset, e.length) for e in message.entities] == [("bold", 0, 2), ("text_link", 6, 4)]
    assert message.entities[1].url == "https://x.example/?a=1&b=2"


async def test_length_limits(bot: Bot, tg: TelegramEmulator) -> None:
    group = tg.add_group("G")
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(group.id, "x" * 4097)
    with pytest.raises(BadRequest, match="caption is too long"):
        await bot.send_photo(group.id, "https://cdn.example/a.jpg", caption="x" * 1025)
    await bot.send_message(group.id, "&amp;" * 4096, parse_mode="HTML")  # the limit is after parsing


async def test_faults(bot: Bot, tg: TelegramEmulator) -> None:
    ann = tg.add_user("Ann")
    chat = tg.private_chat(ann)
    tg.storm(chat.id, retry_after=7, count=1)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(chat.id, "x")
    assert caught.value.retry_after in (7, __import__("datetime").timedelta(seconds=7))
    await bot.send_message(chat.id, "after the storm")
    tg.block(chat.id)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(chat.id, "x")
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(-999, "x")


async def test_wrong_token_is_unauthorized(tg: TelegramEmulator) -> None:
    with pytest.raises(InvalidToken):
        async with Bot("1:wrong", base_url=f"{tg.url}/bot") as bot:
            await bot.get_me()


async def test_uploads_and_albums(bot: Bot, tg: TelegramEmulator) -> None:
    group = tg.add_group("G")
    await bot.send_photo(group.id, b"\x89PNG\r\n\x1a\n" + b"0" * 100, caption="<i>up</i>", parse_mode="HTML")
    [photo] = tg.messages(group.id)
    assert photo.photo.startswith("upload:") and photo.text == "up"
    from telegram import InputMediaPhoto

    with pytest.raises(BadRequest, match=r"(?i)wrong number of media"):
        await bot.send_media_group(group.id, [InputMediaPhoto("https://cdn.example/1.jpg")])


async def test_enforced_rate_limits(bot: Bot, tg: TelegramEmulator) -> None:
    tg.enforce_rate_limits = True
    ann = tg.add_user("Ann")
    chat = tg.private_chat(ann)
    await bot.send_message(chat.id, "one")
    with pytest.raises(RetryAfter):  # Telegram: 1 message per second in a private chat
        await bot.send_message(chat.id, "two")
    group = tg.add_group("G")
    for i in range(20):
        await bot.send_message(group.id, f"m{i}")
    with pytest.raises(RetryAfter):  # 20 per minute in a group
        await bot.send_message(group.id, "m20")


async def test_long_poll_returns_when_an_update_arrives(bot: Bot, tg: TelegramEmulator) -> None:
    import asyncio

    ann = tg.add_user("Ann")
    chat = tg.private_chat(ann)
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.1)
    tg.send_text(chat.id, ann, "/help")
    updates = await asyncio.wait_for(poll, 2)
    assert updates[0].message.text == "/help" and updates[0].message.entities[0].type == "bot_command"
    await bot.get_updates(offset=updates[0].update_id + 1, timeout=0)
    assert tg.pending_updates() == 0


async def test_a_second_long_poll_terminates_the_first_with_409(bot: Bot, tg: TelegramEmulator) -> None:
    """Telegram allows one getUpdates at a time per bot: a second instance's poll ends the
    first one's with 409 Conflict, and the newer poll carries on."""
    import asyncio

    ann = tg.add_user("Ann")
    chat = tg.private_chat(ann)
    other = Bot(tg.token, base_url=f"{tg.url}/bot", base_file_url=f"{tg.url}/file/bot")
    async with other:
        first = asyncio.create_task(bot.get_updates(timeout=5))
        await until(lambda: any(m == "getUpdates" for m, _ in tg.requests))
        second = asyncio.create_task(other.get_updates(timeout=5))
        with pytest.raises(Conflict, match="terminated by other getUpdates request"):
            await asyncio.wait_for(first, 4)
        assert tg.poll_conflicts == [True]  # the first instance was alive and read the 409
        tg.send_text(chat.id, ann, "/help")
        updates = await asyncio.wait_for(second, 4)
        assert updates[0].message.text == "/help"
    # One poller at a time never conflicts.
    await bot.get_updates(offset=updates[0].update_id + 1, timeout=0)
    await bot.get_updates(timeout=0)
    assert tg.poll_conflicts == [True]
