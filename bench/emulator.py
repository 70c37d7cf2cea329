"""Start and stop the emulator process of ``bench.tg_server`` from a benchmark."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class EmulatorProcess:
    url: str
    token: str
    private: list[int]
    groups: list[int]
    control: str
    process: asyncio.subprocess.Process

    @property
    def chats(self) -> list[int]:
        return [*self.private, *self.groups]

    async def stats(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as s, s.get(f"{self.control}/stats") as r:
            return await r.json()

    async def messages(self) -> list[dict[str, Any]]:
        """Every message accepted: chat id, ``at`` (time.monotonic(), comparable across processes
        on one machine) and text."""
        async with aiohttp.ClientSession() as s, s.get(f"{self.control}/messages") as r:
            return await r.json()

    async def reset(self) -> None:
        async with aiohttp.ClientSession() as s, s.post(f"{self.control}/reset") as r:
            await r.json()

    async def stop(self) -> None:
        """Close its stdin (it exits by itself), then make sure of it."""
        if self.process.returncode is None:
            if self.process.stdin is not None:
                self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                os.killpg(self.process.pid, signal.SIGKILL)
                await self.process.wait()


async def start_emulator(private: int, groups: int, limits: bool = False) -> EmulatorProcess:
    """A Bot API emulator in its own process group, with ``private`` + ``groups`` chats."""
    args = [sys.executable, "-m", "bench.tg_server", "--private", str(private), "--groups", str(groups)]
    if limits:
        args.append("--limits")
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, start_new_session=True
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        info = json.loads(line)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    return EmulatorProcess(process=proc, **info)
