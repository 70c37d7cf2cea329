"""A wire-level Discord emulator: the REST API (v10) and the Gateway websocket, on 127.0.0.1.

It answers the way discord.com does, as far as a bot using discord.py can tell: JSON bodies
with ``Content-Type: application/json``, ``X-RateLimit-*`` headers, 429 with ``retry_after``
and ``global`` (and a ``Via`` header, without which discord.py takes a 429 for a Cloudflare
ban), Discord's error JSON (``{"message", "code", "errors"}``), nonce + enforce_nonce
de-duplication, embed/content limits, and the Gateway's HELLO / IDENTIFY → READY +
GUILD_CREATE / heartbeat ACK / dispatch / RECONNECT / RESUME → replay + RESUMED.

Tests build a world (guilds, channels, members), inject what people do (slash commands,
button presses, modal submits, messages) as gateway events, read what the bot sent and how it
answered interactions, and force faults (429 on one channel, deleted channel, missing access,
dropped gateway connection, a token reset in the Developer Portal: 401 on REST and close 4004
"Authentication failed" on the Gateway).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

DISCORD_EPOCH_MS = 1420070400000

# Discord permission bits (https://discord.com/developers/docs/topics/permissions).
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
EMBED_LINKS = 1 << 14
READ_MESSAGE_HISTORY = 1 << 16
MANAGE_CHANNELS = 1 << 4
USE_APPLICATION_COMMANDS = 1 << 31
CREATE_PUBLIC_THREADS = 1 << 35
SEND_MESSAGES_IN_THREADS = 1 << 38
MEMBER_PERMISSIONS = VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY | USE_APPLICATION_COMMANDS
BOT_PERMISSIONS = MEMBER_PERMISSIONS | EMBED_LINKS | CREATE_PUBLIC_THREADS | SEND_MESSAGES_IN_THREADS

# Gateway opcodes (https://discord.com/developers/docs/topics/opcodes-and-status-codes).
OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_RESUME = 0, 1, 2, 6
OP_RECONNECT, OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 7, 9, 10, 11

# Discord's application command option types.
OPTION_STRING, OPTION_INTEGER = 3, 4


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


class _Snowflakes:
    """Discord ids: milliseconds since the Discord epoch shifted left 22 bits, plus a counter."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def next(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (next(self._counter) & 0x3FFFFF)


class DiscordHTTPError(Exception):
    """An error response in Discord's shape."""

    def __init__(self, status: int, message: str, code: int = 0, errors: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"message": message, "code": code}
        if errors:
            self.body["errors"] = errors


@dataclass
class Member:
    user: dict[str, Any]
    manage_channels: bool = False

    @property
    def id(self) -> int:
        return int(self.user["id"])

    @property
    def permissions(self) -> int:
        return MEMBER_PERMISSIONS | (MANAGE_CHANNELS if self.manage_channels else 0)


@dataclass
class Channel:
    id: int
    guild_id: int
    name: str
    type: int = 0  # 0 GUILD_TEXT, 11 PUBLIC_THREAD, 15 GUILD_FORUM
    parent_id: int | None = None
    owner_id: int | None = None
    deleted: bool = False
    archived: bool = False  # a thread: archived (by hand, or after auto_archive_duration)
    auto_archive_duration: int = 1440
    forbidden_code: int = 0  # 50001 Missing Access / 50013 Missing Permissions when set
    rate_limits: list[tuple[float, bool]] = field(default_factory=list)  # (retry_after, global) queued 429s
    failures: list[DiscordHTTPError | None] = field(default_factory=list)  # errors for the next creates (None: passes)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": str(self.parent_id) if self.parent_id else None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "topic": None,
            "flags": 0,
        }
        if self.type == 11:
            data["owner_id"] = str(self.owner_id)
            data["message_count"] = 0
            data["member_count"] = 1
            data["thread_metadata"] = {
                "archived": self.archived,
                "auto_archive_duration": self.auto_archive_duration,
                "archive_timestamp": _now_iso(),
                "locked": False,
            }
        if self.type == 15:
            data["available_tags"] = []
            data["default_reaction_emoji"] = None
            data["default_thread_rate_limit_per_user"] = 0
            data["default_sort_order"] = None
            data["default_forum_layout"] = 0
            data["default_auto_archive_duration"] = 4320
        return data


@dataclass
class Guild:
    id: int
    name: str
    members: dict[int, Member] = field(default_factory=dict)
    removed: bool = False


@dataclass
class SentMessage:
    """A message the bot created, with the request that created it (allowed_mentions, nonce)."""

    message: dict[str, Any]
    payload: dict[str, Any]
    at: float = 0.0  # time.monotonic() when the emulator accepted it

    @property
    def id(self) -> int:
        return int(self.message["id"])

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return self.message["embeds"]

    @property
    def components(self) -> list[dict[str, Any]]:
        return self.message["components"]

    def buttons(self) -> list[dict[str, Any]]:
        return [c for row in self.components for c in row.get("components", [])]


@dataclass
class InteractionRecord:
    """One injected interaction and everything the bot answered to it."""

    id: int
    token: str
    payload: dict[str, Any]
    responses: list[dict[str, Any]] = field(default_factory=list)  # callback bodies and follow-ups
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def messages(self) -> list[dict[str, Any]]:
        """The messages shown to the user: callback data of type 4/7 and follow-ups, in order."""
        shown = []
        for resp in self.responses:
            if resp.get("kind") == "callback" and resp["type"] in (4, 7):
                shown.append(resp.get("data") or {})
            elif resp.get("kind") in ("followup", "edit_original"):
                shown.append(resp["data"])
        return shown

    def is_ephemeral(self, message: dict[str, Any]) -> bool:
        return bool(int(message.get("flags") or 0) & 64)


class DiscordEmulator:
    """REST + Gateway on one aiohttp server. ``api_url`` is what the bot's ``api_url`` is set to."""

    def __init__(self, *, token: str = "emu-bot-token", bot_name: str = "bridgebot") -> None:
        self.token = token
        self._ids = _Snowflakes()
        self.application_id = self._ids.next()
        self.bot_user = self._user(self.application_id, bot_name, bot=True)
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, list[dict[str, Any]]] = {}  # every message per channel
        self.sent: dict[int, list[SentMessage]] = {}  # what the bot sent, per channel
        self.commands: list[dict[str, Any]] = []
        self.command_overwrites = 0
        self.interactions: dict[int, InteractionRecord] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every REST call
        self.identifies = 0
        self.resumes = 0
        self.heartbeat_interval_ms = 41250
        self._nonces: dict[tuple[int, str], tuple[float, dict[str, Any]]] = {}
        self._sent_changed = asyncio.Event()
        self._session_id = ""
        self._seq = 0
        self._event_log: list[dict[str, Any]] = []
        self._ws: web.WebSocketResponse | None = None  # the newest session
        # Discord sends every event to every session of a bot that identified without sharding
        # (two processes with one token both receive each message): all are kept here.
        self._sessions: set[web.WebSocketResponse] = set()
        self.max_gateway_sessions = 0  # most sessions open at once
        self.gateway_overlaps = 0  # times a session became ready while another was open
        self._ws_ready = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._ws_tasks: set[asyncio.Task] = set()
        self.port = 0

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1 on an ephemeral port."""
        app = web.Application(middlewares=[self._errors_middleware])
        app.router.add_get("/gateway", self._gateway_ws)
        r = "/api/v10"
        app.router.add_get(r + "/gateway", self._get_gateway)
        app.router.add_get(r + "/gateway/bot", self._get_gateway_bot)
        app.router.add_get(r + "/users/@me", self._get_me)
        app.router.add_get(r + "/oauth2/applications/@me", self._get_application)
        app.router.add_get(r + "/applications/@me", self._get_application)
        app.router.add_get(r + "/applications/{app}/commands", self._get_commands)
        app.router.add_put(r + "/applications/{app}/commands", self._put_commands)
        app.router.add_get(r + "/channels/{cid}", self._get_channel)
        app.router.add_patch(r + "/channels/{cid}", self._patch_channel)
        app.router.add_post(r + "/channels/{cid}/threads", self._post_thread_without_message)
        app.router.add_post(r + "/channels/{cid}/messages", self._post_message)
        app.router.add_get(r + "/channels/{cid}/messages/{mid}", self._get_message)
        app.router.add_patch(r + "/channels/{cid}/messages/{mid}", self._patch_message)
        app.router.add_post(r + "/channels/{cid}/messages/{mid}/threads", self._post_thread)
        app.router.add_get(r + "/guilds/{gid}", self._get_guild)
        app.router.add_post(r + "/interactions/{iid}/{token}/callback", self._interaction_callback)
        app.router.add_post(r + "/webhooks/{app}/{token}", self._followup)
        app.router.add_patch(r + "/webhooks/{app}/{token}/messages/{mid}", self._edit_followup)
        app.router.add_get(r + "/webhooks/{app}/{token}/messages/{mid}", self._get_followup)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Close the gateway connection and the server."""
        for ws in list(self._sessions):
            if not ws.closed:
                await ws.close(code=1001)
        for task in list(self._ws_tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # --- world ----------------------------------------------------------------------------

    def _user(self, user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
        return {
            "id": str(user_id),
            "username": name,
            "global_name": name,
            "discriminator": "0",
            "avatar": None,
            "bot": bot,
            "public_flags": 0,
            "flags": 0,
        }

    def add_guild(self, name: str = "Team") -> int:
        guild = Guild(self._ids.next(), name)
        guild.members[self.application_id] = Member(self.bot_user)
        self.guilds[guild.id] = guild
        return guild.id

    def add_channel(self, guild_id: int, name: str = "feed", *, forum: bool = False) -> int:
        """A text channel, or with ``forum`` a forum channel (type 15: only threads, "posts")."""
        channel = Channel(self._ids.next(), guild_id, name, type=15 if forum else 0)
        self.channels[channel.id] = channel
        self.messages[channel.id] = []
        return channel.id

    def add_member(self, guild_id: int, name: str, *, manage_channels: bool = False) -> int:
        user_id = self._ids.next()
        self.guilds[guild_id].members[user_id] = Member(self._user(user_id, name), manage_channels)
        return user_id

    def bot_messages(self, channel_id: int) -> list[SentMessage]:
        """What the bot sent to ``channel_id``, oldest first."""
        return list(self.sent.get(channel_id, []))

    async def wait_sent(self, channel_id: int, count: int, timeout: float = 5) -> list[SentMessage]:
        """Wait until the bot has sent at least ``count`` messages to ``channel_id``."""
        async with asyncio.timeout(timeout):
            while len(self.sent.get(channel_id, [])) < count:
                self._sent_changed.clear()
                await self._sent_changed.wait()
        return self.bot_messages(channel_id)

    # --- faults ---------------------------------------------------------------------------

    def rate_limit(self, channel_id: int, retry_after: float, *, times: int = 1, is_global: bool = False) -> None:
        """The next ``times`` message creates in ``channel_id`` get a 429."""
        self.channels[channel_id].rate_limits.extend([(retry_after, is_global)] * times)

    def fail_next(self, channel_id: int, status: int, message: str, code: int = 0) -> None:
        """The next message create in ``channel_id`` fails with this Discord error."""
        self.channels[channel_id].failures.append(DiscordHTTPError(status, message, code))

    def fail_nth(self, channel_id: int, n: int, status: int, message: str, code: int = 0) -> None:
        """The ``n``-th message create in ``channel_id`` from now (1 = the next) fails with this
        Discord error; the ones before it pass."""
        self.channels[channel_id].failures.extend([None] * (n - 1) + [DiscordHTTPError(status, message, code)])

    def forbid(self, channel_id: int, code: int = 50001) -> None:
        """Close ``channel_id`` to the bot: 50001 Missing Access or 50013 Missing Permissions."""
        self.channels[channel_id].forbidden_code = code

    async def delete_channel(self, channel_id: int) -> None:
        """Delete the channel: CHANNEL_DELETE on the gateway, 404 Unknown Channel on REST."""
        channel = self.channels[channel_id]
        channel.deleted = True
        await self.dispatch("CHANNEL_DELETE", channel.to_dict())

    def threads(self, parent_id: int, *, alive: bool = True) -> list[Channel]:
        """The threads (forum posts) of channel ``parent_id``, oldest first (not deleted ones
        unless ``alive`` is False)."""
        return [c for c in self.channels.values() if c.parent_id == parent_id and not (alive and c.deleted)]

    async def archive_thread(self, thread_id: int) -> None:
        """Archive the thread (by hand, or Discord after its auto_archive_duration): THREAD_UPDATE;
        sends into it answer 400 code 50083 until it is unarchived."""
        thread = self.channels[thread_id]
        thread.archived = True
        await self.dispatch("THREAD_UPDATE", thread.to_dict())

    async def delete_thread(self, thread_id: int) -> None:
        """Delete the thread (a forum post): THREAD_DELETE on the gateway, 404 Unknown Channel on REST."""
        thread = self.channels[thread_id]
        thread.deleted = True
        await self.dispatch(
            "THREAD_DELETE",
            {"id": str(thread.id), "guild_id": str(thread.guild_id), "parent_id": str(thread.parent_id), "type": thread.type},
        )

    async def remove_bot(self, guild_id: int) -> None:
        """Kick the bot from the guild: GUILD_DELETE (without ``unavailable``), 403 afterwards."""
        self.guilds[guild_id].removed = True
        await self.dispatch("GUILD_DELETE", {"id": str(guild_id)})

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close the newest gateway connection abnormally: with 4000 (Unknown error) the client
        RESUMEs; a code Discord documents as not to reconnect from (4010-4014) ends its session."""
        ws = self._forget_newest()
        if ws is not None and not ws.closed:
            await ws.close(code=code, message=b"dropped by the test")

    async def revoke_token(self, new_token: str | None = None) -> None:
        """The bot's token is reset (Developer Portal → Reset Token): from now on the old one is
        refused (REST 401, IDENTIFY and RESUME closed with 4004 Authentication failed), and the
        live Gateway session is closed with 4004. ``new_token`` is the one that works (default:
        the old one with ``-reset`` appended); set ``token`` back to accept the old one again."""
        self.token = new_token or self.token + "-reset"
        sessions = [ws for ws in (self._ws, *self._sessions) if ws is not None]
        self._ws = None
        self._sessions.clear()
        self._ws_ready.clear()
        for ws in dict.fromkeys(sessions):
            if not ws.closed:
                await ws.close(code=4004, message=b"Authentication failed.")

    async def send_reconnect(self) -> None:
        """Ask the client to reconnect (op 7); it must RESUME."""
        ws = self._forget_newest()
        if ws is not None and not ws.closed:
            await ws.send_str(json.dumps({"op": OP_RECONNECT, "d": None}))

    def _forget_newest(self) -> web.WebSocketResponse | None:
        ws, self._ws = self._ws, None
        self._sessions.discard(ws)  # type: ignore[arg-type]
        if not self._sessions:
            self._ws_ready.clear()
        return ws

    @property
    def gateway_sessions(self) -> int:
        """How many gateway sessions are open and receive events now."""
        return sum(1 for ws in self._sessions if not ws.closed)

    def _ready(self, ws: web.WebSocketResponse) -> None:
        if self.gateway_sessions:
            self.gateway_overlaps += 1
        self._sessions.add(ws)
        self._ws = ws
        self.max_gateway_sessions = max(self.max_gateway_sessions, self.gateway_sessions)
        self._ws_ready.set()

    async def wait_connected(self, timeout: float = 10) -> None:
        """Wait until a client has identified or resumed on the gateway."""
        async with asyncio.timeout(timeout):
            await self._ws_ready.wait()

    # --- what people do -------------------------------------------------------------------

    def _member_payload(self, guild_id: int, user_id: int) -> dict[str, Any]:
        member = self.guilds[guild_id].members[user_id]
        return {
            "user": member.user,
            "nick": None,
            "roles": [],
            "joined_at": _now_iso(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "permissions": str(member.permissions),
        }

    async def _interaction(
        self, kind: int, channel_id: int, user_id: int, data: dict[str, Any], message: dict | None = None
    ) -> InteractionRecord:
        channel = self.channels[channel_id]
        iid = self._ids.next()
        token = f"itok-{iid}"
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "guild_id": str(channel.guild_id),
            "guild": {"id": str(channel.guild_id), "locale": "en-US", "features": []},
            "channel_id": str(channel_id),
            "channel": channel.to_dict(),
            "member": self._member_payload(channel.guild_id, user_id),
            "token": token,
            "version": 1,
            "app_permissions": str(BOT_PERMISSIONS),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(channel.guild_id)},
            "context": 0,
            "attachment_size_limit": 8 * 1024 * 1024,
        }
        if message is not None:
            payload["message"] = message
        record = InteractionRecord(iid, token, payload)
        self.interactions[iid] = record
        await self.dispatch("INTERACTION_CREATE", payload)
        return record

    async def slash(self, channel_id: int, user_id: int, name: str, **options: Any) -> InteractionRecord:
        """A slash command as the user typed it; ``options`` by name, typed as registered."""
        command = next((c for c in self.commands if c["name"] == name), None)
        if command is None:
            raise AssertionError(f"/{name} is not registered; registered: {[c['name'] for c in self.commands]}")
        types = {o["name"]: o["type"] for o in command.get("options", [])}
        data = {
            "id": command["id"],
            "name": name,
            "type": 1,
            "options": [{"name": k, "type": types[k], "value": v} for k, v in options.items()],
        }
        return await self._interaction(2, channel_id, user_id, data)

    async def autocomplete(self, channel_id: int, user_id: int, name: str, option: str, typed: str) -> InteractionRecord:
        """The user types ``typed`` into ``option`` of ``/name`` (type 4 interaction)."""
        command = next(c for c in self.commands if c["name"] == name)
        opt_type = next(o["type"] for o in command["options"] if o["name"] == option)
        data = {
            "id": command["id"],
            "name": name,
            "type": 1,
            "options": [{"name": option, "type": opt_type, "value": typed, "focused": True}],
        }
        return await self._interaction(4, channel_id, user_id, data)

    async def press(self, channel_id: int, user_id: int, message: SentMessage, custom_id: str) -> InteractionRecord:
        """A press of the button ``custom_id`` on ``message``."""
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._interaction(3, channel_id, user_id, data, message=message.message)

    async def submit_modal(self, channel_id: int, user_id: int, custom_id: str, values: dict[str, str]) -> InteractionRecord:
        """A modal submitted with ``values`` keyed by the text inputs' custom_id."""
        rows = [{"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]} for k, v in values.items()]
        return await self._interaction(5, channel_id, user_id, {"custom_id": custom_id, "components": rows})

    async def user_message(
        self,
        channel_id: int,
        user_id: int,
        content: str,
        *,
        reply_to: int | None = None,
        content_visible: bool = True,
    ) -> dict[str, Any]:
        """A member posts a message. Without the message-content intent Discord blanks the
        content unless the message mentions the bot: ``content_visible=False`` models that."""
        channel = self.channels[channel_id]
        member = self.guilds[channel.guild_id].members[user_id]
        message = self._message(channel, member.user, {"content": content if content_visible else ""})
        if reply_to is not None:
            message["type"] = 19
            message["message_reference"] = {
                "type": 0,
                "message_id": str(reply_to),
                "channel_id": str(channel_id),
                "guild_id": str(channel.guild_id),
            }
            ref = next((m for m in self.messages[channel_id] if m["id"] == str(reply_to)), None)
            if ref is not None:
                message["referenced_message"] = ref
        message["member"] = {k: v for k, v in self._member_payload(channel.guild_id, user_id).items() if k != "user"}
        self.messages[channel_id].append(message)
        await self.dispatch("MESSAGE_CREATE", message)
        return message

    async def wait_interaction(self, record: InteractionRecord, count: int = 1, timeout: float = 5) -> list[dict]:
        """Wait until the bot has answered ``record`` ``count`` times; return the responses."""
        async with asyncio.timeout(timeout):
            while len(record.responses) < count:
                record.changed.clear()
                await record.changed.wait()
        return record.responses

    async def wait_shown(self, record: InteractionRecord, timeout: float = 5) -> dict[str, Any]:
        """Wait until the user sees a message in answer to ``record`` (after any defer)."""
        async with asyncio.timeout(timeout):
            while not record.messages():
                record.changed.clear()
                await record.changed.wait()
        return record.messages()[-1]

    # --- gateway --------------------------------------------------------------------------

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a dispatch event; while the client is away it is kept for the RESUME replay."""
        self._seq += 1
        frame = {"op": OP_DISPATCH, "t": event, "s": self._seq, "d": data}
        self._event_log.append(frame)
        for ws in list(self._sessions):
            if not ws.closed:
                try:
                    await self._send(ws, frame)
                except ConnectionResetError:  # its client died (SIGKILL) and the close is not read yet
                    self._sessions.discard(ws)

    async def _send(self, ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        text = json.dumps(frame)
        compressor = getattr(ws, "_emu_compressor", None)
        if compressor is None:
            await ws.send_str(text)
        else:
            await ws.send_bytes(compressor(text.encode()))

    def _compressor(self, kind: str):
        # discord.py asks for zstd-stream when a zstd module is available, else zlib-stream;
        # Discord then sends binary frames, each one flushed so it decodes on its own.
        if kind == "zlib-stream":
            z = zlib.compressobj()
            return lambda data: z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
        if kind == "zstd-stream":
            try:
                import zstandard
            except ImportError:
                return None
            zc = zstandard.ZstdCompressor().compressobj()
            return lambda data: zc.compress(data) + zc.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        return None

    def _guild_create(self, guild: Guild) -> dict[str, Any]:
        channels = [c for c in self.channels.values() if c.guild_id == guild.id and not c.deleted]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "owner_id": str(next(iter(m.id for m in guild.members.values() if m.id != self.application_id), 0)),
            "roles": [
                {
                    "id": str(guild.id),
                    "name": "@everyone",
                    "color": 0,
                    "hoist": False,
                    "position": 0,
                    "permissions": str(MEMBER_PERMISSIONS),
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "emojis": [],
            "stickers": [],
            "features": [],
            "member_count": len(guild.members),
            "large": False,
            "unavailable": False,
            "joined_at": _now_iso(),
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "premium_tier": 0,
            "system_channel_flags": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "channels": [c.to_dict() for c in channels if c.type != 11],
            "threads": [c.to_dict() for c in channels if c.type == 11],
            "members": [self._member_payload(guild.id, self.application_id)],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    async def _gateway_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        ws._emu_compressor = self._compressor(request.query.get("compress", ""))  # type: ignore[attr-defined]
        task = asyncio.current_task()
        if task is not None:
            self._ws_tasks.add(task)
        try:
            await self._send(ws, {"op": OP_HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                await self._gateway_op(ws, frame)
        except asyncio.CancelledError:
            pass
        finally:
            if task is not None:
                self._ws_tasks.discard(task)
            self._sessions.discard(ws)
            if self._ws is ws:
                self._ws = None
            if not self._sessions:
                self._ws_ready.clear()
        return ws

    async def _gateway_op(self, ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        op, data = frame.get("op"), frame.get("d")
        if op == OP_HEARTBEAT:
            await self._send(ws, {"op": OP_HEARTBEAT_ACK, "d": None})
        elif op == OP_IDENTIFY:
            if data.get("token") != self.token:
                await ws.close(code=4004, message=b"Authentication failed.")
                return
            self.identifies += 1
            self._session_id = f"session-{self._ids.next()}"
            self._event_log.clear()
            self._seq += 1
            ready = {
                "v": 10,
                "user": self.bot_user,
                "guilds": [{"id": str(g.id), "unavailable": True} for g in self.guilds.values() if not g.removed],
                "session_id": self._session_id,
                "resume_gateway_url": self.gateway_url,
                "shard": data.get("shard", [0, 1]),
                "application": {"id": str(self.application_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
            }
            await self._send(ws, {"op": OP_DISPATCH, "t": "READY", "s": self._seq, "d": ready})
            self._ready(ws)
            for guild in self.guilds.values():
                if not guild.removed:  # to the new session only: the others have their guilds
                    self._seq += 1
                    frame = {"op": OP_DISPATCH, "t": "GUILD_CREATE", "s": self._seq, "d": self._guild_create(guild)}
                    self._event_log.append(frame)
                    await self._send(ws, frame)
        elif op == OP_RESUME:
            if data.get("token") != self.token:
                await ws.close(code=4004, message=b"Authentication failed.")
                return
            if data.get("session_id") != self._session_id:
                await self._send(ws, {"op": OP_INVALID_SESSION, "d": False})
                return
            self.resumes += 1
            seq = int(data.get("seq") or 0)
            for missed in [f for f in self._event_log if f["s"] > seq]:
                await self._send(ws, missed)
            self._seq += 1
            await self._send(ws, {"op": OP_DISPATCH, "t": "RESUMED", "s": self._seq, "d": {}})
            self._ready(ws)

    # --- REST -----------------------------------------------------------------------------

    @web.middleware
    async def _errors_middleware(self, request: web.Request, handler) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        try:
            return await handler(request)
        except DiscordHTTPError as exc:
            return self._json(exc.body, status=exc.status)

    def _json(self, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        # discord.py parses a body as JSON only when the Content-Type is exactly application/json.
        return web.Response(
            status=status,
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    def _auth(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bot {self.token}":
            raise DiscordHTTPError(401, "401: Unauthorized", 0)

    def _ratelimit_headers(self, bucket: str) -> dict[str, str]:
        # A generous per-route bucket; discord.py reads these to pace itself.
        return {
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "49",
            "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
            "X-RateLimit-Reset-After": "1.000",
            "X-RateLimit-Bucket": bucket,
        }

    def _channel(self, request: web.Request) -> Channel:
        channel = self.channels.get(int(request.match_info["cid"]))
        if channel is None or channel.deleted:
            raise DiscordHTTPError(404, "Unknown Channel", 10003)
        guild = self.guilds[channel.guild_id]
        if guild.removed:
            raise DiscordHTTPError(403, "Missing Access", 50001)
        if channel.forbidden_code:
            message = "Missing Access" if channel.forbidden_code == 50001 else "Missing Permissions"
            raise DiscordHTTPError(403, message, channel.forbidden_code)
        return channel

    async def _get_gateway(self, request: web.Request) -> web.Response:
        return self._json({"url": self.gateway_url})

    async def _get_gateway_bot(self, request: web.Request) -> web.Response:
        self._auth(request)
        limit = {"total": 1000, "remaining": 999, "reset_after": 86400000, "max_concurrency": 1}
        return self._json({"url": self.gateway_url, "shards": 1, "session_start_limit": limit})

    async def _get_me(self, request: web.Request) -> web.Response:
        self._auth(request)
        return self._json(self.bot_user, headers=self._ratelimit_headers("users-me"))

    async def _get_application(self, request: web.Request) -> web.Response:
        self._auth(request)
        owner = self._user(self._ids.next(), "owner")
        return self._json(
            {
                "id": str(self.application_id),
                "name": self.bot_user["username"],
                "icon": None,
                "description": "",
                "bot_public": False,
                "bot_require_code_grant": False,
                "owner": owner,
                "verify_key": "0" * 64,
                "flags": 0,
                "team": None,
                "summary": "",
                "rpc_origins": [],
                "interactions_endpoint_url": None,
                "redirect_uris": [],
                "tags": [],
                "approximate_guild_count": len(self.guilds),
                "bot": self.bot_user,
            }
        )

    async def _get_commands(self, request: web.Request) -> web.Response:
        self._auth(request)
        return self._json(self.commands)

    async def _put_commands(self, request: web.Request) -> web.Response:
        self._auth(request)
        if request.match_info["app"] != str(self.application_id):
            raise DiscordHTTPError(403, "Missing Access", 50001)
        body = await request.json()
        self.command_overwrites += 1
        old = {c["name"]: c["id"] for c in self.commands}
        self.commands = [
            {
                **c,
                "id": old.get(c["name"], str(self._ids.next())),
                "application_id": str(self.application_id),
                "version": str(self._ids.next()),
                "type": c.get("type", 1),
                "default_member_permissions": c.get("default_member_permissions"),
            }
            for c in body
        ]
        return self._json(self.commands, headers=self._ratelimit_headers("commands"))

    async def _get_channel(self, request: web.Request) -> web.Response:
        self._auth(request)
        return self._json(self._channel(request).to_dict())

    async def _get_guild(self, request: web.Request) -> web.Response:
        self._auth(request)
        guild = self.guilds.get(int(request.match_info["gid"]))
        if guild is None:
            raise DiscordHTTPError(404, "Unknown Guild", 10004)
        if guild.removed:
            raise DiscordHTTPError(403, "Missing Access", 50001)
        data = self._guild_create(guild)
        for key in ("channels", "threads", "members", "voice_states", "presences", "joined_at", "large"):
            data.pop(key, None)
        return self._json(data)

    async def _payload(self, request: web.Request) -> dict[str, Any]:
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            return json.loads(str(form["payload_json"]))
        return await request.json()

    def _validate(self, payload: dict[str, Any]) -> None:
        """Discord's message limits: content 2000, 10 embeds, description 4096, title 256,
        6000 characters over all embeds, 25 fields of 256/1024, footer 2048, author 256."""
        errors: dict[str, Any] = {}
        content = payload.get("content") or ""
        if len(content) > 2000:
            errors["content"] = _form_error("BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        embeds = payload.get("embeds") or []
        if len(embeds) > 10:
            errors["embeds"] = _form_error("BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        total = 0
        for i, embed in enumerate(embeds):
            limits = {"title": 256, "description": 4096}
            for key, limit in limits.items():
                value = embed.get(key) or ""
                total += len(value)
                if len(value) > limit:
                    errors.setdefault("embeds", {}).setdefault(str(i), {})[key] = _form_error(
                        "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."
                    )
            author = (embed.get("author") or {}).get("name") or ""
            footer = (embed.get("footer") or {}).get("text") or ""
            total += len(author) + len(footer)
            if len(author) > 256 or len(footer) > 2048:
                errors.setdefault("embeds", {}).setdefault(str(i), {})["author"] = _form_error(
                    "BASE_TYPE_MAX_LENGTH", "Must be 256 or fewer in length."
                )
            fields = embed.get("fields") or []
            if len(fields) > 25:
                errors.setdefault("embeds", {}).setdefault(str(i), {})["fields"] = _form_error(
                    "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                )
            for f in fields:
                total += len(f.get("name", "")) + len(f.get("value", ""))
                if len(f.get("name", "")) > 256 or len(f.get("value", "")) > 1024 or not f.get("value"):
                    errors.setdefault("embeds", {}).setdefault(str(i), {})["fields"] = _form_error(
                        "BASE_TYPE_BAD_LENGTH", "Field name ≤ 256, value 1-1024."
                    )
        if total > 6000:
            errors.setdefault("embeds", {})["_errors"] = [
                {"code": "MESSAGE_EMBEDS_LENGTH_EXCEEDED", "message": "Embed size exceeds maximum size of 6000"}
            ]
        for row in payload.get("components") or []:
            for comp in row.get("components", []):
                if len(comp.get("custom_id") or "") > 100 or len(comp.get("label") or "") > 80:
                    errors["components"] = _form_error("BASE_TYPE_MAX_LENGTH", "custom_id ≤ 100, label ≤ 80.")
        if not content and not embeds and not payload.get("components"):
            raise DiscordHTTPError(400, "Cannot send an empty message", 50006)
        if errors:
            raise DiscordHTTPError(400, "Invalid Form Body", 50035, errors)

    def _message(self, channel: Channel, author: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": str(self._ids.next()),
            "channel_id": str(channel.id),
            "guild_id": str(channel.guild_id),
            "author": author,
            "content": payload.get("content") or "",
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": payload.get("embeds") or [],
            "components": payload.get("components") or [],
            "pinned": False,
            "type": 0,
            "flags": int(payload.get("flags") or 0),
        }
        if payload.get("nonce") is not None:
            message["nonce"] = payload["nonce"]
        return message

    def _record_sent(self, channel: Channel, message: dict[str, Any], payload: dict[str, Any]) -> None:
        self.messages.setdefault(channel.id, []).append(message)
        self.sent.setdefault(channel.id, []).append(SentMessage(message, payload, time.monotonic()))
        self._sent_changed.set()

    async def _post_message(self, request: web.Request) -> web.Response:
        self._auth(request)
        channel = self._channel(request)
        headers = self._ratelimit_headers(f"messages-{channel.id}")
        if channel.rate_limits:
            retry_after, is_global = channel.rate_limits.pop(0)
            headers.update(
                {
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                    "X-RateLimit-Scope": "global" if is_global else "user",
                    "Retry-After": str(int(retry_after + 0.999)),
                    "Via": "1.1 google",  # discord.py reads a 429 without Via as a Cloudflare ban
                }
            )
            if is_global:
                headers["X-RateLimit-Global"] = "true"
            body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
            return self._json(body, status=429, headers=headers)
        if channel.failures and (failure := channel.failures.pop(0)) is not None:
            raise failure
        if channel.type == 11 and channel.archived:
            raise DiscordHTTPError(400, "Thread is archived", 50083)
        if channel.type == 15:
            raise DiscordHTTPError(400, "Cannot send messages in a forum channel; create a post (thread) in it", 50008)
        payload = await self._payload(request)
        self._validate(payload)
        nonce = payload.get("nonce")
        if nonce is not None and len(str(nonce)) > 25:
            raise DiscordHTTPError(400, "Invalid Form Body", 50035, {"nonce": _form_error("BASE_TYPE_MAX_LENGTH", "")})
        if nonce is not None and payload.get("enforce_nonce"):
            # Discord: with enforce_nonce, the same nonce in the same channel within a few minutes
            # returns the message created the first time instead of a new one.
            seen = self._nonces.get((channel.id, str(nonce)))
            if seen is not None and time.monotonic() - seen[0] < 300:
                return self._json(seen[1], headers=headers)
        message = self._message(channel, self.bot_user, payload)
        ref = payload.get("message_reference")
        if ref:
            message["type"] = 19
            message["message_reference"] = ref
        if nonce is not None and payload.get("enforce_nonce"):
            self._nonces[(channel.id, str(nonce))] = (time.monotonic(), message)
        self._record_sent(channel, message, payload)
        await self.dispatch("MESSAGE_CREATE", message)
        return self._json(message, headers=headers)

    def _find_message(self, channel: Channel, message_id: str) -> dict[str, Any]:
        for message in self.messages.get(channel.id, []):
            if message["id"] == message_id:
                return message
        raise DiscordHTTPError(404, "Unknown Message", 10008)

    async def _get_message(self, request: web.Request) -> web.Response:
        self._auth(request)
        return self._json(self._find_message(self._channel(request), request.match_info["mid"]))

    async def _patch_message(self, request: web.Request) -> web.Response:
        self._auth(request)
        channel = self._channel(request)
        message = self._find_message(channel, request.match_info["mid"])
        payload = await self._payload(request)
        self._validate({**message, **payload})
        for key in ("content", "embeds", "components", "flags"):
            if key in payload:
                message[key] = payload[key]
        message["edited_timestamp"] = _now_iso()
        return self._json(message, headers=self._ratelimit_headers(f"messages-{channel.id}"))

    async def _post_thread(self, request: web.Request) -> web.Response:
        self._auth(request)
        parent = self._channel(request)
        starter = self._find_message(parent, request.match_info["mid"])
        body = await request.json()
        name = str(body.get("name") or "")
        if not 1 <= len(name) <= 100:
            raise DiscordHTTPError(400, "Invalid Form Body", 50035, {"name": _form_error("BASE_TYPE_BAD_LENGTH", "")})
        if any(c.id == int(starter["id"]) for c in self.channels.values()):
            raise DiscordHTTPError(400, "A thread has already been created for this message", 160004)
        # A thread started from a message has that message's id.
        thread = Channel(int(starter["id"]), parent.guild_id, name, type=11, parent_id=parent.id)
        thread.owner_id = self.application_id
        self.channels[thread.id] = thread
        self.messages[thread.id] = []
        starter["thread"] = thread.to_dict()
        self._sent_changed.set()
        data = thread.to_dict()
        await self.dispatch("THREAD_CREATE", {**data, "newly_created": True})
        return self._json(data, status=201)

    async def _post_thread_without_message(self, request: web.Request) -> web.Response:
        """POST /channels/{id}/threads: in a forum channel a post (a thread with its first
        message, whose id is the thread's), in a text channel a thread without a message."""
        self._auth(request)
        parent = self._channel(request)
        body = await self._payload(request)
        name = str(body.get("name") or "")
        if not 1 <= len(name) <= 100:
            raise DiscordHTTPError(400, "Invalid Form Body", 50035, {"name": _form_error("BASE_TYPE_BAD_LENGTH", "")})
        if parent.type not in (0, 15):
            raise DiscordHTTPError(400, "Cannot execute action on this channel type", 50024)
        archive = int(body.get("auto_archive_duration") or 1440)
        if archive not in (60, 1440, 4320, 10080):
            raise DiscordHTTPError(
                400, "Invalid Form Body", 50035, {"auto_archive_duration": _form_error("BASE_TYPE_CHOICES", "")}
            )
        thread = Channel(self._ids.next(), parent.guild_id, name, type=11, parent_id=parent.id, auto_archive_duration=archive)
        thread.owner_id = self.application_id
        starter = None
        if parent.type == 15:
            message = body.get("message") or {}
            if not (message.get("content") or message.get("embeds")):
                raise DiscordHTTPError(400, "Cannot send an empty message", 50006)
            self._validate(message)
            self.channels[thread.id] = thread
            starter = self._message(thread, self.bot_user, message)
            starter["id"] = str(thread.id)  # a forum post's first message has the thread's id
            self._record_sent(thread, starter, message)
        else:
            if int(body.get("type") or 12) not in (11, 12):
                raise DiscordHTTPError(400, "Invalid Form Body", 50035, {"type": _form_error("BASE_TYPE_CHOICES", "")})
            self.channels[thread.id] = thread
            self.messages[thread.id] = []
        self._sent_changed.set()
        data = thread.to_dict()
        await self.dispatch("THREAD_CREATE", {**data, "newly_created": True})
        if starter is not None:
            await self.dispatch("MESSAGE_CREATE", starter)
            data = {**data, "message": starter}
        return self._json(data, status=201)

    async def _patch_channel(self, request: web.Request) -> web.Response:
        """PATCH /channels/{id}: of a thread, ``archived`` (and ``name``) are emulated."""
        self._auth(request)
        channel = self._channel(request)
        body = await self._payload(request)
        if "archived" in body:
            if channel.type != 11:
                raise DiscordHTTPError(400, "Invalid Form Body", 50035, {"archived": _form_error("BASE_TYPE_INVALID", "")})
            channel.archived = bool(body["archived"])
        if body.get("name"):
            channel.name = str(body["name"])[:100]
        data = channel.to_dict()
        await self.dispatch("THREAD_UPDATE" if channel.type == 11 else "CHANNEL_UPDATE", data)
        return self._json(data)

    async def wait_channel(self, channel_id: int, timeout: float = 5) -> Channel:
        """Wait until channel (or thread) ``channel_id`` exists."""
        async with asyncio.timeout(timeout):
            while channel_id not in self.channels:
                self._sent_changed.clear()
                await self._sent_changed.wait()
        return self.channels[channel_id]

    async def thread_message(self, thread_id: int, user_id: int, content: str) -> dict[str, Any]:
        """A member writes in a thread (content visible: it mentions the bot)."""
        return await self.user_message(thread_id, user_id, content)

    def _interaction_record(self, request: web.Request) -> InteractionRecord:
        # Interaction callbacks and follow-ups carry the interaction token in the URL, not a bot token.
        token = request.match_info["token"]
        for record in self.interactions.values():
            if record.token == token:
                return record
        raise DiscordHTTPError(404, "Unknown interaction", 10062)

    async def _interaction_callback(self, request: web.Request) -> web.Response:
        record = self._interaction_record(request)
        if str(record.id) != request.match_info["iid"]:
            raise DiscordHTTPError(404, "Unknown interaction", 10062)
        if any(r.get("kind") == "callback" for r in record.responses):
            raise DiscordHTTPError(400, "Interaction has already been acknowledged.", 40060)
        body = await self._payload(request)
        data = body.get("data") or {}
        if body.get("type") in (4, 7):
            self._validate(data)
        record.responses.append({"kind": "callback", "type": body.get("type"), "data": data})
        record.changed.set()
        if not request.query.get("with_response"):
            return web.Response(status=204)
        channel = self.channels[int(record.payload["channel_id"])]
        message_id = self._ids.next()
        result: dict[str, Any] = {
            "interaction": {
                "id": str(record.id),
                "type": record.payload["type"],
                "response_message_id": str(message_id),
                "response_message_loading": body.get("type") == 5,
                "response_message_ephemeral": bool(int(data.get("flags") or 0) & 64),
            }
        }
        if body.get("type") in (4, 5, 7):
            message = self._message(channel, self.bot_user, data if body.get("type") != 5 else {"content": ""})
            message["id"] = str(message_id)
            message["interaction_metadata"] = {
                "id": str(record.id),
                "type": record.payload["type"],
                "user": record.payload["member"]["user"],
                "authorizing_integration_owners": record.payload["authorizing_integration_owners"],
            }
            result["resource"] = {"type": body.get("type"), "message": message}
        else:
            result["resource"] = {"type": body.get("type")}
        return self._json(result)

    async def _followup(self, request: web.Request) -> web.Response:
        record = self._interaction_record(request)
        payload = await self._payload(request)
        self._validate(payload)
        channel = self.channels[int(record.payload["channel_id"])]
        message = self._message(channel, self.bot_user, payload)
        record.responses.append({"kind": "followup", "data": payload})
        record.changed.set()
        return self._json(message)

    async def _edit_followup(self, request: web.Request) -> web.Response:
        record = self._interaction_record(request)
        payload = await self._payload(request)
        channel = self.channels[int(record.payload["channel_id"])]
        record.responses.append({"kind": "edit_original", "data": payload})
        record.changed.set()
        return self._json(self._message(channel, self.bot_user, payload))

    async def _get_followup(self, request: web.Request) -> web.Response:
        record = self._interaction_record(request)
        channel = self.channels[int(record.payload["channel_id"])]
        shown = record.messages()
        return self._json(self._message(channel, self.bot_user, shown[-1] if shown else {}))


def _form_error(code: str, message: str) -> dict[str, Any]:
    return {"_errors": [{"code": code, "message": message}]}
