"""``bridge audit``: the audit trail from the terminal (the same rows /audit reads in a room):
every action taken as a team account, every draft step and every refusal, with who asked,
who approved, when, the network and the link. Read-only."""

from __future__ import annotations

import argparse
import csv
import re
import sys
from datetime import UTC, datetime, timedelta

from bridge.config import Config, parse_destination
from bridge.registry import kind_of

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
COLUMNS = (
    "id",
    "created_at",
    "room",
    "network",
    "action",
    "status",
    "actor",
    "actor_name",
    "approved_by",
    "approved_by_name",
    "subject",
    "result_url",
    "text",
    "error",
)
_AGO = re.compile(r"^(\d{1,6})([mhd])$")


def add_parser(sub: argparse._SubParsersAction, **common: object) -> None:
    p = sub.add_parser(
        "audit",
        help="who did what as the team account: actions, drafts, approvals, refusals",
        description="The audit trail, oldest first: every action taken as a team account, every draft step "
        "(drafted, edited, rejected, expired) and every refusal, with who asked and who approved.",
        epilog="examples:\n  bridge audit --since 7d\n  bridge audit --room telegram:-1001234567890 --csv > audit.csv",
        **common,
    )
    p.add_argument("--since", metavar="WHEN", help="30m, 12h, 7d, or a date like 2026-12-01")
    p.add_argument("--room", metavar="DEST", help="only what was asked from this chat, e.g. telegram:-1001234567890")
    p.add_argument("--limit", type=int, default=1000, metavar="N", help="at most this many records (default 1000)")
    p.add_argument("--csv", action="store_true", help="CSV with a header row, for a spreadsheet")


def parse_since(text: str, now: datetime) -> datetime:
    """``30m``/``12h``/``7d`` ago, or an ISO date/time (UTC unless it says otherwise)."""
    text = text.strip()
    m = _AGO.match(text)
    if m:
        n, unit = int(m.group(1)), m.group(2)
        return now - timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: n})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since {text[:40]!r}: write 30m, 12h, 7d or a date like 2026-12-01") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _cell(row: dict, column: str) -> str:
    value = row.get(column, "")
    if column == "created_at":
        return value.astimezone(UTC).isoformat(timespec="seconds")
    text = "" if value is None else str(value)
    # A text written in chat must not run as a formula in the spreadsheet that opens the file.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


async def run(config: Config, args: argparse.Namespace) -> int:
    from bridge.cli import _open
    from bridge.commands import audit_line
    from bridge.storage.db import close_database
    from bridge.storage.store import Store

    since = room = None
    try:
        if args.since:
            since = parse_since(args.since, datetime.now(UTC))
        if args.room:
            chats = {k: cls for k, cls in config.adapter_classes.items() if kind_of(cls) == "chat"}
            room = parse_destination(args.room, chats, config.path)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.limit < 1:
        print("error: --limit must be 1 or more", file=sys.stderr)
        return EXIT_USAGE
    if failed := await _open(config):
        return failed
    try:
        rows = list(reversed(await Store().actions(args.limit, room=room, since=since)))
    finally:
        await close_database()
    if args.csv:
        out = csv.writer(sys.stdout)
        out.writerow(COLUMNS)
        for r in rows:
            out.writerow([_cell(r, c) for c in COLUMNS])
        return EXIT_OK
    if not rows:
        print("no audit records" + (" for that room" if room else "") + (" in that time" if since else ""))
    for r in rows:
        print(f"{r['room']}  {audit_line(r)}")
    return EXIT_OK
