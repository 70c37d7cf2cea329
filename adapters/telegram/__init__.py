"""Telegram chat adapter (python-telegram-bot over the Bot API)."""

from adapters.telegram.adapter import TelegramAdapter

__all__ = ["TelegramAdapter"]
