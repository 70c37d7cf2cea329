"""Structured logs, one event per line, with secrets masked before anything is written."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable

from bridge import redaction

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class RedactingFormatter(logging.Formatter):
    """Formats a record on one line and replaces every known secret with ``***``: a token
    that slips into an exception message or a library's debug line is still not printed.
    Masks ``secrets`` and everything registered with ``bridge.redaction``."""

    converter = time.gmtime

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(FORMAT, "%Y-%m-%dT%H:%M:%SZ")
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = redaction.redact(super().format(record))
        for secret in self.secrets:
            text = text.replace(secret, redaction.MASK)
        # tracebacks span lines; keep one event per line for log processors
        return text.replace("\n", " ⏎ ") if record.exc_info else text


def setup(level: str = "info", secrets: Iterable[str] = ()) -> None:
    """Log to stderr at ``level``; mask ``secrets`` (the config's) in every log line and in
    everything the process prints to stdout and stderr."""
    redaction.register(secrets)
    redaction.protect_std_streams()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Client libraries log request URLs, and Telegram puts the bot token in every URL.
    for noisy in ("httpx", "httpcore", "telegram", "discord", "aiosqlite", "tortoise", "asyncio", "websockets"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # discord.py warns at every start that voice needs PyNaCl and davey: the bridge sends
    # no voice, so the warning only hides the lines that matter.
    logging.getLogger("discord.client").addFilter(_NoVoiceWarning())


class _NoVoiceWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "voice will NOT be supported" not in record.getMessage()
