"""Quiet hours and digests: parsing, the schedule, and held posts released as one summary."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from bridge.delivery.quiet import QuietHours, next_digest, parse_quiet
from bridge.storage.models import DeliveryRow
from tests.conftest import BridgeFactory

PARSE = [
    ("22:00-07:00", QuietHours(time(22), time(7), "UTC")),
    ("22:00-07:00 Europe/Berlin", QuietHours(time(22), time(7), "Europe/Berlin")),
    ("9:30 - 17:45 America/New_York", QuietHours(time(9, 30), time(17, 45), "America/New_York")),
    ("off", None),
]


@pytest.mark.parametrize(("text", "expected"), PARSE)
def test_parse_quiet(text: str, expected: QuietHours | None) -> None:
    assert parse_quiet(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("25:00-07:00", "impossible time"),
        ("22:00-22:00", "start and end at the same time"),
        ("22-07", "is not a time range"),
        ("22:00-07:00 Mars/Olympus", "is not a time zone"),
        ("22:00-07:00 UTC extra", "/quiet 22:00-07:00"),
        ("22:00-07:00 ../../etc/passwd", "is not a time zone"),
    ],
)
def test_bad_quiet_hours_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_quiet(text)


def test_quiet_window_across_midnight() -> None:
    q = QuietHours(time(22), time(7), "Europe/Berlin")  # UTC+1 in November
    assert q.until(datetime(2026, 11, 26, 20, 0, tzinfo=UTC)) is None  # 21:00 Berlin
    assert q.until(datetime(2026, 11, 26, 21, 30, tzinfo=UTC)) == datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
    assert q.until(datetime(2026, 11, 27, 3, 0, tzinfo=UTC)) == datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
    assert q.until(datetime(2026, 11, 27, 6, 0, tzinfo=UTC)) is None  # 07:00 Berlin: over


def test_digest_schedule() -> None:
    now = datetime(2026, 11, 26, 10, 17, tzinfo=UTC)
    assert next_digest("hourly", now) == datetime(2026, 11, 26, 11, 0, tzinfo=UTC)
    assert next_digest("daily", now) == datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    assert next_digest("daily", now, "America/New_York") == datetime(2026, 11, 26, 14, 0, tzinfo=UTC)


async def _make_due() -> None:
    await DeliveryRow.filter(status="held").update(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))


async def test_digest_holds_posts_and_sends_one_summary(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    chat, net = b.chats["fakechat"], b.networks["fakenet"]
    await chat.command("r", "boss", "/follow alice.fake")
    answer = await chat.command("r", "boss", "/digest 1 hourly")
    assert answer.ok and "top of every hour" in answer.text
    posts = [await net.publish("alice.fake", f"update {i} <b>bold</b>") for i in range(3)]
    assert await b.digester.release_due() == 0  # not yet due
    assert chat.sent == [] and chat.notices == []
    await _make_due()
    assert await b.digester.release_due() == 3
    assert len(chat.notices) == 1
    text = chat.notices[0][1]
    assert text.startswith("3 posts held for this room (#1 follow @alice.fake (fakenet))")
    for p in posts:
        assert p.url in text
    assert "3 delivered" in (await chat.command("r", "u", "/status")).text
    assert "digest:hourly" in (await chat.command("r", "u", "/subs")).text


async def test_quiet_hours_hold_then_summarise(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    chat, net = b.chats["fakechat"], b.networks["fakenet"]
    await chat.command("r", "boss", "/follow alice.fake")
    await chat.command("loud", "boss", "/follow alice.fake")
    now = datetime.now(UTC)
    window = f"{(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=2)):%H:%M}"
    answer = await chat.command("r", "boss", f"/quiet {window} UTC")
    assert answer.ok and answer.public
    post = await net.publish("alice.fake", "at night")
    await chat.wait_sent(1)
    assert chat.sent_to("loud") == [post.ref.id] and chat.sent_to("r") == []  # only the quiet room waits
    await _make_due()
    await chat.command("r", "boss", "/quiet off")
    assert await b.digester.release_due() == 1
    assert post.url in chat.notices[0][1]


async def test_digest_and_quiet_need_room_admin(make_bridge: BridgeFactory) -> None:
    b = await make_bridge()
    chat = b.chats["fakechat"]
    await chat.command("r", "boss", "/follow alice.fake")
    for text in ("/digest 1 daily", "/quiet 22:00-07:00"):
        assert "Only this room's admins" in (await chat.command("r", "member", text)).text
    assert "Usage: /digest" in (await chat.command("r", "boss", "/digest 1 weekly")).text
