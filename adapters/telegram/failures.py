"""Map python-telegram-bot's errors into the bridge's error hierarchy.

Bot API (https://core.telegram.org/bots/api#making-requests): 429 carries
``parameters.retry_after``; 403 means the bot was blocked, kicked or is not a member; 400
"chat not found" means the destination is gone; other 400s reject this message for good;
401/404 on a method means the token is wrong; 5xx and network failures are worth a retry.
"""

from __future__ import annotations

import datetime as dtm
import warnings

from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from bridge.errors import (
    AuthFailed,
    BridgeError,
    DestinationUnavailable,
    Permanent,
    RateLimited,
    Transient,
)

# 400 descriptions that mean the destination itself is unusable, not this one message.
_GONE = (
    "chat not found",
    "chat_write_forbidden",
    "not enough rights",
    "have no rights to send",
    "topic_closed",
    "topic_deleted",
    "message thread not found",
    "need administrator rights",
)


def retry_after_seconds(error: RetryAfter) -> float:
    """The wait a 429 asked for, in seconds (PTB 22 returns int or timedelta)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = error.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


def auth_failed(error: TelegramError) -> AuthFailed:
    """The operator-facing error for a refused token."""
    return AuthFailed(f"Telegram refused the bot token ({error.message}): check telegram.token, as given by @BotFather")


def to_bridge_error(error: TelegramError, chat_id: int | str) -> BridgeError:
    """The bridge error for ``error`` raised while talking to chat ``chat_id``.

    ChatMigrated is not mapped here: the caller handles it by moving the chat.
    """
    if isinstance(error, RetryAfter):
        return RateLimited(retry_after_seconds(error), scope=str(chat_id))
    if isinstance(error, Forbidden):
        return DestinationUnavailable(f"telegram:{chat_id}: {error.message}")
    if isinstance(error, InvalidToken):
        return auth_failed(error)
    if isinstance(error, BadRequest):
        text = error.message.lower()
        if any(marker in text for marker in _GONE):
            return DestinationUnavailable(f"telegram:{chat_id}: {error.message}")
        return Permanent(f"telegram:{chat_id}: {error.message}")
    if isinstance(error, ChatMigrated):
        return Permanent(f"telegram:{chat_id}: chat migrated to {error.new_chat_id}")
    if isinstance(error, TimedOut | NetworkError | Conflict):
        return Transient(f"telegram:{chat_id}: {error.message}")
    return Transient(f"telegram:{chat_id}: {error.message}")
