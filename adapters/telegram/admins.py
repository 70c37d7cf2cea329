"""Who administers a Telegram chat, asked of the Bot API and cached briefly."""

from __future__ import annotations

import time
from collections.abc import Callable

from telegram import Bot
from telegram.constants import ChatType
from telegram.error import TelegramError

# getChatAdministrators is one request per chat; admins change rarely, commands come in bursts.
CACHE_SECONDS = 60.0


class AdminCache:
    """Answers "is this user an administrator of this chat", caching each chat's admin list."""

    def __init__(self, bot: Bot, ttl: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._bot = bot
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[int, tuple[float, frozenset[int]]] = {}

    async def is_admin(self, chat_id: int, chat_type: str, user_id: int) -> bool:
        """True for the user of a private chat and for the administrators (creator included) of a
        group, supergroup or channel. False when the list can't be read (the bot was removed)."""
        if chat_type == ChatType.PRIVATE:
            return user_id == chat_id
        cached = self._cache.get(chat_id)
        now = self._clock()
        if cached is None or now - cached[0] > self._ttl:
            try:
                members = await self._bot.get_chat_administrators(chat_id)
            except TelegramError:
                return False
            cached = (now, frozenset(member.user.id for member in members))
            self._cache[chat_id] = cached
        return user_id in cached[1]

    def forget(self, chat_id: int) -> None:
        """Drop the cached list of ``chat_id`` (it migrated, or the bot left)."""
        self._cache.pop(chat_id, None)
