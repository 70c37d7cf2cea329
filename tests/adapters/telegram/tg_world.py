"""A running bridge (real core, SQLite) with the Telegram adapter on the Bot API emulator and a
FakeNetwork, plus the people and chats of the end-to-end stories."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.telegram import TelegramAdapter
from bridge.app import Bridge
from bridge.config import config_from_dict
from tests.emulators.telegram import Chat, TelegramEmulator
from tests.fakes import FakeNetwork

CLASSES = {"fakenet": FakeNetwork, "telegram": TelegramAdapter}


@dataclass
class World:
    tg: TelegramEmulator
    bridge: Bridge
    net: FakeNetwork
    boss: dict[str, Any]  # a group admin and a bridge sender
    member: dict[str, Any]  # a plain member of the groups
    boss_chat: Chat  # boss's private chat with the bot
    group: Chat  # "Sales", administered by boss

    async def command(self, chat: Chat, user: dict[str, Any], text: str, thread_id: int | None = None) -> str:
        """``user`` types ``text`` in ``chat``; returns the bot's answer as the user sees it."""
        before = len(self.tg.messages(chat.id))
        update = self.tg.send_text(chat.id, user, text, thread_id=thread_id)
        messages = await self.tg.wait_messages(chat.id, before + 1)
        answer = next(m for m in messages[before:] if m.reply_to == update["message"]["message_id"])
        return answer.text


async def start_world(
    tg: TelegramEmulator, db_url: str, bridge: dict[str, Any] | None = None, telegram: dict[str, Any] | None = None
) -> World:
    """``bridge`` and ``telegram`` add keys to those config sections."""
    boss, member = tg.add_user("Boss", "boss"), tg.add_user("Member", "member")
    config = config_from_dict(
        {
            "database": {"url": db_url},
            "bridge": {"admins": [], "senders": [f"telegram:{boss['id']}"], "shutdown_timeout": 2, **(bridge or {})},
            "telegram": {"token": tg.token, "api_url": tg.url, "poll_timeout": 1, **(telegram or {})},
            "fakenet": {},
        },
        adapter_classes=CLASSES,
    )
    running = Bridge(config, adapter_classes=CLASSES)
    await running.start()
    return World(
        tg=tg,
        bridge=running,
        net=running.networks["fakenet"],  # type: ignore[arg-type]
        boss=boss,
        member=member,
        boss_chat=tg.private_chat(boss),
        group=tg.add_group("Sales", admins=[boss]),
    )
