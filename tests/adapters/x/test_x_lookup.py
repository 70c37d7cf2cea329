"""The look-ups on X as a user types them in Telegram (/who, /find, /recent), against the X
emulator, with what a broken or hostile answer from X may hold: every answer is a clear line in
the chat, the bridge keeps running, and each look-up says what it may cost."""

from __future__ import annotations

from typing import Any

import pytest

from tests.adapters.x.x_world import World


async def ask(w: World, text: str) -> str:
    n = len(w.tg.messages(w.group.id))
    w.say(text)
    return (await w.wait(n + 1))[-1].text


async def test_who_find_and_recent_on_x(world: World) -> None:
    w, xe = world, world.xe
    alice = xe.add_user("alice", "Alice Prospect")
    for n in range(4):
        xe.post(alice, f"note-{n} https://example.com/{n}")
    await w.start()
    who = await ask(w, "/who x:alice")
    assert "Alice Prospect (@alice)" in who and "X budget" in who, who
    missing = await ask(w, "/who x:nobody_here")
    assert "no X account @nobody_here" in missing, missing
    bad = await ask(w, "/who x:not/a/handle")
    assert "not/a/handle" in bad and "is not a" in bad and "handle" in bad, bad  # refused before X is asked
    find = await ask(w, "/find --network x CEO biotech")
    assert "not in the pay-per-use API" in find and "/who" in find, find
    assert not [r for r in xe.requests if r[1] == "/2/users/search"]
    await ask(w, "/recent x:alice 3")
    await w.tg.wait_until(lambda: any("note-3" in t for t in w.texts()))
    shown = [t for t in w.texts() if "note-" in t]
    assert [t.split("note-")[1][0] for t in shown] == ["1", "2", "3"], shown  # the last 3, oldest first
    assert all("t.co" not in t and "https://example.com/" in t for t in shown)


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/2/users/by/username/:username", {"data": ["alice"]}),
        ("/2/users/by/username/:username", {"data": {"id": "../../etc", "username": "alice"}}),
        ("/2/users/by/username/:username", {"data": None, "errors": "boom"}),
        ("/2/users/by/username/:username", {}),
    ],
)
async def test_who_with_a_broken_answer_from_x(world: World, route: str, body: dict[str, Any]) -> None:
    w, xe = world, world.xe
    xe.add_user("alice")
    await w.start()
    xe.canned[("GET", route)] = [body]
    answer = await ask(w, "/who x:alice")
    assert answer == "there is no X account @alice.", answer
    # The bridge still works afterwards.
    assert "Alice (@alice)" in await ask(w, "/who x:alice")


async def test_recent_with_hostile_posts_shows_what_is_well_formed(world: World) -> None:
    w, xe = world, world.xe
    alice = xe.add_user("alice")
    await w.start()
    good = {
        "id": "1500000000000000009",
        "text": "a fine post",
        "author_id": alice["id"],
        "created_at": "2026-12-01T10:00:00.000Z",
    }
    hostile = {
        "data": [
            "junk",
            {"id": "not-a-number", "text": "no id"},
            {
                "id": "1500000000000000001",
                "text": "broken 😀 https://t.co/zz",
                "entities": {"urls": [{"url": "https://t.co/zz", "start": 99, "end": -1}]},
                "attachments": "x",
                "referenced_tweets": {"type": "quoted"},
            },
            good,
        ],
        "includes": {"users": [{"id": "1", "username": "<script>"}, 7], "media": "none", "tweets": [None]},
        "meta": ["not", "a", "dict"],
    }
    xe.canned[("GET", "/2/users/:id/tweets")] = [hostile]
    await ask(w, "/recent x:alice 5")
    await w.tg.wait_until(lambda: any("a fine post" in t for t in w.texts()))
    assert any("broken 😀 https://t.co/zz" in t for t in w.texts()), w.texts()  # no expansion given: kept as sent
    assert not any("no id" in t for t in w.texts())
    w.say("/recent x:alice 5")  # X answers normally again: nothing was left broken
    await w.tg.wait_until(lambda: any("has no posts" in t for t in w.texts()))
