"""Structured logs, one event per line, with secrets masked before anything is written."""

from __future__ import annotations

import ast
import json
import logging
import re
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


# Our lines read "event words key=value key='quoted value' ..." (values quoted with %r when they
# may hold spaces).
_FIELD = re.compile(r"""(?:^|\s)([A-Za-z_][A-Za-z0-9_.]*)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S*)""")
_RESERVED = {"time", "level", "logger", "event", "message", "error"}


def parse_fields(message: str) -> tuple[str, dict[str, str]]:
    """Split ``"delivered delivery=5 post=x reason='a b'"`` into the event (the words before
    the first ``key=``) and its fields, quoted values unquoted."""
    first = _FIELD.search(message)
    if first is None:
        return message.strip(), {}
    event = message[: first.start()].strip()
    fields: dict[str, str] = {}
    for m in _FIELD.finditer(message, first.start()):
        key, raw = m.group(1), m.group(2)
        if raw[:1] in "'\"" and len(raw) >= 2 and raw[-1] == raw[0]:
            try:
                raw = str(ast.literal_eval(raw))
            except (ValueError, SyntaxError):
                raw = raw[1:-1]
        fields[f"field_{key}" if key in _RESERVED else key] = raw
    return event, fields


class JsonFormatter(RedactingFormatter):
    """One JSON object per line: time, level, logger, event, the line's ``key=value`` fields,
    and ``error`` (the traceback) when there is one. Every string is redacted before it is
    encoded, and the encoded line once more (a secret escaped differently is still caught)."""

    def format(self, record: logging.LogRecord) -> str:
        message = self._redact(record.getMessage())
        event, fields = parse_fields(message)
        out: dict[str, str] = {
            "time": self.formatTime(record, self.datefmt),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": event,
        }
        out.update({k: self._redact(v) for k, v in fields.items()})
        if record.exc_info:
            out["error"] = self._redact(self.formatException(record.exc_info))
        return self._redact(json.dumps(out, ensure_ascii=False))

    def _redact(self, text: str) -> str:
        text = redaction.redact(text)
        for secret in (*self.secrets, *redaction.registered()):
            text = text.replace(secret, "***")
            escaped = json.dumps(secret, ensure_ascii=False)[1:-1]
            if escaped != secret:
                text = text.replace(escaped, "***")
        return text


def setup(level: str = "info", secrets: Iterable[str] = (), fmt: str = "text") -> None:
    """Log to stderr at ``level``, as text lines or (``fmt="json"``) JSON lines; mask
    ``secrets`` (the config's) in every log line and in everything the process prints to
    stdout and stderr."""
    redaction.register(secrets)
    redaction.protect_std_streams()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else RedactingFormatter(secrets))
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
