"""Progress where work is long: ``bridge check`` says which login it is waiting for before its
answer, and a backfill tells the room what it found."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import BridgeFactory, until
from tests.faults.bridge_process import run_cli
from tests.faults.toml_file import write_config

BLUESKY = {"identifier": "team.example.com", "password": "app-password-not-used", "service": "http://127.0.0.1:9"}


def test_check_says_where_it_logs_in_before_the_result(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", {"database": {"url": f"sqlite://{tmp_path}/b.sqlite3"}, "bluesky": BLUESKY})
    config.chmod(0o600)
    done = run_cli(config, "check", timeout=60)
    assert "bluesky: logging in to http://127.0.0.1:9 …" in done.stderr.splitlines()
    # stdout keeps one line per platform, for scripts
    [line] = [line for line in done.stdout.splitlines() if line.startswith("bluesky:")]
    assert line.startswith("bluesky: FAILED")


async def test_backfill_tells_the_room_what_it_found(make_bridge: BridgeFactory) -> None:
    b = await make_bridge(backfill=2)
    net, chat = b.networks["fakenet"], b.chats["fakechat"]
    net.published.extend(net.make_post("alice.fake", f"old {i}") for i in range(4))
    await chat.command("r", "boss", "/follow alice.fake")
    await chat.wait_sent(2)
    await until(lambda: any(t.chat_id == "r" for t, _ in chat.notices), 10)
    told = [text for target, text in chat.notices if target.chat_id == "r"]
    assert told == ["Backfill of #1 follow @alice.fake (fakenet): 2 earlier posts on their way."]

    await chat.command("q", "boss", "/follow nobody.fake")
    await until(lambda: any(t.chat_id == "q" for t, _ in chat.notices), 10)
    assert [text for target, text in chat.notices if target.chat_id == "q"] == [
        "Backfill of #2 follow @nobody.fake (fakenet): no earlier posts found."
    ]

