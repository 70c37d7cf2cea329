"""A change made on the command line while ``bridge run`` runs reaches the running bridge within
3 s, the way an operator meets it: the real ``bridge run`` relays Bluesky posts (reference
stack, firehose mode) into a Telegram chat (emulator), and each change is typed as
``bridge VERB … -c FILE`` in another process.

How "reached" is seen: after each change a post by the account it concerns is followed by a
post by a sentinel account that stays followed. The firehose relays in order, so when the
sentinel's post is in the room, the first post either is there too or never will be.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from tests.atproto.harness import Account, AtprotoStack
from tests.faults.bridge_process import BridgeProcess, run_cli
from tests.faults.chat_world import ChatWorld
from tests.faults.crash import FIREHOSE_LINE, READY_LINE, make_accounts
from tests.faults.toml_file import write_config

RELOADED = "settings reloaded"
WITHIN = 3.0  # seconds: SPEC's promise for a change made anywhere
MARK = re.compile(r"live-change (\w+) #(\d+)")


class Room:
    """The Telegram chat the changes are about, and a way to post and check what it shows."""

    def __init__(self, stack: AtprotoStack, world: ChatWorld, bridge: BridgeProcess, config: Path) -> None:
        self.stack, self.world, self.bridge, self.config = stack, world, bridge, config
        self.dest = world.destinations[0]
        self._n = 0

    def shown(self) -> set[tuple[str, int]]:
        return {(who, int(n)) for text in self.world.texts(self.dest) for who, n in MARK.findall(text)}

    async def cli(self, *args: str) -> str:
        """Run ``bridge ARGS -c FILE``; wait until the running bridge has reloaded; return stdout."""
        reloads = self.bridge.log_text().count(RELOADED)
        done = await asyncio.to_thread(run_cli, self.config, *args)
        assert done.returncode == 0, f"bridge {' '.join(args)}: {done.stdout}{done.stderr}"
        started = time.monotonic()
        await self.bridge.wait_log(RELOADED, timeout=10, count=reloads + 1)
        took = time.monotonic() - started
        assert took < WITHIN, f"bridge {' '.join(args)} reached the running bridge after {took:.1f} s"
        return done.stdout

    async def post_then_sentinel(self, by: Account, sentinel: Account) -> tuple[str, int]:
        """Post as ``by`` (marked "subject"), then as the sentinel; return once the sentinel's
        post is shown."""
        self._n += 1
        await self.stack.post(by, f"live-change subject #{self._n}")
        await self.stack.post(sentinel, f"live-change sentinel #{self._n}")
        await self.world.tg.wait_until(lambda: ("sentinel", self._n) in self.shown(), timeout=20)
        return ("subject", self._n)


async def test_follow_and_unfollow_typed_on_the_command_line_reach_the_running_bridge(
    atproto: AtprotoStack, chat_world: ChatWorld, tmp_path: Path
) -> None:
    team, alice = await make_accounts(atproto)
    bob = await atproto.create_account("bob", "Bob Sentinel")
    config = write_config(
        tmp_path / "config.toml",
        {
            "database": {"url": f"sqlite://{tmp_path}/bridge.sqlite3"},
            "bridge": {"admins": [], "log_level": "info"},
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
    bridge = BridgeProcess(config, tmp_path / "bridge.log")
    try:
        await bridge.wait_log(READY_LINE, timeout=60)
        room = Room(atproto, chat_world, bridge, config)
        await room.cli("follow", bob.handle, "--to", room.dest)
        await bridge.wait_log(FIREHOSE_LINE, timeout=30)

        followed = await room.cli("follow", alice.handle, "--to", room.dest)
        assert "Following" in followed
        assert await room.post_then_sentinel(alice, bob) in room.shown()

        stopped = await room.cli("unfollow", alice.handle, "--to", room.dest)
        assert "Stopped following" in stopped
        assert await room.post_then_sentinel(alice, bob) not in room.shown()

        await room.cli("follow", alice.handle, "--to", room.dest)  # again: from now on, no flood
        assert await room.post_then_sentinel(alice, bob) in room.shown()
        assert sorted(n for who, n in room.shown() if who == "subject") == [1, 3]
    finally:
        bridge.close()
