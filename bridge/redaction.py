"""One redaction for every way text leaves the bridge.

Secrets reach text by accident: a client library quotes the request URL (the Telegram bot
token is part of every Bot API URL) or the refused credential in its error, and that error
becomes a log line, a CLI error, a chat notice, a failure reason stored in the ledger and
shown by ``bridge status``. Rather than trusting every message, each output path passes its
text through ``redact``: the log formatter, stdout and stderr of the command line, the
store's failure reasons, answers and notices in chat, and ``BridgeError`` messages.

The secrets are the config's (``Config.secrets()``, registered by ``logs.setup``) plus any an
adapter registers at run time.
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Iterable
from typing import Any, TextIO

MASK = "***"
# Shorter values would mask ordinary words; real tokens and app passwords are far longer.
MIN_LENGTH = 6

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def register(values: Iterable[str]) -> None:
    """Add secrets to mask everywhere from now on (idempotent; too short values are ignored)."""
    global _secrets
    with _lock:
        found = set(_secrets) | {str(v) for v in values if v and len(str(v)) >= MIN_LENGTH}
        # longest first: a secret that contains another is masked whole
        _secrets = tuple(sorted(found, key=len, reverse=True))


def registered() -> tuple[str, ...]:
    return _secrets


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingStream(io.TextIOBase):
    """A text stream that masks secrets in whatever is written to it, then passes it on.

    Each ``write`` is masked on its own: ``print``, logging handlers and tracebacks write a
    secret within one call, so no secret is split across two."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(redact(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:  # type: ignore[override]
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.stream.flush()

    def fileno(self) -> int:
        return self.stream.fileno()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def protect_std_streams() -> None:
    """Mask secrets in everything the process writes to stdout and stderr (CLI messages,
    ``bridge status`` and ``bridge check`` lines, uncaught tracebacks); idempotent."""
    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)  # type: ignore[assignment]
