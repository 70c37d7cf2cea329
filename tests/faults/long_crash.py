"""The long crash run, one command that prints the figures kept in RELIABILITY.md:

    .venv/bin/python -m tests.faults.long_crash [--posts 200] [--kills 20] [--seed N] [--split]
    .venv/bin/python -m tests.faults.long_crash --network mastodon [--posts 200] [--kills 20]

It starts the reference AT Protocol stack (tests/atproto/harness.py; Postgres and Redis must
answer, as for the suite) or, with ``--network mastodon``, the Mastodon emulator (streaming
on), the Telegram and Discord emulators, and runs tests/faults/crash.py's crash run: the real ``bridge run`` relays every post to 4 rooms on 2 platforms while it is
SIGKILLed at random moments and restarted. Exit code 0 only when nothing was lost, Discord has
no duplicate and every duplicate lies in a send→commit window.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from tests.atproto.harness import AtprotoStack, provision
from tests.faults.chat_world import DISCORD_TOKEN, TELEGRAM_TOKEN
from tests.faults.crash import MASTODON_TOKEN, MastodonSource, run_crash, session_secrets, status_output


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--posts", type=int, default=200)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--post-every", type=float, default=0.5, help="seconds between posts")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--split", action="store_true", help="posts of two images (two messages each) into Telegram groups (20 a minute)"
    )
    p.add_argument("--network", choices=("bluesky", "mastodon"), default="bluesky", help="where the posts come from")
    args = p.parse_args()
    if args.network == "mastodon":
        if args.split:
            p.error("--split posts images, which the Mastodon crash run does not")
        with tempfile.TemporaryDirectory(prefix="bridge-crash-") as tmp:
            return asyncio.run(_run(MastodonSource(), Path(tmp), args))
    stack = AtprotoStack.start(provision())
    try:
        with tempfile.TemporaryDirectory(prefix="bridge-crash-") as tmp:
            return asyncio.run(_run(stack, Path(tmp), args))
    finally:
        stack.close()


async def _run(stack: AtprotoStack | MastodonSource, workdir: Path, args: argparse.Namespace) -> int:
    def say(line: str) -> None:
        print(f"  {line}", file=sys.stderr, flush=True)

    report = await run_crash(
        stack,
        workdir,
        posts=args.posts,
        kills=args.kills,
        post_every=args.post_every,
        seed=args.seed,
        drain_timeout=max(120.0, args.posts * (7.0 if args.split else 1.5)),
        say=say,
        split=args.split,
    )
    logs = "".join(path.read_text(errors="replace") for path in report.logs)
    status = status_output(workdir / "config.toml")
    if isinstance(stack, MastodonSource):
        secrets = [TELEGRAM_TOKEN, DISCORD_TOKEN, MASTODON_TOKEN]
    else:
        config = (workdir / "config.toml").read_text()
        app_password = config.split('password = "', 1)[1].split('"', 1)[0]
        secrets = [TELEGRAM_TOKEN, DISCORD_TOKEN, app_password, *session_secrets(workdir / "bridge.sqlite3")]
    leaked = sum(1 for s in secrets if s in logs or s in status)
    for line in report.lines():
        print(line)
    print(f"secrets checked in {len(report.logs)} logs and `bridge status`: {len(secrets)}, shown: {leaked}")
    if report.missing:
        print(f"missing: {report.missing}")
    ok = (
        report.lost == 0
        and report.duplicated_by_platform.get("discord", 0) == 0
        and report.duplicated_outside_window == 0
        and report.sigterm_exit == 0
        and leaked == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
