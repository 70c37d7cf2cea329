"""Structured logs, one event per line, with secrets masked before anything is written."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class RedactingFormatter(logging.Formatter):
    """Formats a record on one line and replaces every known secret with ``***``: a token
    that slips into an exception message or a library's debug line is still not printed."""

    converter = time.gmtime

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(FORMAT, "%Y-%m-%dT%H:%M:%SZ")
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        # tracebacks span lines; keep one event per line for log processors
        return text.replace("\n", " ⏎ ") if record.exc_info else text


def setup(level: str = "info", secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Client libraries log request URLs, and Telegram puts the bot token in every URL.
    for noisy in ("httpx", "httpcore", "telegram", "discord", "aiosqlite", "tortoise", "asyncio", "websockets"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
