"""Timestamp identifiers (TIDs), the record keys of AT Protocol repositories.

A TID is 64 bits written in 13 characters of base32-sortable: the top bit 0, 53 bits of
microseconds since the Unix epoch, 10 bits of clock identifier (atproto spec "Record Key
Type: tid"). The adapter picks one as the record key of an action before the action is made,
so that a retry of the same action names the same record and cannot create a second one.
"""

from __future__ import annotations

import random
import re
import threading
import time
from datetime import UTC, datetime

ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
_TID = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")


def encode(micros: int, clock_id: int) -> str:
    value = (micros << 10) | (clock_id & 0x3FF)
    out = []
    for _ in range(13):
        out.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def tid_time(text: str) -> datetime | None:
    """The time a TID was made, or None when ``text`` is not a TID."""
    if not _TID.match(text):
        return None
    value = 0
    for ch in text:
        value = (value << 5) | ALPHABET.index(ch)
    try:
        return datetime.fromtimestamp((value >> 10) / 1_000_000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


class Tids:
    """Makes TIDs that only ever grow within this process (a clock step back does not repeat
    one); the random clock id keeps two processes apart."""

    def __init__(self) -> None:
        self._clock_id = random.SystemRandom().randrange(1024)
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            now = time.time_ns() // 1000
            self._last = max(now, self._last + 1)
            return encode(self._last, self._clock_id)
