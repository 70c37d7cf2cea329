"""The Telegram Bot API emulator in a process of its own, for benchmarks.

Run in its own process so that the emulator's work (HTTP, HTML parsing) does not share a
core with the client being measured. It creates ``--private`` private chats and ``--groups``
groups, prints one JSON line (API root, token, chat ids, control URL) and serves until its
standard input closes, so it never outlives the benchmark that started it.

Control (plain HTTP on a second port): ``GET /stats`` gives the accepted and refused sends
and the times the emulator accepted them; ``GET /messages`` every accepted message (chat,
``time.monotonic()`` when accepted, text); ``POST /reset`` forgets them and the rate windows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import defaultdict, deque
from typing import Any

from aiohttp import web

from tests.emulators.telegram import TelegramEmulator


def stats(tg: TelegramEmulator) -> dict[str, Any]:
    times = sorted(m.at for messages in tg.sent.values() for m in messages)
    return {
        "accepted": len(times),
        "rejected": len(tg.rejected),
        "rejected_429": sum(1 for r in tg.rejected if r[2].code == 429),
        "per_chat": {str(chat): len(messages) for chat, messages in tg.sent.items()},
        "times": times,
        "now": time.monotonic(),
    }


def reset(tg: TelegramEmulator) -> None:
    tg.sent.clear()
    tg.requests.clear()
    tg.rejected.clear()
    tg._global_sends = deque()  # the rate windows: a new run starts with no history
    tg._chat_sends = defaultdict(deque)


async def serve(private: int, groups: int, limits: bool) -> None:
    tg = TelegramEmulator()
    tg.enforce_rate_limits = limits
    await tg.start()
    users = [tg.add_user(f"User{i}", f"user{i}") for i in range(private)]
    private_ids = [tg.private_chat(u).id for u in users]
    group_ids = [tg.add_group(f"Group {i}").id for i in range(groups)]

    async def get_stats(_request: web.Request) -> web.Response:
        return web.json_response(stats(tg))

    async def get_messages(_request: web.Request) -> web.Response:
        messages = [{"chat": m.chat_id, "at": m.at, "text": m.text} for ms in tg.sent.values() for m in ms]
        return web.json_response(messages)

    async def post_reset(_request: web.Request) -> web.Response:
        reset(tg)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/stats", get_stats)
    app.router.add_get("/messages", get_messages)
    app.router.add_post("/reset", post_reset)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    info = {
        "url": tg.url,
        "token": tg.token,
        "private": private_ids,
        "groups": group_ids,
        "control": f"http://127.0.0.1:{port}",
    }
    print(json.dumps(info), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # returns when the parent closes our stdin
    await runner.cleanup()
    await tg.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--private", type=int, default=5)
    parser.add_argument("--groups", type=int, default=5)
    parser.add_argument("--limits", action="store_true", help="answer 429 on any violation of Telegram's limits")
    args = parser.parse_args()
    asyncio.run(serve(args.private, args.groups, args.limits))


if __name__ == "__main__":
    main()
