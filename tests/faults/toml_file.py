"""Writing the bridge's config file for a test (the standard library reads TOML but does not
write it; the config only needs tables of strings, numbers, booleans and lists)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string (same escapes)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def write_config(path: Path, sections: Mapping[str, Mapping[str, Any]], subscriptions: list[Mapping[str, Any]] = ()) -> Path:
    """``sections``: {"bridge": {...}, "telegram": {...}}; ``subscriptions``: [[subscription]] tables."""
    lines = []
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_value(v)}" for k, v in keys.items()]
        lines.append("")
    for sub in subscriptions:
        lines.append("[[subscription]]")
        lines += [f"{k} = {_value(v)}" for k, v in sub.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
