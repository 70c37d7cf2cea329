"""An action taken as the team account survives a crash between the network call and its record.

The real ``bridge run`` (reference AT Protocol stack, the Telegram emulator) gets ``/post`` from a
sender and is killed with SIGKILL right after Bluesky created the post and before the bridge
recorded it. After a restart: exactly one post on the network, one audit row that says done with
the post's uri, and the room is told. The kill comes from inside the process, at that exact point:
a ``sitecustomize`` on the child's path wraps the Bluesky adapter's one request path and sends
SIGKILL to its own process as soon as the chosen XRPC call has returned.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.atproto.harness import AtprotoStack
from tests.faults.bridge_process import BridgeProcess
from tests.faults.chat_world import ChatWorld
from tests.faults.crash import make_accounts
from tests.faults.toml_file import write_config

KILL_HOOK = textwrap.dedent(
    """
    import os

    if os.environ.get("BRIDGE_TEST_KILL_AFTER"):
        import signal

        from adapters.bluesky import http

        _procedure = http.Api.procedure

        async def procedure(self, nsid, *args, **kwargs):
            result = await _procedure(self, nsid, *args, **kwargs)
            if nsid == os.environ["BRIDGE_TEST_KILL_AFTER"]:
                os.kill(os.getpid(), signal.SIGKILL)  # the network did it; the bridge never learns
            return result

        http.Api.procedure = procedure
    """
)


def _posts_on_pds(pds: str, did: str) -> list[dict[str, Any]]:
    url = f"{pds}/xrpc/com.atproto.repo.listRecords?repo={did}&collection=app.bsky.feed.post&limit=100"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return list(json.load(resp)["records"])


def _actions(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM outbound_actions ORDER BY id")]


async def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_post_killed_between_the_call_and_the_record_is_posted_once_and_recorded_done(
    atproto: AtprotoStack, tmp_path: Path
) -> None:
    world = await ChatWorld.start(tg_chats=1, discord_channels=0)
    procs: list[BridgeProcess] = []
    try:
        team, _author = await make_accounts(atproto)
        rep = world.tg_users[0]
        db = tmp_path / "bridge.sqlite3"
        config = write_config(
            tmp_path / "config.toml",
            {
                "database": {"url": f"sqlite://{db}"},
                "bridge": {"senders": [f"telegram:{rep['id']}"], "log_level": "info"},
                "telegram": world.config_sections()["telegram"],
                "bluesky": {
                    "service": atproto.pds,
                    "identifier": team.account.handle,
                    "password": team.app_password,
                    "poll_interval": 60,
                },
            },
        )
        hook = tmp_path / "hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(KILL_HOOK)

        first = BridgeProcess(
            config,
            tmp_path / "bridge-1.log",
            env={"PYTHONPATH": str(hook), "BRIDGE_TEST_KILL_AFTER": "com.atproto.repo.createRecord"},
        )
        procs.append(first)
        await first.wait_log("bridge running", timeout=60)
        world.tg.send_text(rep["id"], rep, "/post launch day: our new pricing is live")
        assert await first.wait_exit(30) == -9  # killed itself right after Bluesky created the post
        assert len(_posts_on_pds(atproto.pds, team.account.did)) == 1

        second = BridgeProcess(config, tmp_path / "bridge-2.log")
        procs.append(second)
        await second.wait_log("bridge running", timeout=60)
        await _wait(
            lambda: any("is done" in m.text for m in world.tg.messages(rep["id"])),
            30,
            "the room to be told the post is done",
        )
        await asyncio.sleep(1.0)  # a second create, were there one, would show now

        posts = _posts_on_pds(atproto.pds, team.account.did)
        assert [p["value"]["text"] for p in posts] == ["launch day: our new pricing is live"]
        rows = _actions(db)
        assert len(rows) == 1, rows
        row = rows[0]
        assert row["status"] == "done" and row["action"] == "post"
        assert row["actor"] == f"telegram:{rep['id']}" and row["room"] == f"telegram:{rep['id']}"
        assert row["result_ref"] == posts[0]["uri"]
        notice = [m.text for m in world.tg.messages(rep["id"]) if "is done" in m.text]
        assert len(notice) == 1 and "launch day" in notice[0] and "bsky.app" in notice[0]
        assert await second.terminate(30) == 0
    finally:
        for p in procs:
            p.close()
        await world.stop()
