"""The command line next to a running ``bridge run``: what it changes reaches the running
bridge (both real processes, the chat on the Telegram emulator, Bluesky on the reference stack)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.atproto.harness import AtprotoStack
from tests.faults.bridge_process import BridgeProcess, run_cli
from tests.faults.chat_world import ChatWorld
from tests.faults.crash import FIREHOSE_LINE, READY_LINE, make_accounts
from tests.faults.toml_file import write_config


async def test_a_follow_from_the_command_line_reaches_the_running_bridge(
    atproto: AtprotoStack, chat_world: ChatWorld, tmp_path: Path
) -> None:
    team, alice = await make_accounts(atproto)
    room = chat_world.destinations[0]
    config = write_config(
        tmp_path / "config.toml",
        {
            "database": {"url": f"sqlite://{tmp_path}/bridge.sqlite3"},
            "bridge": {"shutdown_timeout": 2},
            "telegram": chat_world.config_sections()["telegram"],
            "bluesky": {
                "service": atproto.pds,
                "identifier": team.account.handle,
                "password": team.app_password,
                "realtime": "firehose",
                "firehose_url": atproto.firehose_url,
                "poll_interval": 60,
            },
        },
    )
    proc = BridgeProcess(config, tmp_path / "bridge.log")
    try:
        await proc.wait_log(READY_LINE, timeout=60)
        await proc.wait_log(FIREHOSE_LINE, timeout=30)
        followed = await asyncio.to_thread(run_cli, config, "follow", alice.handle, "--to", room)
        assert followed.returncode == 0, followed.stderr
        assert followed.stdout.startswith(f"Following @{alice.handle} on bluesky in {room} (#1)")
        await proc.wait_log("subscriptions reloaded", timeout=15)
        await atproto.post(alice, "heard from the command line")
        for _ in range(300):
            if any("heard from the command line" in t for t in chat_world.texts(room)):
                break
            await asyncio.sleep(0.05)
        assert any("heard from the command line" in t for t in chat_world.texts(room)), chat_world.texts(room)
    finally:
        await proc.terminate(10)
        proc.close()
