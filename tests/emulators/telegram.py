"""A Telegram Bot API emulator: an aiohttp server that speaks the Bot API over HTTP.

It answers ``/bot{token}/{method}`` with JSON, form-urlencoded or multipart bodies the way
https://core.telegram.org/bots/api describes it: ``{"ok": true, "result": ...}`` or
``{"ok": false, "error_code": ..., "description": ..., "parameters": {...}}``, the documented
shapes of Update, Message, Chat, User and CallbackQuery, HTML parse mode validated as Telegram
does it, and the documented errors (429 with ``parameters.retry_after``, 400 "message is too
long", 400 "can't parse entities", 403 "bot was blocked by the user", 400 with
``migrate_to_chat_id``, 401 for a wrong token).

Tests drive it from Python: create users and chats, inject messages, commands, replies and
button presses as updates (delivered through long-polling ``getUpdates``), read what the bot
sent per chat, and force faults per chat. ``enforce_rate_limits`` makes it answer 429 the way
Telegram does when a bot exceeds ~30 msg/s overall, 1 msg/s in a private chat or 20 msg/min
in a group.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import re
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

# Telegram: text is 1-4096 characters and a caption 0-1024 after entities parsing.
MAX_TEXT = 4096
# Telegram's answer to a pending getUpdates when a newer one arrives for the same bot.
_POLL_CONFLICT = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
MAX_CAPTION = 1024

# Telegram's HTML parse mode: the only tags it understands (https://core.telegram.org/bots/api#html-style).
_TAG_ENTITY = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY_RE = re.compile(r"&(#[0-9]+|#x[0-9a-fA-F]+|[a-zA-Z]+);")
_ATTR_RE = re.compile(r"""\s*([a-zA-Z_-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")
_SEND_METHODS = {"sendMessage", "sendPhoto", "sendMediaGroup"}


class ApiError(Exception):
    """An error answer of the Bot API."""

    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters or {}


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units: the unit of Telegram's offsets and limits."""
    return len(text.encode("utf-16-le")) // 2


def parse_html(source: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram HTML into (plain text, entities) or raise ApiError 400 "can't parse entities".

    Strict as the documentation says: every ``<``, ``>`` and ``&`` that is not part of a tag or
    an entity must be escaped; only the listed tags and the entities ``&lt; &gt; &amp; &quot;``
    plus numeric ones are understood; tags must be balanced.
    """
    out: list[str] = []
    out_len = 0  # UTF-16 units
    entities: list[dict[str, Any]] = []
    stack: list[tuple[str, int, dict[str, str]]] = []
    i = 0

    def fail(reason: str) -> ApiError:
        return ApiError(400, f"Bad Request: can't parse entities: {reason}")

    def byte_offset(pos: int) -> int:
        return len(source[:pos].encode("utf-8"))

    while i < len(source):
        ch = source[i]
        if ch == "<":
            end = source.find(">", i)
            if end < 0:
                raise fail(f"Unclosed start tag at byte offset {byte_offset(i)}")
            inner = source[i + 1 : end]
            if inner.startswith("/"):
                name = inner[1:].strip().lower()
                if not stack or stack[-1][0] != name:
                    expected = f'"</{stack[-1][0]}>"' if stack else "no end tag"
                    raise fail(f'Unmatched end tag at byte offset {byte_offset(i)}, expected {expected}, found "</{name}>"')
                tag, start, attrs = stack.pop()
                if out_len > start:
                    entity: dict[str, Any] = {"type": _TAG_ENTITY[tag], "offset": start, "length": out_len - start}
                    if tag == "a":
                        entity["url"] = attrs.get("href", "")
                    if tag == "pre" and attrs.get("language"):
                        entity["language"] = attrs["language"]
                    if tag == "tg-emoji":
                        entity["custom_emoji_id"] = attrs.get("emoji-id", "")
                    entities.append(entity)
            else:
                m = re.match(r"([a-zA-Z][a-zA-Z0-9-]*)", inner)
                name = m.group(1).lower() if m else ""
                if name not in _TAG_ENTITY:
                    raise fail(f'Unsupported start tag "{name or inner}" at byte offset {byte_offset(i)}')
                attrs = {}
                rest = inner[len(name) :].rstrip("/")
                for am in _ATTR_RE.finditer(rest):
                    if am.group(1):
                        value = am.group(2) or am.group(3) or am.group(4) or ""
                        attrs[am.group(1).lower()] = html.unescape(value)
                if name == "a" and not attrs.get("href"):
                    raise fail(f"Can't find end of href attribute at byte offset {byte_offset(i)}")
                if name == "span" and attrs.get("class") != "tg-spoiler":
                    raise fail(f'Unsupported start tag "span" at byte offset {byte_offset(i)}')
                stack.append((name, out_len, attrs))
            i = end + 1
            continue
        if ch == "&":
            m = _ENTITY_RE.match(source, i)
            if not m:
                raise fail(f'Character "&" is reserved at byte offset {byte_offset(i)}; use &amp;')
            body = m.group(1)
            if body.startswith("#x"):
                text = chr(int(body[2:], 16))
            elif body.startswith("#"):
                text = chr(int(body[1:]))
            elif body in _NAMED_ENTITIES:
                text = _NAMED_ENTITIES[body]
            else:
                raise fail(f'Unsupported HTML entity "&{body};" at byte offset {byte_offset(i)}')
            out.append(text)
            out_len += utf16_len(text)
            i = m.end()
            continue
        if ch == ">":
            raise fail(f'Character ">" is reserved at byte offset {byte_offset(i)}; use &gt;')
        out.append(ch)
        out_len += utf16_len(ch)
        i += 1
    if stack:
        raise fail(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


@dataclass
class SentMessage:
    """A message the bot sent, as a test reads it."""

    message_id: int
    chat_id: int
    text: str  # what the user sees (text or caption, entities parsed)
    raw: str  # the text/caption exactly as the bot sent it
    parse_mode: str
    entities: list[dict[str, Any]]
    reply_markup: dict[str, Any] | None
    thread_id: int | None
    reply_to: int | None
    photo: str = ""  # URL or file id of a photo
    media_group_id: str = ""
    method: str = ""
    at: float = 0.0  # time.monotonic() when the emulator accepted it

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """The inline keyboard buttons, flattened in reading order."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [button for row in rows for button in row]

    @property
    def force_reply(self) -> bool:
        return bool((self.reply_markup or {}).get("force_reply"))

    def links(self) -> list[tuple[str, str]]:
        """(visible text, url) of every text link."""
        units = self.text.encode("utf-16-le")
        return [
            (units[2 * e["offset"] : 2 * (e["offset"] + e["length"])].decode("utf-16-le"), e["url"])
            for e in self.entities
            if e["type"] == "text_link"
        ]


@dataclass
class ForumTopic:
    """A topic of a forum supergroup. Its id (message_thread_id) is the id of the service
    message that created it, as in Telegram."""

    message_thread_id: int
    name: str
    creator: dict[str, Any]
    icon_color: int = 0x6FB9F0
    closed: bool = False
    deleted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"message_thread_id": self.message_thread_id, "name": self.name, "icon_color": self.icon_color}


@dataclass
class Chat:
    id: int
    type: str  # private, group, supergroup, channel
    title: str = ""
    username: str = ""
    is_forum: bool = False
    admins: set[int] = field(default_factory=set)
    first_name: str = ""
    # Topics created through the API or by ``add_topic``. A thread id not in here passes (a
    # topic people made before the test); one here that is deleted or closed is refused.
    topics: dict[int, ForumTopic] = field(default_factory=dict)
    bot_manages_topics: bool = True  # the bot is an administrator with can_manage_topics

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.type == "private":
            data["first_name"] = self.first_name
            if self.username:
                data["username"] = self.username
        else:
            data["title"] = self.title
            if self.username:
                data["username"] = self.username
        if self.is_forum:
            data["is_forum"] = True
        return data


@dataclass
class _Faults:
    retry_after: int = 0
    storm_left: int = 0
    forbidden: str = ""
    gone: bool = False
    migrated_to: int | None = None
    stalls: list[float] = field(default_factory=list)  # per next send: seconds it hangs, then dropped (0: none)


class TelegramEmulator:
    """The Bot API server and its test controls. Use ``async with TelegramEmulator() as tg``."""

    def __init__(self, token: str = "123456:TEST-token", bot_username: str = "bridge_test_bot") -> None:
        self.token = token
        self.bot = {
            "id": int(token.split(":")[0]),
            "is_bot": True,
            "first_name": "Bridge",
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.users: dict[int, dict[str, Any]] = {}
        self.chats: dict[int, Chat] = {}
        self.sent: dict[int, list[SentMessage]] = defaultdict(list)
        self.requests: list[tuple[str, dict[str, Any]]] = []  # every API call (method, params)
        self.rejected: list[tuple[int, str, ApiError]] = []  # (chat_id, method, error) of refused sends
        self.callback_answers: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.enforce_rate_limits = False
        self.revoked = False  # the token was revoked (@BotFather /revoke): every call answers 401
        # Telegram's group limit as enforced here: `group_limit` sends per `group_window` seconds
        # (20 a minute, with a margin for clock jitter); a test may scale both down.
        self.group_limit = 20
        self.group_window = 57.0
        # Errors for the next sends (not getUpdates, whose long poll would take them at random).
        self.fail_next: deque[ApiError] = deque()
        self._faults: dict[int, _Faults] = defaultdict(_Faults)
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count] = defaultdict(lambda: itertools.count(1))
        self._user_ids = itertools.count(1001)
        self._group_ids = itertools.count(1)
        self._new_update = asyncio.Event()
        self._sent_changed = asyncio.Event()
        self._global_sends: deque[float] = deque()
        self._chat_sends: dict[int, deque[float]] = defaultdict(deque)
        self._runner: web.AppRunner | None = None
        self.url = ""
        # Webhook mode (setWebhook): updates are POSTed to webhook_url instead of waiting for
        # getUpdates, with the secret_token in X-Telegram-Bot-Api-Secret-Token.
        self.webhook_url = ""
        self.webhook_secret = ""
        self.webhook_answers: list[int] = []  # the HTTP status of every webhook call we made
        self._pusher: asyncio.Task[None] | None = None
        # Telegram allows one getUpdates at a time per bot: a newer call ends a pending one with
        # 409 "terminated by other getUpdates request". Each such 409 is kept here with whether
        # the poller it ended was still connected (True: two live bot instances polled at once;
        # False: the earlier poller had died, e.g. SIGKILL, and nobody read the 409).
        self.poll_conflicts: list[bool] = []
        self._poll_terminated: asyncio.Event | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> str:
        """Listen on 127.0.0.1 on an ephemeral port; return the API root URL."""
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("*", "/file/bot{token}/{path:.*}", self._file)
        # No access log: request lines carry the bot token, and tests check that nothing logs it.
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        """Stop the server (wakes pending long polls)."""
        self._new_update.set()
        await self._stop_pushing()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> TelegramEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- test controls: people and chats -----------------------------------------------------

    def add_user(self, first_name: str, username: str = "", user_id: int | None = None) -> dict[str, Any]:
        """Create a user; returns its User JSON."""
        uid = user_id or next(self._user_ids)
        user = {"id": uid, "is_bot": False, "first_name": first_name, "language_code": "en"}
        if username:
            user["username"] = username
        self.users[uid] = user
        return user

    def private_chat(self, user: dict[str, Any]) -> Chat:
        """The private chat of ``user`` with the bot (chat id = user id)."""
        chat = self.chats.get(user["id"])
        if chat is None:
            chat = Chat(id=user["id"], type="private", first_name=user["first_name"], username=user.get("username", ""))
            self.chats[chat.id] = chat
        return chat

    def add_group(
        self, title: str, admins: Sequence[dict[str, Any]] = (), kind: str = "group", forum: bool = False, username: str = ""
    ) -> Chat:
        """Create a group (``kind`` group, supergroup or channel); ``admins`` are its administrators.
        A public channel or supergroup has a ``username``, which the Bot API takes as ``@username``
        in ``chat_id``."""
        n = next(self._group_ids)
        chat_id = -(100 + n) if kind == "group" else -(1001000000000 + n)
        chat = Chat(id=chat_id, type=kind, title=title, username=username, is_forum=forum, admins={u["id"] for u in admins})
        self.chats[chat_id] = chat
        return chat

    # --- test controls: what users do ----------------------------------------------------------

    def _push(self, update: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": next(self._update_ids), **update}
        self._updates.append(update)
        self._new_update.set()
        return update

    def _user_message(
        self,
        chat_id: int,
        user: dict[str, Any] | None,
        text: str,
        reply_to: int | None = None,
        thread_id: int | None = None,
    ) -> dict[str, Any]:
        chat = self.chats[chat_id]
        message: dict[str, Any] = {
            "message_id": next(self._message_ids[chat_id]),
            "date": int(time.time()),
            "chat": chat.to_json(),
            "text": text,
        }
        if user is not None:
            message["from"] = user
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        entities = []
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            entities.append({"type": "bot_command", "offset": 0, "length": utf16_len(command)})
        if entities:
            message["entities"] = entities
        if reply_to is not None:
            message["reply_to_message"] = self._message_json(chat_id, reply_to)
        elif thread_id is not None and thread_id in chat.topics:
            # Telegram: a message in a topic that answers nothing else "replies" to the service
            # message that created the topic.
            message["reply_to_message"] = self._topic_created_json(chat, chat.topics[thread_id])
        return message

    def _topic_created_json(self, chat: Chat, topic: ForumTopic) -> dict[str, Any]:
        return {
            "message_id": topic.message_thread_id,
            "message_thread_id": topic.message_thread_id,
            "date": int(time.time()),
            "chat": chat.to_json(),
            "from": topic.creator,
            "forum_topic_created": {"name": topic.name, "icon_color": topic.icon_color},
            "is_topic_message": True,
        }

    # --- test controls: forum topics ------------------------------------------------------

    def add_topic(self, chat_id: int, name: str, by: dict[str, Any]) -> ForumTopic:
        """A person creates topic ``name`` in forum ``chat_id``."""
        chat = self.chats[chat_id]
        topic = ForumTopic(next(self._message_ids[chat_id]), name, by)
        chat.topics[topic.message_thread_id] = topic
        return topic

    def topics(self, chat_id: int, *, alive: bool = True) -> list[ForumTopic]:
        """The topics of ``chat_id`` created through the API or ``add_topic``, oldest first
        (only those not deleted unless ``alive`` is False)."""
        return [t for t in self.chats[chat_id].topics.values() if not (alive and t.deleted)]

    def close_topic(self, chat_id: int, thread_id: int) -> None:
        """An administrator closes the topic: sends into it answer 400 TOPIC_CLOSED."""
        self.chats[chat_id].topics[thread_id].closed = True

    def delete_topic(self, chat_id: int, thread_id: int) -> None:
        """An administrator deletes the topic and its messages: sends into it answer 400
        "message thread not found"."""
        self.chats[chat_id].topics[thread_id].deleted = True
        self.sent[chat_id] = [m for m in self.sent.get(chat_id, []) if m.thread_id != thread_id]

    def _message_json(self, chat_id: int, message_id: int) -> dict[str, Any]:
        for sent in self.sent.get(chat_id, []):
            if sent.message_id == message_id:
                return self._sent_json(sent)
        return {"message_id": message_id, "date": int(time.time()), "chat": self.chats[chat_id].to_json()}

    def send_text(
        self, chat_id: int, user: dict[str, Any], text: str, reply_to: int | None = None, thread_id: int | None = None
    ) -> dict[str, Any]:
        """A user writes ``text`` (a command when it starts with /) in ``chat_id``, optionally as a
        reply to message ``reply_to`` and in topic ``thread_id``. Returns the Update."""
        return self._push({"message": self._user_message(chat_id, user, text, reply_to, thread_id)})

    def channel_post(self, chat_id: int, text: str) -> dict[str, Any]:
        """An administrator posts ``text`` in channel ``chat_id`` (channel posts have no sender,
        only ``sender_chat``). Returns the Update."""
        message = self._user_message(chat_id, None, text)
        message["sender_chat"] = self.chats[chat_id].to_json()
        return self._push({"channel_post": message})

    def press(self, chat_id: int, user: dict[str, Any], message_id: int, data: str) -> dict[str, Any]:
        """A user presses the inline button with callback_data ``data`` under ``message_id``."""
        query = {
            "id": str(next(self._update_ids) * 7919),
            "from": user,
            "message": self._message_json(chat_id, message_id),
            "chat_instance": str(abs(chat_id)),
            "data": data,
        }
        return self._push({"callback_query": query})

    def migrate(self, chat_id: int, announce: bool = True) -> int:
        """Upgrade group ``chat_id`` to a supergroup: service messages in both chats (unless
        ``announce`` is False, as when the bot missed them), and sends to the old id answer 400
        with ``migrate_to_chat_id``. Returns the new chat id."""
        old = self.chats[chat_id]
        new_id = -(1000000000000 + abs(chat_id))
        self.chats[new_id] = Chat(id=new_id, type="supergroup", title=old.title, admins=set(old.admins))
        self._faults[chat_id].migrated_to = new_id
        if not announce:
            return new_id
        service = self._user_message(chat_id, None, "")
        del service["text"]
        service["from"] = next(iter(self.users.values()), self.bot)
        service["migrate_to_chat_id"] = new_id
        self._push({"message": service})
        moved = self._user_message(new_id, None, "")
        del moved["text"]
        moved["sender_chat"] = self.chats[new_id].to_json()
        moved["migrate_from_chat_id"] = chat_id
        self._push({"message": moved})
        return new_id

    def kick_bot(self, chat_id: int, by: dict[str, Any]) -> dict[str, Any]:
        """``by`` removes the bot from the chat (or blocks it in a private chat): a my_chat_member
        update, and later sends answer 403."""
        chat = self.chats[chat_id]
        private = chat.type == "private"
        self.block(chat_id)
        bot_user = {k: self.bot[k] for k in ("id", "is_bot", "first_name", "username")}
        return self._push(
            {
                "my_chat_member": {
                    "chat": chat.to_json(),
                    "from": by,
                    "date": int(time.time()),
                    "old_chat_member": {"status": "member", "user": bot_user},
                    "new_chat_member": {"status": "kicked", "user": bot_user, "until_date": 0}
                    if private
                    else {"status": "left", "user": bot_user},
                }
            }
        )

    # --- test controls: faults -----------------------------------------------------------------

    def storm(self, chat_id: int, retry_after: int, count: int) -> None:
        """The next ``count`` sends to ``chat_id`` answer 429 with ``retry_after``."""
        self._faults[chat_id].retry_after = retry_after
        self._faults[chat_id].storm_left = count

    def stall(self, chat_id: int, nth: int, seconds: float) -> None:
        """The ``nth`` send to ``chat_id`` from now (1 = the next) hangs ``seconds`` without an
        answer and is then dropped unsent: a request that never got through, which the client
        must time out."""
        stalls = self._faults[chat_id].stalls
        stalls.extend([0.0] * (nth - 1) + [seconds])

    def block(self, chat_id: int) -> None:
        """Sends to ``chat_id`` answer 403 (blocked by the user, or kicked from the group)."""
        chat = self.chats[chat_id]
        self._faults[chat_id].forbidden = (
            "Forbidden: bot was blocked by the user"
            if chat.type == "private"
            else f"Forbidden: bot was kicked from the {'group' if chat.type == 'group' else chat.type} chat"
        )

    def delete_chat(self, chat_id: int) -> None:
        """Sends to ``chat_id`` answer 400 "chat not found"."""
        self._faults[chat_id].gone = True

    # --- test controls: reading ------------------------------------------------------------------

    def messages(self, chat_id: int, thread_id: int | None = None) -> list[SentMessage]:
        """What the bot sent to ``chat_id`` (optionally only in topic ``thread_id``), oldest first."""
        return [m for m in self.sent.get(chat_id, []) if thread_id is None or m.thread_id == thread_id]

    async def wait_messages(
        self, chat_id: int, count: int, timeout: float = 10.0, thread_id: int | None = None
    ) -> list[SentMessage]:
        """Wait until the bot sent at least ``count`` messages to ``chat_id``; return them all."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.messages(chat_id, thread_id)) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                got = [m.text[:80] for m in self.messages(chat_id, thread_id)]
                raise AssertionError(f"chat {chat_id}: expected {count} messages, got {len(got)}: {got}")
            self._sent_changed.clear()
            try:
                await asyncio.wait_for(self._sent_changed.wait(), remaining)
            except TimeoutError:
                pass
        return self.messages(chat_id, thread_id)

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``condition()`` holds (polled), or fail the test after ``timeout``."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.02)

    def pending_updates(self) -> int:
        """Updates not yet confirmed by the bot through getUpdates' offset."""
        return len(self._updates)

    # --- the wire --------------------------------------------------------------------------

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        return web.Response(body=b"\x89PNG\r\n\x1a\n", content_type="image/png")

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.method != "POST" or not request.can_read_body:
            return params
        ctype = request.content_type
        if ctype == "application/json":
            params.update(await request.json())
            return params
        if ctype.startswith("multipart/"):
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if part.filename:  # type: ignore[union-attr]
                    params[part.name] = {"upload": part.filename, "size": len(await part.read())}  # type: ignore[union-attr]
                else:
                    params[part.name] = await part.text()  # type: ignore[union-attr]
        else:
            params.update(await request.post())
        # Telegram: "Other fields with complex types are JSON-serialized" in form bodies.
        for key, value in list(params.items()):
            if isinstance(value, str) and value[:1] in "[{":
                try:
                    params[key] = json.loads(value)
                except ValueError:
                    pass
        return params

    def revoke_token(self, revoked: bool = True) -> None:
        """Refuse the token from now on (401 on every call, as Telegram does once a token is
        revoked), or accept it again with ``revoked=False``. Wakes waiting long polls."""
        self.revoked = revoked
        self._new_update.set()

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token or self.revoked:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params = await self._params(request)
        self.requests.append((method, params))
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        try:
            if method in _SEND_METHODS:
                stalls = self._faults[self._chat_key(params.get("chat_id"))].stalls
                if stalls and (seconds := stalls.pop(0)):
                    await asyncio.sleep(seconds)
                    raise ApiError(502, "Bad Gateway")
                if self.fail_next:
                    raise self.fail_next.popleft()
                self._admit_send(method, params)
            result = await handler(params)
        except ApiError as err:
            if method == "getUpdates" and err.description.startswith(_POLL_CONFLICT[:30]):
                transport = request.transport
                self.poll_conflicts.append(transport is not None and not transport.is_closing())
            if method in _SEND_METHODS:
                try:
                    key = self._chat_key(params.get("chat_id"))
                except ApiError:
                    key = 0  # a chat that does not exist
                self.rejected.append((key, method, err))
            body: dict[str, Any] = {"ok": False, "error_code": err.code, "description": err.description}
            if err.parameters:
                body["parameters"] = err.parameters
            return web.json_response(body, status=err.code)
        return web.json_response({"ok": True, "result": result})

    def _chat_key(self, chat_id: Any) -> int:
        """The numeric id of ``chat_id``: a number, or ``@username`` of a public group or channel."""
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            name = chat_id[1:].lower()
            for chat in self.chats.values():
                if chat.type != "private" and chat.username.lower() == name:
                    return chat.id
            raise ApiError(400, "Bad Request: chat not found")
        return _int(chat_id)

    def _chat(self, params: dict[str, Any]) -> Chat:
        chat_id = params.get("chat_id")
        chat = self.chats.get(self._chat_key(chat_id)) if chat_id is not None else None
        if chat is None:
            raise ApiError(400, "Bad Request: chat not found")
        return chat

    def _admit_send(self, method: str, params: dict[str, Any]) -> None:
        chat = self._chat(params)
        faults = self._faults[chat.id]
        if faults.migrated_to is not None:
            raise ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": faults.migrated_to},
            )
        if faults.gone:
            raise ApiError(400, "Bad Request: chat not found")
        if faults.forbidden:
            raise ApiError(403, faults.forbidden)
        if faults.storm_left > 0:
            faults.storm_left -= 1
            raise _too_many(faults.retry_after)
        now = time.monotonic()
        if self.enforce_rate_limits:
            self._check_rate(chat, now)
        self._global_sends.append(now)
        self._chat_sends[chat.id].append(now)

    def _check_rate(self, chat: Chat, now: float) -> None:
        # Telegram: about 30 messages per second overall, 1 per second in a private chat and
        # 20 per minute in a group (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this).
        # A 5% tolerance absorbs the network jitter between the bot's clock and ours.
        while self._global_sends and now - self._global_sends[0] >= 1.0:
            self._global_sends.popleft()
        if len(self._global_sends) >= 30:
            raise _too_many(1)
        sends = self._chat_sends[chat.id]
        if chat.type == "private":
            if sends and now - sends[-1] < 0.95:
                raise _too_many(1)
            return
        while sends and now - sends[0] >= self.group_window:
            sends.popleft()
        if len(sends) >= self.group_limit:
            raise _too_many(max(1, int(self.group_window + 3 - (now - sends[0])) + 1))

    # --- messages ----------------------------------------------------------------------------

    def _store(
        self,
        method: str,
        chat: Chat,
        params: dict[str, Any],
        raw: str,
        limit: int,
        photo: str = "",
        media_group_id: str = "",
        parse_mode: str | None = None,
    ) -> SentMessage:
        mode = parse_mode if parse_mode is not None else (params.get("parse_mode") or "")
        if mode.upper() == "HTML":
            text, entities = parse_html(raw)
        elif mode:
            text, entities = raw, []  # Markdown is not emulated; the bridge uses HTML
        else:
            text, entities = raw, []
        if utf16_len(text) > limit:
            raise ApiError(
                400, "Bad Request: message is too long" if limit == MAX_TEXT else "Bad Request: message caption is too long"
            )
        if method == "sendMessage" and not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        thread_id = _int(params["message_thread_id"]) if params.get("message_thread_id") not in (None, "") else None
        if thread_id is not None and not chat.is_forum:
            raise ApiError(400, "Bad Request: message thread not found")
        topic = chat.topics.get(thread_id) if thread_id is not None else None
        if topic is not None and topic.deleted:
            raise ApiError(400, "Bad Request: message thread not found")
        if topic is not None and topic.closed:
            # Telegram: only administrators with can_manage_topics may write in a closed topic,
            # and even then the Bot API refuses sends until it is reopened.
            raise ApiError(400, "Bad Request: TOPIC_CLOSED")
        reply_to = None
        if params.get("reply_parameters"):
            reply_to = _int(params["reply_parameters"]["message_id"])
        elif params.get("reply_to_message_id"):
            reply_to = _int(params["reply_to_message_id"])
        markup = params.get("reply_markup") or None
        if markup and "inline_keyboard" in markup:
            for row in markup["inline_keyboard"]:
                for button in row:
                    data = button.get("callback_data")
                    if data is not None and not 1 <= len(data.encode()) <= 64:
                        raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
                    if data is None and not button.get("url"):
                        raise ApiError(400, "Bad Request: can't parse inline keyboard button")
        sent = SentMessage(
            message_id=next(self._message_ids[chat.id]),
            chat_id=chat.id,
            text=text,
            raw=raw,
            parse_mode=mode,
            entities=entities,
            reply_markup=markup,
            thread_id=thread_id,
            reply_to=reply_to,
            photo=photo,
            media_group_id=media_group_id,
            method=method,
            at=time.monotonic(),
        )
        return sent

    def _commit(self, sent: SentMessage) -> None:
        self.sent[sent.chat_id].append(sent)
        self._sent_changed.set()

    def _sent_json(self, sent: SentMessage) -> dict[str, Any]:
        chat = self.chats[sent.chat_id]
        message: dict[str, Any] = {
            "message_id": sent.message_id,
            "date": int(time.time()),
            "chat": chat.to_json(),
            "from": {k: self.bot[k] for k in ("id", "is_bot", "first_name", "username")},
        }
        if sent.photo:
            message["photo"] = [
                {
                    "file_id": f"photo-{sent.chat_id}-{sent.message_id}",
                    "file_unique_id": f"u{sent.message_id}",
                    "width": 800,
                    "height": 600,
                }
            ]
            if sent.text:
                message["caption"] = sent.text
                if sent.entities:
                    message["caption_entities"] = sent.entities
        else:
            message["text"] = sent.text
            if sent.entities:
                message["entities"] = sent.entities
        if sent.media_group_id:
            message["media_group_id"] = sent.media_group_id
        if sent.thread_id is not None:
            message["message_thread_id"] = sent.thread_id
            message["is_topic_message"] = True
        if sent.reply_markup and "inline_keyboard" in sent.reply_markup:
            message["reply_markup"] = sent.reply_markup
        if sent.reply_to is not None:
            message["reply_to_message"] = {
                "message_id": sent.reply_to,
                "date": int(time.time()),
                "chat": chat.to_json(),
            }
        return message

    def _forum(self, params: dict[str, Any]) -> Chat:
        chat = self._chat(params)
        if chat.type != "supergroup" or not chat.is_forum:
            raise ApiError(400, "Bad Request: the chat is not a forum")
        if not chat.bot_manages_topics:
            raise ApiError(400, "Bad Request: not enough rights to manage topics")
        return chat

    def _topic(self, chat: Chat, params: dict[str, Any]) -> ForumTopic:
        topic = chat.topics.get(_int(params.get("message_thread_id")))
        if topic is None or topic.deleted:
            raise ApiError(400, "Bad Request: message thread not found")
        return topic

    async def _m_createForumTopic(self, params: dict[str, Any]) -> dict[str, Any]:
        # https://core.telegram.org/bots/api#createforumtopic: name 1-128 characters; returns a ForumTopic.
        chat = self._forum(params)
        name = str(params.get("name") or "")
        if not 1 <= len(name) <= 128:
            raise ApiError(400, "Bad Request: TOPIC_TITLE_EMPTY" if not name else "Bad Request: TOPIC_TITLE_INVALID")
        topic = self.add_topic(chat.id, name, {k: self.bot[k] for k in ("id", "is_bot", "first_name", "username")})
        self._sent_changed.set()
        return topic.to_json()

    async def _m_reopenForumTopic(self, params: dict[str, Any]) -> bool:
        topic = self._topic(self._forum(params), params)
        if not topic.closed:
            raise ApiError(400, "Bad Request: TOPIC_NOT_MODIFIED")
        topic.closed = False
        return True

    async def _m_closeForumTopic(self, params: dict[str, Any]) -> bool:
        topic = self._topic(self._forum(params), params)
        if topic.closed:
            raise ApiError(400, "Bad Request: TOPIC_NOT_MODIFIED")
        topic.closed = True
        return True

    async def _m_getMe(self, params: dict[str, Any]) -> dict[str, Any]:
        return dict(self.bot)

    async def _m_logOut(self, params: dict[str, Any]) -> bool:
        return True

    async def _m_close(self, params: dict[str, Any]) -> bool:
        return True

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> bool:
        if params.get("drop_pending_updates") in (True, "true", "True"):
            self._updates.clear()
        self.webhook_url = self.webhook_secret = ""
        await self._stop_pushing()
        return True

    async def _m_getWebhookInfo(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.webhook_url, "has_custom_certificate": False, "pending_update_count": len(self._updates)}

    async def _m_setWebhook(self, params: dict[str, Any]) -> bool:
        url = str(params.get("url") or "")
        secret = str(params.get("secret_token") or "")
        # Telegram: secret_token is 1-256 characters of A-Z, a-z, 0-9, _ and -.
        if secret and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        if params.get("drop_pending_updates") in (True, "true", "True"):
            self._updates.clear()
        if not url:
            return await self._m_deleteWebhook({})
        self.webhook_url, self.webhook_secret = url, secret
        if self._pusher is None or self._pusher.done():
            self._pusher = asyncio.create_task(self._push_webhook())
        return True

    async def _stop_pushing(self) -> None:
        pusher, self._pusher = self._pusher, None
        if pusher is not None and pusher is not asyncio.current_task():
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher

    async def _push_webhook(self) -> None:
        """Deliver updates to the webhook one at a time, in order, as Telegram does; an update
        the bot does not answer with 2xx is tried again (after a pause) until it is."""
        async with aiohttp.ClientSession() as session:
            while self.webhook_url:
                if not self._updates:
                    self._new_update.clear()
                    await self._new_update.wait()
                    continue
                update = self._updates[0]
                status = await self.call_webhook(update, self.webhook_secret, session=session)
                if 200 <= status < 300:
                    if self._updates and self._updates[0] is update:
                        self._updates.pop(0)
                else:
                    await asyncio.sleep(0.2)

    async def call_webhook(self, update: dict[str, Any], secret: str | None, session: aiohttp.ClientSession | None = None) -> int:
        """POST ``update`` to the webhook URL as Telegram does, with ``secret`` in the header
        (None: no header, as a stranger calling the URL would). Returns the HTTP status, or 0
        when nothing answered."""
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        own = session is None
        session = session or aiohttp.ClientSession()
        try:
            async with session.post(self.webhook_url, data=json.dumps(update), headers=headers) as response:
                status = response.status
        except aiohttp.ClientError:
            status = 0
        finally:
            if own:
                await session.close()
        self.webhook_answers.append(status)
        return status

    async def _m_setMyCommands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands") or []
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", command.get("command", "")):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        self.commands = list(commands)
        return True

    async def _m_getMyCommands(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self.commands)

    async def _m_getUpdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
            )
        offset = _int(params.get("offset") or 0)
        limit = _int(params.get("limit") or 100)
        timeout = float(params.get("timeout") or 0)
        if offset:
            # Telegram: an update is confirmed as soon as getUpdates is called with a higher offset.
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if self._poll_terminated is not None:
            self._poll_terminated.set()  # the pending poll of another instance ends with 409
        terminated = self._poll_terminated = asyncio.Event()
        try:
            deadline = time.monotonic() + timeout
            while not self._updates and self._runner is not None and not terminated.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._new_update.clear()
                woken = asyncio.ensure_future(self._new_update.wait())
                ended = asyncio.ensure_future(terminated.wait())
                try:
                    await asyncio.wait({woken, ended}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woken.cancel()
                    ended.cancel()
            if terminated.is_set():
                raise ApiError(409, _POLL_CONFLICT)
            return self._updates[:limit]
        finally:
            if self._poll_terminated is terminated:
                self._poll_terminated = None

    async def _m_getChat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params)
        data = chat.to_json()
        data.update(
            {
                "accent_color_id": 0,
                "max_reaction_count": 11,
                "accepted_gift_types": {
                    "unlimited_gifts": False,
                    "limited_gifts": False,
                    "unique_gifts": False,
                    "premium_subscription": False,
                },
            }
        )
        return data

    async def _m_getChatAdministrators(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        chat = self._chat(params)
        if chat.type == "private":
            raise ApiError(400, "Bad Request: there are no administrators in the private chat")
        if self._faults[chat.id].forbidden:
            raise ApiError(403, self._faults[chat.id].forbidden)
        return [self._member(chat, uid) for uid in sorted(chat.admins)]

    def _member(self, chat: Chat, user_id: int) -> dict[str, Any]:
        user = self.users.get(user_id) or {"id": user_id, "is_bot": False, "first_name": "?"}
        if user_id in chat.admins:
            return {
                "status": "administrator",
                "user": user,
                "can_be_edited": False,
                "is_anonymous": False,
                "can_manage_chat": True,
                "can_delete_messages": True,
                "can_manage_video_chats": True,
                "can_restrict_members": True,
                "can_promote_members": False,
                "can_change_info": True,
                "can_invite_users": True,
                "can_post_stories": False,
                "can_edit_stories": False,
                "can_delete_stories": False,
            }
        return {"status": "member", "user": user}

    async def _m_getChatMember(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params)
        return self._member(chat, _int(params.get("user_id")))

    async def _m_sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params)
        sent = self._store("sendMessage", chat, params, str(params.get("text") or ""), MAX_TEXT)
        self._commit(sent)
        return self._sent_json(sent)

    async def _m_sendPhoto(self, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params)
        photo = params.get("photo")
        if not photo:
            raise ApiError(400, "Bad Request: there is no photo in the request")
        photo_ref = photo if isinstance(photo, str) else f"upload:{photo.get('upload')}"
        sent = self._store("sendPhoto", chat, params, str(params.get("caption") or ""), MAX_CAPTION, photo=photo_ref)
        self._commit(sent)
        return self._sent_json(sent)

    async def _m_sendMediaGroup(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        chat = self._chat(params)
        media = params.get("media") or []
        # Telegram: a media group holds 2-10 items.
        if not 2 <= len(media) <= 10:
            raise ApiError(400, "Bad Request: wrong number of media items in the album")
        if params.get("reply_markup"):
            raise ApiError(400, "Bad Request: media group can't have a reply markup")
        group_id = f"mg{next(self._update_ids)}"
        staged = []
        for item in media:
            item_params = {**params, "parse_mode": item.get("parse_mode") or ""}
            item_params.pop("reply_markup", None)
            media_ref = item.get("media", "")
            if isinstance(media_ref, str) and media_ref.startswith("attach://"):
                media_ref = f"upload:{media_ref[9:]}"
            staged.append(
                self._store(
                    "sendMediaGroup",
                    chat,
                    item_params,
                    str(item.get("caption") or ""),
                    MAX_CAPTION,
                    photo=media_ref,
                    media_group_id=group_id,
                )
            )
        for sent in staged:
            self._commit(sent)
        return [self._sent_json(sent) for sent in staged]

    def _find(self, params: dict[str, Any]) -> SentMessage:
        chat = self._chat(params)
        message_id = _int(params.get("message_id"))
        for sent in self.sent.get(chat.id, []):
            if sent.message_id == message_id:
                return sent
        raise ApiError(400, "Bad Request: message to edit not found")

    async def _m_editMessageText(self, params: dict[str, Any]) -> dict[str, Any]:
        sent = self._find(params)
        chat = self.chats[sent.chat_id]
        new = self._store("editMessageText", chat, params, str(params.get("text") or ""), MAX_TEXT)
        sent.text, sent.raw, sent.entities, sent.parse_mode = new.text, new.raw, new.entities, new.parse_mode
        if "reply_markup" in params:
            sent.reply_markup = params.get("reply_markup") or None
        self._sent_changed.set()
        return self._sent_json(sent)

    async def _m_editMessageReplyMarkup(self, params: dict[str, Any]) -> dict[str, Any]:
        sent = self._find(params)
        sent.reply_markup = params.get("reply_markup") or None
        self._sent_changed.set()
        return self._sent_json(sent)

    async def _m_answerCallbackQuery(self, params: dict[str, Any]) -> bool:
        if not params.get("callback_query_id"):
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        text = str(params.get("text") or "")
        # Telegram: the notification text is 0-200 characters.
        if len(text) > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        self.callback_answers.append(
            {"id": params["callback_query_id"], "text": text, "show_alert": params.get("show_alert") in (True, "true")}
        )
        return True


def _too_many(retry_after: int) -> ApiError:
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"Bad Request: invalid integer {value!r}") from None
