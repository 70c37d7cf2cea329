"""Text from outside made storable: what every post and chat event passes through on its way in."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def well_formed(value: Any) -> Any:
    """``value`` (a Post, a ChatEvent and what they hold) with every lone UTF-16 surrogate
    replaced by U+FFFD; unchanged values are returned as they are.

    JSON may carry "\\ud800" and Python keeps it, but no database stores it (Postgres refuses it
    in a JSON column, SQLite cannot encode it) and no chat can send it: one bad character must
    not cost a post nor hold up the posts behind it, and a /post that reached the network must
    still be recorded.
    """
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value) if _SURROGATE.search(value) else value
    if isinstance(value, tuple):
        cleaned = tuple(well_formed(v) for v in value)
        return value if all(a is b for a, b in zip(cleaned, value, strict=True)) else cleaned
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in dataclasses.fields(value):
            old = getattr(value, f.name)
            new = well_formed(old)
            if new is not old:
                changes[f.name] = new
        return dataclasses.replace(value, **changes) if changes else value
    return value
