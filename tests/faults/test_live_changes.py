"""A change made on the command line while ``bridge run`` runs reaches the running bridge within
3 s, the way an operator meets it: the real ``bridge run`` relays Bluesky posts (reference
stack, firehose mode) into two Telegram chats (emulator), and each change is typed as
``bridge VERB … -c FILE`` in another process.

How "reached" is seen: after each change the account it concerns posts, then a sentinel
account that stays followed in both chats posts too. The firehose relays in order and rooms
are decided at ingest, so once the sentinel's post is shown in the other chat, the first post
is either on its way to the chat the change was about or will never be.
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
SETTLE = 1.5  # seconds a post that was let through has to reach its chat


class Rooms:
    """The chat the changes are about (``room``), a second chat that only the sentinel feeds
    (``other``), and a way to post and see what they show."""

    def __init__(self, stack: AtprotoStack, world: ChatWorld, bridge: BridgeProcess, config: Path) -> None:
        self.stack, self.world, self.bridge, self.config = stack, world, bridge, config
        self.room, self.other = world.destinations[0], world.destinations[1]
        self._n = 0

    def shown(self, dest: str) -> set[tuple[str, int]]:
        return {(who, int(n)) for text in self.world.texts(dest) for who, n in MARK.findall(text)}

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

    async def subject_shown(self, subject: Account, sentinel: Account, words: str = "") -> bool:
        """Post as ``subject`` (with ``words``), then as the sentinel; once the sentinel's post
        is in the other chat (and a moment more), whether the subject's post is in the room."""
        self._n += 1
        n = self._n
        await self.stack.post(subject, f"live-change subject #{n} {words}".strip())
        await self.stack.post(sentinel, f"live-change sentinel #{n}")
        await self.world.tg.wait_until(lambda: ("sentinel", n) in self.shown(self.other), timeout=20)
        if ("subject", n) not in self.shown(self.room):
            await asyncio.sleep(SETTLE)
        return ("subject", n) in self.shown(self.room)


async def test_every_change_typed_on_the_command_line_reaches_the_running_bridge(
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
        r = Rooms(atproto, chat_world, bridge, config)
        await r.cli("follow", bob.handle, "--to", r.other)
        await bridge.wait_log(FIREHOSE_LINE, timeout=30)

        followed = await r.cli("follow", alice.handle, "--to", r.room)
        sub = re.search(r"#(\d+)", followed).group(1)
        assert await r.subject_shown(alice, bob)

        await r.cli("filter", sub, "exclude:hiring")
        assert not await r.subject_shown(alice, bob, "we are hiring")
        assert await r.subject_shown(alice, bob, "pricing news")
        await r.cli("filter", sub, "reset")
        assert await r.subject_shown(alice, bob, "we are hiring")

        await r.cli("digest", sub, "daily")  # held for the daily summary
        assert not await r.subject_shown(alice, bob)
        await r.cli("digest", sub, "off")
        assert await r.subject_shown(alice, bob)

        await r.cli("quiet", "00:00-23:59", "UTC", "--to", r.room)  # held until the quiet hours end
        assert not await r.subject_shown(alice, bob)
        await r.cli("quiet", "off", "--to", r.room)
        assert await r.subject_shown(alice, bob)

        await r.cli("pause", "--to", r.room)
        assert not await r.subject_shown(alice, bob)
        await r.cli("resume", "--to", r.room)
        assert await r.subject_shown(alice, bob)

        stopped = await r.cli("unfollow", alice.handle, "--to", r.room)
        assert "Stopped following" in stopped
        assert not await r.subject_shown(alice, bob)
        await r.cli("follow", alice.handle, "--to", r.room)  # again: from now on, no flood
        assert await r.subject_shown(alice, bob)

        # Each post the room was meant to get, once; none of those it was not.
        shown = sorted(n for who, n in r.shown(r.room) if who == "subject")
        assert shown == [1, 3, 4, 6, 8, 10, 12], shown
    finally:
        bridge.close()
