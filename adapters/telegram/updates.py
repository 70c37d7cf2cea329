"""Turn Telegram updates into ``host`` calls and render the core's answers.

* ``/verb args`` (also ``/verb@ourbot``) → COMMAND; commands addressed to another bot are
  ignored. ``/start`` is the welcome: the core's help with a welcome line before it.
* A reply to a message the bot sent → REPLY with that message id.
* A button press → BUTTON with the callback data; answered with answerCallbackQuery (an
  alert when refused), and a ForceReply prompt when the core asks for text.
* ``migrate_to_chat_id`` → ``host.chat_moved``; the bot removed from a chat or blocked →
  ``host.destination_unavailable``.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from telegram import CallbackQuery, Chat, ChatMemberUpdated, Message, Update, User
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import TelegramError

from adapters.telegram.admins import AdminCache
from adapters.telegram.outbox import Outbox
from adapters.telegram.render import plan_notice
from bridge.model import Answer, ChatEvent, ChatTarget, ChatUser, EventKind
from bridge.protocols import Host

PLATFORM = "telegram"
# The verbs of SPEC.md "Chat commands", registered with setMyCommands.
COMMANDS: dict[str, str] = {
    "follow": "Relay an account's posts here: /follow alice.bsky.social [--topic]",
    "unfollow": "Stop relaying an account: /unfollow alice.bsky.social",
    "watch": "Relay posts matching a search: /watch CEO biotech",
    "unwatch": "Stop a search: /unwatch <query or id>",
    "subs": "List this chat's subscriptions",
    "filter": "Filter a subscription: /filter <id> include:… exclude:…",
    "post": "Post from the team account: /post <text>",
    "dm": "Direct message: /dm <handle> <text>",
    "inbox": "Relay the team's mentions and DMs here: /inbox on|off",
    "digest": "Batch a subscription: /digest <id> off|hourly|daily",
    "quiet": "Quiet hours: /quiet 22:00-07:00 Europe/Berlin, or /quiet off",
    "status": "Health of this chat's feeds",
    "pause": "Stop relaying into this chat until /resume",
    "resume": "Relay into this chat again",
    "find": "Find accounts by name or bio: /find CEO biotech",
    "who": "An account in brief: /who alice.bsky.social",
    "recent": "An account's last posts, without following: /recent alice.bsky.social 5",
    "search": "The newest posts matching, once: /search CEO biotech",
    "format": "How posts look here: /format compact|full",
    "approval": "Drafts wait for an approver: /approval on|all|off",
    "audit": "Who did what as the team account: /audit [n]",
    "help": "How to use the bridge, this chat's id and yours",
}
WELCOME = "Welcome! This bot relays posts from microblog networks into this chat and lets you answer them."
PROMPT_FALLBACK = "Write it as a reply to this message."
# Telegram: a command is "/" and up to 32 letters, digits and underscores, then "@botname" in groups.
_COMMAND_RE = re.compile(r"/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]+))?(?:\s+(.*))?$", re.DOTALL)
FAILED = "Something went wrong on our side; please try again later."


@dataclass(frozen=True, slots=True)
class Command:
    verb: str
    args: str


def parse_command(text: str, bot_username: str) -> Command | None:
    """``/verb[@bot] args`` → Command; None when ``text`` is not a command or is addressed to
    another bot (Telegram: in groups, ``/verb@botname`` picks the bot)."""
    match = _COMMAND_RE.match(text)
    if match is None:
        return None
    verb, addressee, args = match.group(1), match.group(2), match.group(3) or ""
    if addressee and addressee.lower() != bot_username.lower():
        return None
    return Command(verb.lower(), args.strip())


def target_of(message: Message) -> ChatTarget:
    """Where ``message`` was written: its chat, and its forum topic when it is in one."""
    thread = str(message.message_thread_id) if message.is_topic_message and message.message_thread_id else ""
    return ChatTarget(PLATFORM, str(message.chat.id), thread)


class UpdateHandler:
    """Routes one update at a time to the host and renders the answer in the chat."""

    def __init__(self, host: Host, outbox: Outbox, admins: AdminCache, bot_username: str, bot_id: int) -> None:
        self._host = host
        self._outbox = outbox
        self._admins = admins
        self._bot_username = bot_username
        self._bot_id = bot_id
        self._log = host.log

    async def handle(self, update: Update) -> None:
        """Handle one update; never raises (a failure is logged with the update id)."""
        try:
            if update.callback_query is not None:
                await self._on_button(update.callback_query)
            elif update.my_chat_member is not None:
                await self._on_membership(update.my_chat_member)
            elif update.effective_message is not None and update.edited_message is None:
                await self._on_message(update.effective_message)
        except Exception:
            self._log.exception("telegram.update_failed update_id=%s", update.update_id)

    async def _user(self, chat: Chat, sender: User | None, sender_chat: Chat | None = None) -> ChatUser:
        """Who acted in ``chat``, and whether they administer it."""
        if sender is None or (sender_chat is not None and sender_chat.id == chat.id):
            # A channel post, or an anonymous group admin speaking as the chat: only admins can.
            return ChatUser(PLATFORM, str(chat.id), chat.title or "", is_room_admin=True)
        is_admin = await self._admins.is_admin(chat.id, chat.type, sender.id)
        name = f"@{sender.username}" if sender.username else sender.full_name
        return ChatUser(PLATFORM, str(sender.id), name, is_room_admin=is_admin)

    async def _on_message(self, message: Message) -> None:
        chat = message.chat
        if message.migrate_to_chat_id:
            old = ChatTarget(PLATFORM, str(chat.id))
            new = ChatTarget(PLATFORM, str(message.migrate_to_chat_id))
            self._log.info("telegram.chat_migrated old=%s new=%s", old, new)
            self._admins.forget(chat.id)
            await self._host.chat_moved(old, new)
            return
        text = message.text or ""
        if not text:
            return
        target = target_of(message)
        command = parse_command(text, self._bot_username)
        if command is not None:
            known = command.verb in COMMANDS or command.verb == "start"
            if not known and chat.type != ChatType.PRIVATE:
                return  # probably another bot's command in a shared group
            user = await self._user(message.chat, message.from_user, message.sender_chat)
            verb = "help" if command.verb == "start" else command.verb
            event = ChatEvent(EventKind.COMMAND, target, user, command=verb, args=command.args)
            answer = await self._ask(event)
            if command.verb == "start":
                answer = Answer(f"{WELCOME}\n\n{answer.text}", public=answer.public, ok=answer.ok, buttons=answer.buttons)
            await self._answer(message, target, answer)
            return
        replied = message.reply_to_message
        if replied is None or replied.from_user is None or replied.from_user.id != self._bot_id:
            return  # ordinary conversation, not addressed to the bridge
        if replied.forum_topic_created is not None:
            return  # Telegram: every message in a topic "replies" to the topic's first message
        user = await self._user(message.chat, message.from_user, message.sender_chat)
        event = ChatEvent(EventKind.REPLY, target, user, text=text, reply_to_message=str(replied.message_id))
        await self._answer(message, target, await self._ask(event))

    async def _ask(self, event: ChatEvent) -> Answer:
        self._log.info(
            "telegram.event kind=%s target=%s user=%s command=%s", event.kind, event.target, event.user.key, event.command
        )
        try:
            return await self._host.handle(event)
        except Exception:
            self._log.exception("telegram.host_failed kind=%s target=%s", event.kind, event.target)
            return Answer(FAILED, ok=False)

    async def _answer(self, message: Message, target: ChatTarget, answer: Answer) -> None:
        """Reply to the user's message in the same chat and topic with the answer text."""
        thread = int(target.thread_id) if target.thread_id else None
        if answer.ask_text_for:
            await self._prompt(target, answer)
            return
        if not answer.text.strip():
            return
        try:
            await self._outbox.send(
                message.chat.id,
                plan_notice(answer.text, answer.buttons),
                thread_id=thread,
                reply_to=message.message_id,
                patient=True,
            )
        except TelegramError as exc:
            self._log.warning("telegram.answer_failed chat=%s error=%s", message.chat.id, exc)

    async def _prompt(self, target: ChatTarget, answer: Answer) -> None:
        """Telegram has no text-input dialog: a ForceReply message asks for the text, and the
        user's reply to it comes back as a REPLY to that message id."""
        thread = int(target.thread_id) if target.thread_id else None
        text = html.escape(f"{answer.text.strip()}\n{PROMPT_FALLBACK}".strip())
        try:
            prompt_id = await self._outbox.prompt(int(target.chat_id), text, thread, "Your reply")
        except TelegramError as exc:
            self._log.warning("telegram.prompt_failed chat=%s error=%s", target.chat_id, exc)
            return
        await self._host.link_message(target, str(prompt_id), answer.ask_text_for)

    async def _on_button(self, query: CallbackQuery) -> None:
        message = query.message
        if message is None or not query.data:
            await query.answer()
            return
        target = target_of(message) if isinstance(message, Message) else ChatTarget(PLATFORM, str(message.chat.id))
        user = await self._user(message.chat, query.from_user)
        answer = await self._ask(ChatEvent(EventKind.BUTTON, target, user, token=query.data))
        # Telegram: the callback answer text is 0-200 characters; refusals as an alert so they are read.
        toast = answer.text.strip()
        if answer.ask_text_for:
            toast = ""
        try:
            await query.answer(_clip(toast, 200), show_alert=bool(toast) and not answer.ok)
        except TelegramError as exc:
            self._log.warning("telegram.callback_answer_failed chat=%s error=%s", target.chat_id, exc)
        if answer.ask_text_for:
            await self._prompt(target, answer)
        elif answer.public and answer.text.strip():
            thread = int(target.thread_id) if target.thread_id else None
            try:
                await self._outbox.send(
                    int(target.chat_id),
                    plan_notice(answer.text, answer.buttons),
                    thread_id=thread,
                    reply_to=message.message_id,
                    patient=True,
                )
            except TelegramError as exc:
                self._log.warning("telegram.answer_failed chat=%s error=%s", target.chat_id, exc)

    async def _on_membership(self, change: ChatMemberUpdated) -> None:
        if change.new_chat_member.user.id != self._bot_id:
            return
        status = change.new_chat_member.status
        if status in (ChatMemberStatus.LEFT, ChatMemberStatus.BANNED):
            chat = change.chat
            reason = "the bot was blocked by the user" if chat.type == ChatType.PRIVATE else "the bot was removed from the chat"
            self._log.info("telegram.bot_removed chat=%s status=%s", chat.id, status)
            self._admins.forget(chat.id)
            await self._host.destination_unavailable(ChatTarget(PLATFORM, str(chat.id)), reason)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
