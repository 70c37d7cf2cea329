"""``bridge status`` for a bridge with 100 subscriptions over several rooms, through the real
command: what needs a person at the top, a table per room with failing feeds first, and
``--json`` for scripts; ``/status`` in a room agrees with it."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from bridge.matching.filters import Filters
from bridge.model import Author, ChatTarget, Post, Ref, Source, SourceKind
from bridge.storage.db import close_database, open_database
from bridge.storage.store import Confirmed, PlatformHealth, Store
from tests.faults.bridge_process import run_cli
from tests.faults.toml_file import write_config

ROOMS = [ChatTarget("telegram", f"-100{i}") for i in range(1, 6)]  # 20 subscriptions each
FAILING = {37, 38}  # subscription ids whose last delivery failed (both in the second room)
PAUSED = ROOMS[4]


def _post(n: int) -> Post:
    return Post(
        ref=Ref("bluesky", f"at://p{n}"),
        author=Author("bluesky", f"did:plc:a{n}", f"a{n}.bsky.social", f"A{n}"),
        text=f"post {n}",
        created_at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
        url=f"https://bsky.app/p{n}",
    )


async def _fill(db_url: str) -> None:
    await open_database(db_url)
    store = Store()
    try:
        for n in range(100):
            room = ROOMS[n // 20]
            sub, _ = await store.add_subscription(
                Source("bluesky", SourceKind.FOLLOW, f"did:plc:a{n}"), f"a{n}.bsky.social", room, "test", Filters()
            )
            await store.ingest("bluesky", [(_post(n), [(sub.id, room)])], {})
        now = datetime.now(UTC)
        for room in ROOMS[:4]:
            for d in await store.pending_for(str(room), now, 100):
                if d.subscription_id in FAILING:
                    await store.mark_failed(d.id, f"telegram:{room.chat_id}: Bad Request: message is too long")
                else:
                    await store.mark_sent_many([Confirmed(d, ["1"])])
        await store.pause_destination(PAUSED, "the bot was removed from the chat")
        await store.set_platform_health("bluesky", PlatformHealth("down", "Bluesky refused the login of team.example", now))
    finally:
        await close_database()


async def test_status_of_100_subscriptions_reads_at_a_glance_and_as_json(tmp_path: Path) -> None:
    db_url = f"sqlite://{tmp_path}/bridge.sqlite3"
    await _fill(db_url)
    # status logs in nowhere: the token is only there for --to to know the platform
    config = write_config(tmp_path / "c.toml", {"database": {"url": db_url}, "telegram": {"token": "123:not-used"}})

    done = await asyncio.to_thread(run_cli, config, "status", timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # what needs a person comes first: the platform that is down, the paused room
    assert lines[0].startswith("bluesky: down since ") and "refused the login" in lines[0]
    assert lines[1].startswith(f"paused {PAUSED}: the bot was removed from the chat; it resumes when")
    assert "100 subscriptions in 5 rooms: 2 failing, 1 paused" in done.stdout
    # one table per room, the rooms with failing feeds first (most first), failing feeds first
    heads = [line for line in lines if line.startswith("telegram:")]
    assert [h.split(":")[1] for h in heads] == [
        "-1002",  # 2 failing
        "-1005 (paused)",  # its waiting posts failed with the pause: said once above, not per feed
        "-1001",
        "-1003",
        "-1004",
    ]
    room2 = done.stdout.split("\ntelegram:-1002:")[1].split("\n\n")[0].splitlines()
    assert "2 failing; 18 sent, 0 waiting, 2 failed" in room2[0]
    assert room2[1].split() == ["ID", "SUBSCRIPTION", "SENT", "WAITING", "FAILED", "LAST", "POST", "LAST", "DELIVERY"]
    assert room2[2].split()[:8] == ["!", "#37", "follow", "@a36.bsky.social", "(bluesky)", "0", "0", "1"]
    assert "last failure " in room2[3] and "message is too long" in room2[3]
    assert room2[4].split()[:2] == ["!", "#38"]
    assert room2[6].split()[:2] == ["#21", "follow"]  # then the others, by id
    assert len([line for line in lines if line.split()[:1] in (["!"], ["#"]) or line.lstrip().startswith("#")]) == 100

    as_json = await asyncio.to_thread(run_cli, config, "status", "--json", timeout=60)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["version"] == 1
    assert data["summary"] == {"rooms": 5, "subscriptions": 100, "failing": 2, "paused": 1, "platforms_down": 1}
    assert data["platforms"][0]["name"] == "bluesky" and data["platforms"][0]["state"] == "down"
    by_room = {r["destination"]: r for r in data["rooms"]}
    assert set(by_room) == {str(r) for r in ROOMS}
    assert by_room[str(PAUSED)]["paused"] and "resumes" in by_room[str(PAUSED)]["resumes"]
    sub37 = next(s for s in by_room["telegram:-1002"]["subscriptions"] if s["id"] == 37)
    assert sub37["failing"] and sub37["failed"] == 1 and sub37["sent"] == 0 and "too long" in sub37["last_error"]
    assert sub37["kind"] == "follow" and sub37["label"] == "a36.bsky.social" and sub37["network"] == "bluesky"
    assert all(isinstance(s["last_post"], str) for r in data["rooms"] for s in r["subscriptions"])

    one = json.loads((await asyncio.to_thread(run_cli, config, "status", "--json", "--to", "telegram:-1002", timeout=60)).stdout)
    assert [r["destination"] for r in one["rooms"]] == ["telegram:-1002"] and one["summary"]["failing"] == 2

    # `bridge status --to` answers as /status does in the room, from the same reading
    room = await asyncio.to_thread(run_cli, config, "status", "--to", "telegram:-1002", timeout=60)
    said = room.stdout.splitlines()
    assert said[0].startswith("bluesky: down since ")
    assert said[1] == "Feeds of telegram:-1002 (2 failing):"
    assert said[2].startswith("! #37 follow @a36.bsky.social (bluesky): 0 delivered, last never; 0 waiting; 1 failed")
