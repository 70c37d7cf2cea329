"""Releases held deliveries (digests, quiet hours) as summary messages.

A summary is plain text (the chat adapter escapes it): one line per post with its author,
the start of its text and its link, cut into messages that fit every chat platform.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta

from bridge.delivery.quiet import QuietHours, next_digest
from bridge.errors import DestinationUnavailable, RateLimited
from bridge.matching.matcher import Route
from bridge.model import ChatTarget, Post
from bridge.protocols import ChatAdapter
from bridge.storage.store import HeldDelivery, Store, utcnow

log = logging.getLogger("bridge.delivery.digest")

LINE_TEXT = 160  # characters of each post's text in a summary line
MESSAGE_BUDGET = 1800  # below Discord's 2000 and Telegram's 4096 after escaping


def summary_messages(title: str, posts: list[Post]) -> list[str]:
    """``title`` then one line per post, split into messages of at most MESSAGE_BUDGET characters."""
    lines = []
    for p in posts:
        text = " ".join(p.text.split())
        if len(text) > LINE_TEXT:
            text = text[: LINE_TEXT - 1].rstrip() + "…"
        who = f"@{p.reposted_by.handle} reposted @{p.author.handle}" if p.reposted_by else f"@{p.author.handle}"
        lines.append(f"• {who} {p.created_at:%H:%M}: {text} {p.url}".rstrip())
    messages, current = [], title
    for line in lines:
        if len(current) + 1 + len(line) > MESSAGE_BUDGET:
            messages.append(current)
            current = f"{title} (continued)"
        current += "\n" + line
    messages.append(current)
    return messages


class Digester:
    def __init__(
        self,
        store: Store,
        chats: Mapping[str, ChatAdapter],
        quiet: Callable[[], Mapping[str, QuietHours]],
        on_unavailable: Callable[[ChatTarget, str], object],
        describe: Callable[[int | None], str],
        every: float = 15.0,
    ) -> None:
        self._store = store
        self._chats = chats
        self._quiet = quiet
        self._on_unavailable = on_unavailable
        self._describe = describe
        self._every = every

    async def run(self) -> None:
        while True:
            try:
                await self.release_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("releasing held deliveries failed; retrying")
            await asyncio.sleep(self._every)

    async def release_due(self) -> int:
        """Send a summary for every destination with held deliveries due; returns posts released."""
        now = utcnow()
        due = await self._store.due_held(now)
        by_dest: dict[ChatTarget, list[HeldDelivery]] = defaultdict(list)
        for h in due:
            by_dest[h.destination].append(h)
        released = 0
        for target, items in by_dest.items():
            ids = [h.id for h in items]
            quiet = self._quiet().get(str(target))
            until = quiet.until(now) if quiet else None
            if until is not None:  # a digest falling due at night waits for the morning
                await self._store.postpone_held(ids, until)
                continue
            chat = self._chats.get(target.platform)
            if chat is None:
                await self._store.postpone_held(ids, now + timedelta(hours=1), f"no [{target.platform}] section is configured")
                continue
            titles = {self._describe(h.subscription_id) for h in items}
            title = f"{len(items)} post{'s' if len(items) != 1 else ''} held for this room ({'; '.join(sorted(titles))})"
            try:
                for text in summary_messages(title, [h.post for h in items]):
                    await chat.notify(target, text)
            except RateLimited as exc:
                await self._store.postpone_held(ids, now + timedelta(seconds=max(exc.retry_after, 1)), str(exc))
                continue
            except DestinationUnavailable as exc:
                await self._store.fail_held(target, f"destination paused: {exc}")
                await self._on_unavailable(target, str(exc))  # type: ignore[misc]
                continue
            except Exception as exc:
                log.warning("summary failed destination=%s reason=%r", target, str(exc))
                await self._store.postpone_held(ids, now + timedelta(minutes=1), str(exc) or type(exc).__name__)
                continue
            await self._store.release_held(ids, utcnow())
            released += len(ids)
            log.info("summary delivered destination=%s posts=%d", target, len(ids))
        return released


def hold_until(digest: str, quiet: QuietHours | None, now: datetime) -> datetime | None:
    """When a delivery made now is released, or None to send it right away."""
    at = next_digest(digest, now, quiet.tz if quiet else "UTC") if digest in ("hourly", "daily") else None
    quiet_end = quiet.until(now) if quiet else None
    if at is None:
        return quiet_end
    return max(at, quiet_end) if quiet_end else at


def held_routes(routes: Iterable[Route], quiet: Mapping[str, QuietHours], now: datetime) -> dict[tuple[int, str], datetime]:
    """For the routes a post matched: (subscription id, destination) → when its delivery is
    released, for those a digest or the room's quiet hours hold back."""
    held = {}
    for r in routes:
        dest = str(r.destination)
        until = hold_until(r.filters.digest, quiet.get(dest), now)
        if until is not None:
            held[(r.subscription_id, dest)] = until
    return held
