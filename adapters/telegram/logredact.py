"""Keep the bot token out of logs.

The token is part of every Bot API URL (``/bot{token}/{method}``), and httpx logs each request
URL at INFO; python-telegram-bot's loggers may repeat URLs in errors. Whoever reads the token
from a log owns the bot, so it is replaced before any handler sees a record.
"""

from __future__ import annotations

import logging

REDACTED = "<telegram-token>"
# Loggers that see Bot API URLs: httpx (request lines), httpcore (connection details) and
# python-telegram-bot's own.
_LOGGERS = ("httpx", "httpcore", "telegram", "telegram.ext", "telegram.Bot", "telegram.ext.Updater", "telegram.ext.Application")


class TokenRedactor(logging.Filter):
    """Replaces the tokens it knows in a record's message and arguments."""

    def __init__(self) -> None:
        super().__init__("telegram-token")
        self.tokens: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.tokens:
            return True
        message = record.getMessage()
        if any(token in message for token in self.tokens):
            for token in self.tokens:
                message = message.replace(token, REDACTED)
            record.msg, record.args = message, None
        return True


_redactor = TokenRedactor()


def protect_token(token: str) -> None:
    """Redact ``token`` from every logger that may print a Bot API URL; idempotent.

    httpx's request line is kept at WARNING: one line per API call (long polls included) would
    flood the log anyway.
    """
    if token:
        _redactor.tokens.add(token)
    httpx_logger = logging.getLogger("httpx")
    if httpx_logger.level < logging.WARNING:
        httpx_logger.setLevel(logging.WARNING)
    names = set(_LOGGERS) | {
        name for name in logging.root.manager.loggerDict if name.startswith(("telegram", "httpx", "httpcore"))
    }
    for name in names:
        logger = logging.getLogger(name)
        if _redactor not in logger.filters:
            logger.addFilter(_redactor)
