"""The Mastodon API emulator in a process of its own, for benchmarks.

Run in its own process so that the emulator's work (rendering statuses, fanning frames out to
the streams) does not share a core with the bridge being measured. It creates the team account
(token with read, write and follow) and ``--authors`` remote accounts, prints one JSON line
(API root, token, author handles, control URL) and serves until its standard input closes, so
it never outlives the benchmark that started it. The rate limit is lifted: the bridge's own
request budget is what is measured.

Control (plain HTTP on a second port): ``POST /burst`` with ``{"count": N, "tag": "launch"}``
posts N statuses round-robin by the authors, each with the hashtag, as fast as it can, and
answers the seconds it took; ``GET /stats`` gives the requests served (by path) and the
streaming subscriptions open.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter

from aiohttp import web

from tests.emulators.mastodon import MastodonEmulator


async def serve(authors: int) -> None:
    server = MastodonEmulator("team.example", rate_limit=10**9)
    await server.start()
    team = server.add_account("team", display_name="The Team")
    token = server.add_token(team, token="bench-team-token")
    people = [server.add_account(f"author{i}", f"s{i % 10}.example", display_name=f"Author {i}") for i in range(authors)]
    posted = 0

    async def burst(request: web.Request) -> web.Response:
        nonlocal posted
        body = await request.json()
        count, tag = int(body.get("count", 1)), str(body.get("tag", "launch"))
        start = time.perf_counter()
        for i in range(count):
            server.post(people[(posted + i) % len(people)], f"bench status {posted + i} #{tag}")
            if i % 50 == 49:
                await asyncio.sleep(0)  # let the frames go out while posting, as a live server does
        posted += count
        return web.json_response({"seconds": time.perf_counter() - start})

    async def stats(_request: web.Request) -> web.Response:
        paths = Counter(path.split("?")[0] for _method, path, _headers in server.requests)
        subscriptions = sorted({"/".join(k) for st in server.streams for k in st.subscriptions})
        return web.json_response({"requests": sum(paths.values()), "by_path": dict(paths), "subscriptions": subscriptions})

    app = web.Application()
    app.router.add_post("/burst", burst)
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    info = {
        "url": server.url,
        "token": token,
        "authors": [f"{p.username}@{p.domain}" for p in people],
        "control": f"http://127.0.0.1:{port}",
    }
    print(json.dumps(info), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # returns when the parent closes our stdin
    await runner.cleanup()
    await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--authors", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(serve(args.authors))


if __name__ == "__main__":
    main()
