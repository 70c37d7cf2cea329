"""Quiet hours of a room, and the digest schedule: when held posts are released."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

QUIET_HELP = "write it as /quiet 22:00-07:00 Europe/Berlin (a tz database name; default UTC), or /quiet off"
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")
DAILY_AT = time(9, 0)  # daily digests arrive at 09:00 in the room's time zone


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time
    tz: str = "UTC"

    def to_json(self) -> dict[str, str]:
        return {"start": self.start.strftime("%H:%M"), "end": self.end.strftime("%H:%M"), "tz": self.tz}

    @classmethod
    def from_json(cls, data: dict[str, str] | None) -> QuietHours | None:
        if not data:
            return None
        return cls(time.fromisoformat(data["start"]), time.fromisoformat(data["end"]), data.get("tz", "UTC"))

    def describe(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.tz}"

    def until(self, now: datetime) -> datetime | None:
        """When the quiet window that ``now`` falls in ends (aware UTC), or None when it is not quiet."""
        zone = ZoneInfo(self.tz)
        local = now.astimezone(zone)
        t = local.time()
        if self.start <= self.end:
            inside = self.start <= t < self.end
            end_day = local.date()
        else:  # across midnight, e.g. 22:00-07:00
            inside = t >= self.start or t < self.end
            end_day = local.date() + timedelta(days=1) if t >= self.start else local.date()
        if not inside:
            return None
        return datetime.combine(end_day, self.end, zone).astimezone(UTC)


def parse_quiet(text: str) -> QuietHours | None:
    """Parse ``22:00-07:00 [tz]`` (None for ``off``). Raises ValueError with a message for the user."""
    words = re.sub(r"\s*-\s*", "-", text.strip()).split()
    if len(words) == 1 and words[0].lower() in ("off", "none"):
        return None
    if not 1 <= len(words) <= 2:
        raise ValueError(QUIET_HELP)
    m = _RANGE.match(words[0])
    if not m:
        raise ValueError(f"{words[0][:40]!r} is not a time range; {QUIET_HELP}")
    h1, m1, h2, m2 = map(int, m.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError(f"{words[0]!r} has an impossible time; {QUIET_HELP}")
    if (h1, m1) == (h2, m2):
        raise ValueError("the quiet hours start and end at the same time; give a range like 22:00-07:00")
    tz = words[1] if len(words) == 2 else "UTC"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{tz[:60]!r} is not a time zone; use a tz database name like Europe/Berlin or America/New_York"
        ) from None
    return QuietHours(time(h1, m1), time(h2, m2), tz)


def next_digest(mode: str, now: datetime, tz: str = "UTC") -> datetime:
    """When a digest collecting posts from ``now`` is sent: the next full hour, or the next 09:00
    in the room's time zone."""
    if mode == "hourly":
        return (now + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    at = datetime.combine(local.date(), DAILY_AT, zone)
    if at <= local:
        at = datetime.combine(local.date() + timedelta(days=1), DAILY_AT, zone)
    return at.astimezone(UTC)
