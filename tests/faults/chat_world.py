"""The chat side of the fault tests: the Telegram Bot API and Discord emulators in the test
process, with the rooms the bridge relays into, and a reading of what each room received.

Destinations: two Telegram private chats and two Discord channels (4 destinations on 2
platforms). Private chats by default, because Telegram paces a group to 20 messages a minute and
the bridge honours that: a private chat takes one a second. ``tg_groups`` makes the Telegram
rooms groups instead (the emulator then enforces Telegram's limits).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.emulators.discord import DiscordEmulator
from tests.emulators.telegram import TelegramEmulator

TELEGRAM_TOKEN = "987654:FAULTS-telegram-token-never-logged"
DISCORD_TOKEN = "faults-discord-token-never-logged"
# Discord shows "\\#" as "#": the bridge escapes markdown in relayed text, a reader sees it plain.
_MARKDOWN_ESCAPE = re.compile(r"\\([^\sA-Za-z0-9])")


@dataclass
class ChatWorld:
    tg: TelegramEmulator
    discord: DiscordEmulator
    tg_users: list[dict[str, Any]] = field(default_factory=list)
    discord_guild: int = 0
    discord_channels: list[int] = field(default_factory=list)
    tg_chats: list[int] = field(default_factory=list)

    @classmethod
    async def start(cls, tg_chats: int = 2, discord_channels: int = 2, tg_groups: bool = False) -> ChatWorld:
        tg = TelegramEmulator(token=TELEGRAM_TOKEN)
        await tg.start()
        discord = DiscordEmulator(token=DISCORD_TOKEN)
        await discord.start()
        world = cls(tg, discord)
        for n in range(tg_chats):
            user = tg.add_user(f"Rep{n}", f"rep{n}")
            chat = tg.add_group(f"Leads {n}", admins=[user]) if tg_groups else tg.private_chat(user)
            world.tg_users.append(user)
            world.tg_chats.append(chat.id)
        tg.enforce_rate_limits = tg_groups
        world.discord_guild = discord.add_guild("Acme")
        world.discord_channels = [discord.add_channel(world.discord_guild, f"leads-{n}") for n in range(discord_channels)]
        return world

    async def stop(self) -> None:
        await self.discord.stop()
        await self.tg.stop()

    @property
    def destinations(self) -> list[str]:
        return [f"telegram:{c}" for c in self.tg_chats] + [f"discord:{c}" for c in self.discord_channels]

    def config_sections(self) -> dict[str, dict[str, Any]]:
        return {
            "telegram": {"token": self.tg.token, "api_url": self.tg.url, "poll_timeout": 1},
            "discord": {"token": self.discord.token, "api_url": self.discord.api_url, "guild_ready_timeout": 0.5},
        }

    def texts(self, destination: str) -> list[str]:
        """What a person in that room reads, one string per message, oldest first."""
        platform, _, chat = destination.partition(":")
        if platform == "telegram":
            return [m.text for m in self.tg.messages(int(chat))]
        return [
            _MARKDOWN_ESCAPE.sub(
                r"\1", " ".join([m.message.get("content") or ""] + [e.get("description") or "" for e in m.embeds])
            )
            for m in self.discord.bot_messages(int(chat))
        ]

    def telegram_times(self, destination: str, pattern: re.Pattern[str]) -> dict[int, list[float]]:
        """For a Telegram room: marker number → when the emulator accepted each copy (monotonic)."""
        out: dict[int, list[float]] = {}
        for m in self.tg.messages(int(destination.partition(":")[2])):
            for n in pattern.findall(m.text):
                out.setdefault(int(n), []).append(m.at)
        return out

    def telegram_parts(self, destination: str, pattern: re.Pattern[str]) -> dict[tuple[int, str], list[float]]:
        """For a Telegram room: (marker number, part) → when the emulator accepted each copy.
        Parts: ``album`` (the message carrying the marker in an album's caption), ``text`` (a
        text message carrying it) and ``follow-up`` (the "⬆️ author · Open original" message
        after an album, matched to its post through the original's link)."""
        messages = self.tg.messages(int(destination.partition(":")[2]))
        by_url: dict[str, int] = {}
        out: dict[tuple[int, str], list[float]] = {}
        for m in messages:
            for n in pattern.findall(m.text):
                out.setdefault((int(n), "album" if m.media_group_id else "text"), []).append(m.at)
                for label, url in m.links():
                    if label == "Open original":  # not the author's profile: every post has it
                        by_url[url] = int(n)
        for m in messages:
            if m.text.startswith("⬆️"):
                for label, url in m.links():
                    if label == "Open original" and url in by_url:
                        out.setdefault((by_url[url], "follow-up"), []).append(m.at)
        return out

    def counts(self, pattern: re.Pattern[str]) -> dict[str, Counter[int]]:
        """Per destination: how many messages carry each marker number."""
        return {d: Counter(int(n) for text in self.texts(d) for n in pattern.findall(text)) for d in self.destinations}
