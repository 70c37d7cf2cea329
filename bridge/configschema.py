"""How a config section declares its keys, so that the core can validate any adapter's
section without knowing the adapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Key:
    """One config key: its type, default (``required`` when there is none), whether it is a
    secret (never logged, placeholder values refused) and a one-line help for error messages.
    ``choices`` limits a string to a set of values; ``pattern`` (a regular expression) is what a
    non-empty string must match in full. A non-empty value of a key with ``needs_http`` needs
    the ``[http]`` endpoint, and one with ``requires`` needs those keys of its section set too."""

    type: type | tuple[type, ...]
    default: Any = None
    required: bool = False
    secret: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()
    min: float | None = None
    pattern: str = ""
    needs_http: bool = False
    requires: tuple[str, ...] = ()
