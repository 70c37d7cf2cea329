"""Notices from the bridge to rooms (a gap in a feed), recorded before they are sent.

A notice is written in the same transaction as what caused it (a gap is committed with the
cursor that skips it), once per (room, key), and sent by ``NoticeSender`` through the chat
adapter's ``notify``; it is retried until the room has it, like a delivery. It is said once:
only a crash between the platform's answer and the record can repeat it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

from bridge.errors import DestinationUnavailable, Permanent, RateLimited
from bridge.model import Gap, SourceKind
from bridge.protocols import ChatAdapter
from bridge.storage.store import RoomNotice, Store, utcnow

log = logging.getLogger("bridge.delivery.notices")

RETRY_FIRST = timedelta(seconds=15)
RETRY_MAX = timedelta(minutes=30)
GAP_LINES = 10  # gaps told in one room's notice; the rest are counted (a message fits every chat)
GIVE_UP_AFTER = 20  # attempts: about a day of retries at the longest interval, then failed


def gap_key(gap: Gap) -> str:
    """The notice's key: the same gap is told once per room (64 characters at most)."""
    digest = hashlib.blake2b(f"{gap.source.network}\0{gap.source.key}\0{gap.since.isoformat()}".encode(), digest_size=16)
    return f"gap:{digest.hexdigest()}"


def gap_key_of_many(keys: list[str]) -> str:
    """The key of one notice that tells several gaps (sorted ``gap_key``s)."""
    return "gaps:" + hashlib.blake2b("\0".join(keys).encode(), digest_size=16).hexdigest()


def _when(t: datetime, until: datetime) -> str:
    t = t.astimezone(until.tzinfo) if until.tzinfo else t
    return f"{t:%H:%M} UTC" if t.date() == until.date() else f"{t:%d %b %H:%M} UTC"


def gap_text(gap: Gap, label: str, since: datetime) -> str:
    """What a room is told about a gap of one of its subscriptions (``label``: the handle or
    query the room subscribed with), e.g. "About 120 posts by @alice.bsky.social since 14:02
    UTC could not be fetched; open https://bsky.app/profile/alice.bsky.social to see them."."""
    network = gap.source.network.capitalize()
    if gap.source.kind is SourceKind.FOLLOW:
        what = f"posts by @{label}"
    elif gap.source.kind is SourceKind.QUERY:
        what = f"posts matching “{label}”"
    else:
        what = f"mentions and messages of the team account on {network}"
    when = _when(since, gap.until)
    where = f"; open {gap.url} to see them" if gap.url else f"; see them on {network}"
    if gap.missing:
        head = f"About {gap.missing} {what}" if gap.missing > 1 else f"About 1 of the {what}"
        return f"{head} since {when} could not be fetched{where}."
    return f"Some {what} since {when} may be missing: the bridge could not fetch back that far{where}."


class NoticeSender:
    """Sends recorded notices through the chat adapters; wakes on ``wake()`` and retries."""

    def __init__(self, store: Store, chats: Mapping[str, ChatAdapter], every: float = 30.0) -> None:
        self._store = store
        self._chats = chats
        self._every = every
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            delay = self._every
            try:
                await self.send_due()
                nxt = await self._store.next_notice_at()
                if nxt is not None:
                    delay = min(delay, max(0.05, (nxt - utcnow()).total_seconds()))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sending notices failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def send_due(self) -> int:
        """Send every notice whose time has come; returns how many the rooms received."""
        sent = 0
        for notice in await self._store.due_notices(utcnow()):
            if await self._send(notice):
                sent += 1
        return sent

    async def _send(self, notice: RoomNotice) -> bool:
        chat = self._chats.get(notice.destination.platform)
        if chat is None:
            await self._store.notice_retry(notice.id, utcnow() + RETRY_MAX, f"no [{notice.destination.platform}] section")
            return False
        try:
            await chat.notify(notice.destination, notice.text)
        except RateLimited as exc:
            await self._store.notice_retry(notice.id, utcnow() + timedelta(seconds=max(exc.retry_after, 1)), str(exc))
            return False
        except (DestinationUnavailable, Permanent) as exc:
            await self._store.notice_failed(notice.id, str(exc) or type(exc).__name__)
            log.warning("notice not delivered destination=%s reason=%r", notice.destination, str(exc))
            return False
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            if notice.attempts + 1 >= GIVE_UP_AFTER:
                await self._store.notice_failed(notice.id, reason)
                log.warning("notice given up destination=%s reason=%r", notice.destination, reason)
                return False
            delay = min(RETRY_FIRST * 2**notice.attempts, RETRY_MAX)  # doubles per failure
            await self._store.notice_retry(notice.id, utcnow() + delay, reason)
            log.warning("notice not sent yet destination=%s reason=%r", notice.destination, reason)
            return False
        await self._store.notice_sent(notice.id)
        log.info("notice sent destination=%s key=%s", notice.destination, notice.key)
        return True
