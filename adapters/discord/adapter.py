"""DiscordAdapter: the bridge's ChatAdapter for Discord, on discord.py."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import discord
from discord.http import HTTPClient

from adapters.discord.client import DEFAULT_API_URL, BridgeClient, client_context, rebase_http
from adapters.discord.commands import build_tree, commands_hash
from adapters.discord.errors import THREAD_ALREADY_CREATED, THREAD_ARCHIVED, UNKNOWN_CHANNEL, map_discord_error
from adapters.discord.render import (
    NO_MENTIONS,
    buttons_view,
    compact_text,
    delivery_nonce,
    notice_text,
    post_embeds,
    thread_name,
)
from bridge.configschema import Key
from bridge.errors import AuthFailed, BridgeError, Permanent
from bridge.model import Answer, Button, ChatEvent, ChatTarget, ChatUser, Delivery, EventKind, Sent
from bridge.protocols import Host, PartRecorder

# Discord: an interaction must be acknowledged within 3 seconds. Wait this long for the core's
# answer before deferring (a modal can only be the first response, so waiting is worth it).
ANSWER_WAIT = 2.2
MODAL_PREFIX = "bridge-text:"  # + the core's token (≤ 64 bytes; Discord custom_id ≤ 100)
MODAL_INPUT_ID = "text"
COMMANDS_HASH_KEY = "commands_hash"
# Discord: the Gateway closes with 4004 "Authentication failed" when the token is not (or no
# longer) valid (https://discord.com/developers/docs/topics/opcodes-and-status-codes#gateway).
AUTH_FAILED_CLOSE = 4004
TOKEN_FIX = "reset it in the Developer Portal (Bot → Reset Token), put the new one in discord.token and restart the bridge"
RECONNECT_FIRST, RECONNECT_MAX = 5.0, 300.0  # seconds before reconnecting a Gateway that ended for another reason
REPLY_HINT = (
    "I can't read that reply: Discord shows me a message's text only when it mentions me. "
    "Use the Reply button under the post, or reply with the mention on."
)
# Discord: a thread name is 1-100 characters; a thread of a feed is archived after a week
# without posts (the longest Discord offers), and unarchived by the next post.
THREAD_NAME_LIMIT = 100
TOPIC_ARCHIVE_MINUTES = 10080
_TARGET = re.compile(r"^(?P<chat>\d{1,20})(?:/(?P<thread>\d{1,20}))?$")


class DiscordAdapter:
    """Relays posts into Discord channels and threads, and turns slash commands, button presses,
    modal submits and replies into ChatEvents for the core."""

    name: ClassVar[str] = "discord"
    CONFIG: ClassVar[Mapping[str, Key]] = {
        "token": Key(str, required=True, secret=True, help="the bot token from the Developer Portal (Bot → Token)"),
        "api_url": Key(str, default=DEFAULT_API_URL, help="REST base URL; the Gateway URL comes from GET /gateway/bot"),
        "application_id": Key(str, default="", help="the application id; read from Discord when empty"),
        "guild_ready_timeout": Key(
            (int, float), default=2.0, min=0, help="seconds to wait for the servers' data after connecting"
        ),
        "login_check_interval": Key(
            (int, float),
            default=60,
            min=1,
            help="seconds between checks (GET /users/@me) of a token Discord refused; a refused call checks at once",
        ),
        "max_ratelimit_wait": Key(
            (int, float),
            default=30.0,
            min=30,
            help="discord.py waits out a 429 up to this long; a longer one pauses that channel in the bridge",
        ),
    }

    def __init__(self, settings: Mapping[str, Any], host: Host) -> None:
        self.settings = dict(settings)
        self.host = host
        self.log = host.log
        self.api_url: str = str(self.settings.get("api_url") or DEFAULT_API_URL)
        self._token: str = str(self.settings["token"])
        self._client: BridgeClient | None = None
        self._tree: discord.app_commands.CommandTree | None = None
        self._task: asyncio.Task | None = None
        self._gateway_error: BaseException | None = None  # why the Gateway connection ended
        self._login_every = float(self.settings.get("login_check_interval", 60))
        self._check_login = asyncio.Event()  # set on a 401: check the token now
        self._login_ok = True
        self._refused = ""  # why Discord refused the token, while it does
        self._watchdog: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in, sync the slash commands if they changed, and connect to the Gateway in the
        background, then watch the login (see ``_watch_login``). Raise AuthFailed when Discord
        refuses the token."""
        await self._connect()
        self._login_ok, self._refused = True, ""
        self._watchdog = asyncio.create_task(self._watch_login(), name="discord-login-watchdog")

    async def _connect(self) -> None:
        app_id = str(self.settings.get("application_id") or "")
        client = BridgeClient(
            api_url=self.api_url,
            handlers={
                "interaction": self._on_interaction,
                "message": self._on_message,
                "guild_channel_delete": self._on_channel_delete,
                "thread_delete": self._on_thread_delete,
                "guild_remove": self._on_guild_remove,
                "ready": self._on_ready,
                "resumed": self._on_ready,
            },
            guild_ready_timeout=float(self.settings.get("guild_ready_timeout", 2.0)),
            max_ratelimit_timeout=float(self.settings.get("max_ratelimit_wait", 30.0)),
            share=self.host.workers,
        )
        if app_id:
            client._connection.application_id = int(app_id)
        self._client = client
        self._tree = build_tree(client, self._on_command, self._subscription_choices)
        try:
            await client.login(self._token)
        except BaseException as exc:
            await client.close()
            self._client = None
            if isinstance(exc, Exception):
                raise map_discord_error(exc, "discord") from None
            raise
        await self._sync_commands()
        # Interaction callbacks go through discord.py's webhook adapter; run the client in a
        # context where that adapter talks to api_url (see adapters.discord.client).
        # The Gateway connection runs in one process only (several workers on one database would
        # each get every event), under the listener lease; REST calls (sends) work everywhere.
        self._task = asyncio.create_task(
            self.host.listen("gateway", lambda: self._run(client)), name="discord-gateway", context=client_context(self.api_url)
        )
        self.log.info("discord.started bot=%s api_url=%s", client.user, self.api_url)

    async def _run(self, client: BridgeClient) -> None:
        """The Gateway connection. discord.py reconnects by itself through network failures;
        it returns or raises only on what it cannot reconnect from (a refused token: close
        4004), which the watchdog then handles."""
        self._gateway_error = None
        try:
            await client.connect(reconnect=True)
        except asyncio.CancelledError:
            # The lease was lost or the adapter stops: the Gateway session ends before another
            # worker opens its own.
            ws = client.ws
            if ws is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(asyncio.wait_for(ws.close(code=1000), 5))
            self.ready.clear()
            raise
        except Exception as exc:
            self._gateway_error = exc
            why = exc if _refused(exc) else map_discord_error(exc, "discord gateway")
            self.log.warning("discord.gateway_ended error=%s", why)

    async def _watch_login(self) -> None:
        """A token that stops working while the bridge runs (reset in the Developer Portal, the
        bot deleted) must not be a silent outage: discord.py ends the Gateway connection on
        close 4004 and the REST calls answer 401, and nobody would be told. When the Gateway
        connection ends, or a call was refused with 401, check the token (GET /users/@me): on
        a refused token report it down once (the core tells the admins on the other platforms,
        ``bridge status`` and /healthz show it), close the client and check again every
        ``login_check_interval`` seconds; once it works again, connect afresh and report it
        healthy. A Gateway that ended for another reason is connected again with backoff."""
        delay = RECONNECT_FIRST
        while True:
            gateway = self._task
            if self._login_ok and gateway is not None and not gateway.done():
                refused = asyncio.ensure_future(self._check_login.wait())
                since = time.monotonic()
                try:
                    await asyncio.wait({gateway, refused}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    refused.cancel()
                if time.monotonic() - since > RECONNECT_MAX:
                    delay = RECONNECT_FIRST  # it held a good while: a new trouble starts the backoff afresh
            elif self._login_ok:  # the Gateway ended (not on the token): connect again, calmly
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._check_login.wait(), delay)
                delay = min(delay * 2, RECONNECT_MAX)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._check_login.wait(), self._login_every)
            self._check_login.clear()
            gateway = self._task
            ended = gateway is None or gateway.done()
            error = self._gateway_error if ended else None
            try:
                if error is not None and _refused(error):
                    raise AuthFailed(f"Discord refused the bot token (Gateway: {error}); {TOKEN_FIX}")
                await self.check()
            except AuthFailed as exc:
                await self._disconnect()  # nothing works with the token: no reconnect churn
                if self._login_ok:
                    self._login_ok = False
                    self._refused = f"Discord refused the bot token: {TOKEN_FIX}"
                    self.log.error("discord.login_refused reason=%r fix=%r", str(exc), TOKEN_FIX)
                    await self.host.report_health(
                        False, f"{self._refused} (the bridge checks this token again every {self._login_every:g} s)"
                    )
                continue
            except BridgeError as exc:
                self.log.info("discord.login_check_failed error=%s", exc)
                continue
            if ended:
                await self._disconnect()
                try:
                    await self._connect()
                except BridgeError as exc:
                    self.log.warning("discord.reconnect_failed error=%s", exc)
                    if isinstance(exc, AuthFailed):
                        self._check_login.set()  # refused between the check and the login: report it
                    continue
            if not self._login_ok:
                self._login_ok, self._refused = True, ""
                self.log.info("discord.login_works_again")
                await self.host.report_health(True)

    def _unauthorized(self, exc: BaseException) -> None:
        """A call was refused with 401: the watchdog checks the token now."""
        if isinstance(exc, AuthFailed) or (isinstance(exc, discord.HTTPException) and exc.status == 401):
            self._check_login.set()

    async def stop(self) -> None:
        """Stop watching the login and disconnect; never raises; idempotent."""
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(BaseException):
                await watchdog
        await self._disconnect()

    async def _disconnect(self) -> None:
        self._gateway_error = None  # told once: a later check asks Discord afresh
        client, self._client = self._client, None
        task, self._task = self._task, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self.ready.clear()

    async def _sync_commands(self) -> None:
        """Bulk-overwrite the global commands only when their payload changed since the last
        sync (Discord: command writes are rate limited, and a sync per start is wasteful)."""
        assert self._client is not None and self._tree is not None
        digest = commands_hash(self._tree, self._client.application_id)
        if await self.host.load_state(COMMANDS_HASH_KEY) == digest:
            return
        try:
            await self._tree.sync()
        except discord.HTTPException as exc:
            self.log.warning("discord.commands_sync_failed error=%s", map_discord_error(exc, "commands"))
            return
        await self.host.save_state(COMMANDS_HASH_KEY, digest)
        self.log.info("discord.commands_synced hash=%s", digest[:12])

    async def check(self) -> str:
        """Verify the token with GET /users/@me and return ``"ok: @botname"``. Raise AuthFailed
        (naming discord.token) on 401, Transient when Discord cannot be reached."""
        http = HTTPClient(asyncio.get_running_loop())
        rebase_http(http, self.api_url)
        try:
            user = await http.static_login(self._token)
        except discord.LoginFailure:
            raise AuthFailed(
                "discord.token was refused (401 Unauthorized): copy the token from the Developer Portal, Bot → Token"
            ) from None
        except Exception as exc:
            raise map_discord_error(exc, "discord") from None
        finally:
            await http.close()
        return f"ok: @{user['username']}"

    @classmethod
    def parse_target(cls, text: str) -> ChatTarget:
        """``channel_id`` or ``channel_id/thread_id`` (snowflakes); ValueError otherwise."""
        raw = text.strip()
        if raw.lower().startswith("discord:"):
            raw = raw[len("discord:") :]
        match = _TARGET.match(raw)
        if match is None:
            raise ValueError(
                f"{text.strip()[:100]!r} is not a Discord channel: write the channel id, e.g. discord:112233445566778899, "
                "or channel_id/thread_id (digits, not #names; /help in the channel tells you, or in Discord: "
                "Developer Mode → right-click the channel → Copy Channel ID)"
            )
        return ChatTarget("discord", str(int(match["chat"])), str(int(match["thread"])) if match["thread"] else "")

    @classmethod
    def parse_user(cls, text: str) -> str:
        """A Discord user id: a snowflake (digits)."""
        uid = text.strip()
        if not uid.isascii() or not uid.isdigit() or len(uid) > 20:
            raise ValueError(
                f"discord:{uid[:64]} is not a Discord user id: write the numeric id, e.g. discord:112233445566778899 "
                "(/help in a channel tells you yours, or Developer Mode → right-click your name → Copy User ID; "
                "names like @alice never match)"
            )
        return str(int(uid))

    # --- sending --------------------------------------------------------------------------

    def _connected_client(self) -> BridgeClient:
        if self._refused:
            # AuthFailed, not Transient: the core holds the sends until the token works again
            # instead of spending their retries.
            raise AuthFailed(self._refused)
        if self._client is None:
            raise map_discord_error(ConnectionError("the Discord adapter is not started"), "discord")
        return self._client

    def _mapped(self, exc: BaseException, scope: str) -> BridgeError:
        """``map_discord_error``, and a 401 wakes the login watchdog."""
        error = map_discord_error(exc, scope)
        self._unauthorized(error)
        return error

    async def send(self, delivery: Delivery, progress: PartRecorder | None = None) -> Sent:
        """Send the post as embeds (one message; a text too long for one embed continues in up
        to ``render.MAX_PARTS`` messages) to the channel (or thread), from the part after
        ``delivery.parts_done``, with mentions disabled, the buttons on the last message and a
        nonce per part from the delivery key (enforce_nonce), and open a thread under the first
        message when asked. Each part but the last is handed to ``progress`` before the next.
        Errors map to bridge.errors for this destination only."""
        client = self._connected_client()
        target = delivery.target
        scope = str(target)
        if delivery.topic and not target.thread_id:
            target = await self._new_topic(target, delivery.topic)
        # The compact format is one plain line, no embed; the full one is embeds.
        parts: list[dict[str, Any]] = (
            [{"content": compact_text(delivery.post)}]
            if delivery.compact
            else [{"embed": embed} for embed in post_embeds(delivery.post)]
        )
        ids = [i for part in delivery.parts_done for i in part]
        view = buttons_view(delivery.buttons)
        for index in range(len(delivery.parts_done), len(parts)):
            kwargs: dict[str, Any] = {
                **parts[index],
                "allowed_mentions": NO_MENTIONS,
                # discord.py sends enforce_nonce=True with a nonce: a retry of a part returns the
                # message it created instead of a second one.
                "nonce": delivery_nonce(delivery, index),
            }
            last = index == len(parts) - 1
            if last and view is not None:
                kwargs["view"] = view
            channel = client.get_partial_messageable(int(target.thread_id or target.chat_id))
            try:
                message = await channel.send(**kwargs)
            except discord.HTTPException as exc:
                if not delivery.topic or exc.code not in (UNKNOWN_CHANNEL, THREAD_ARCHIVED):
                    raise map_discord_error(exc, scope) from None
                # The feed's own thread was archived (unarchive it) or deleted (make it again).
                target = await self._revive_topic(target, delivery.topic, exc)
                channel = client.get_partial_messageable(int(target.thread_id))
                try:
                    message = await channel.send(**kwargs)
                except Exception as again:
                    raise map_discord_error(again, scope) from None
            except Exception as exc:
                raise self._mapped(exc, scope) from None
            ids.append(str(message.id))
            if progress is not None and not last:
                await progress(index, (str(message.id),))
        if not ids:
            raise map_discord_error(RuntimeError("nothing to send"), scope)
        thread_id = delivery.target.thread_id
        if delivery.open_thread and not target.thread_id:
            thread_id = await self._open_thread(int(target.chat_id), int(ids[0]), delivery, scope)
        self.log.info("discord.sent delivery=%s post=%s target=%s messages=%s", delivery.id, delivery.post.ref, target, ",".join(ids))
        return Sent(
            message_ids=tuple(ids),
            thread_id=thread_id if thread_id != delivery.target.thread_id else "",
            topic_id=target.thread_id if delivery.topic else "",
        )

    async def _new_topic(self, target: ChatTarget, name: str) -> ChatTarget:
        """Make the thread of a feed in ``target``'s channel: in a forum channel a forum post
        (a thread with a first message, ``ForumChannel.create_thread``), in a text channel a
        public thread (``TextChannel.create_thread``). The target in it."""
        client = self._connected_client()
        scope = str(target)
        name = name[:THREAD_NAME_LIMIT]
        try:
            channel = client.get_channel(int(target.chat_id)) or await client.fetch_channel(int(target.chat_id))
            if isinstance(channel, discord.ForumChannel):
                made = await channel.create_thread(
                    name=name,
                    auto_archive_duration=TOPIC_ARCHIVE_MINUTES,
                    content=notice_text(
                        f"Posts of {discord.utils.escape_markdown(name)}, relayed by the bridge. Reply to one of them to answer it."
                    ),
                    allowed_mentions=NO_MENTIONS,
                )
                thread = made.thread
            elif isinstance(channel, discord.TextChannel):
                thread = await channel.create_thread(
                    name=name, type=discord.ChannelType.public_thread, auto_archive_duration=TOPIC_ARCHIVE_MINUTES
                )
            else:
                raise Permanent(
                    f"{scope}: a thread per feed needs a forum or text channel, not {getattr(channel, 'type', 'this one')}; "
                    "relay without one with /filter <id> topic:off"
                )
        except BridgeError:
            raise
        except Exception as exc:
            raise map_discord_error(exc, scope) from None
        self.log.info("discord.topic_created channel=%s thread=%s name=%r", target.chat_id, thread.id, name)
        return ChatTarget("discord", target.chat_id, str(thread.id))

    async def _revive_topic(self, target: ChatTarget, name: str, error: discord.HTTPException) -> ChatTarget:
        """A send into the feed's thread failed with ``error``: unarchive the thread (edit it
        with archived=False) when it was archived, make it again when it was deleted."""
        if error.code == UNKNOWN_CHANNEL:
            self.log.info("discord.topic_gone channel=%s thread=%s name=%r", target.chat_id, target.thread_id, name)
            return await self._new_topic(target, name)
        client = self._connected_client()
        try:
            await client.http.edit_channel(int(target.thread_id), archived=False)
        except discord.HTTPException as exc:
            if exc.code == UNKNOWN_CHANNEL:
                return await self._new_topic(target, name)
            raise map_discord_error(exc, str(target)) from None
        except Exception as exc:
            raise map_discord_error(exc, str(target)) from None
        self.log.info("discord.topic_unarchived channel=%s thread=%s name=%r", target.chat_id, target.thread_id, name)
        return target

    async def _open_thread(self, channel_id: int, message_id: int, delivery: Delivery, scope: str) -> str:
        client = self._connected_client()
        try:
            data = await client.http.start_thread_with_message(
                channel_id, message_id, name=thread_name(delivery.post), auto_archive_duration=1440
            )
        except discord.HTTPException as exc:
            if exc.code == THREAD_ALREADY_CREATED:
                # A retry after a crash: the thread exists, and a message's thread has its id.
                return str(message_id)
            raise self._mapped(exc, scope) from None
        except Exception as exc:
            raise self._mapped(exc, scope) from None
        return str(data["id"])

    async def notify(self, target: ChatTarget, text: str, buttons: tuple[Button, ...] = ()) -> str:
        """A plain-text notice from the bridge, with mentions disabled and ``buttons`` under
        it; the message id."""
        client = self._connected_client()
        channel = client.get_partial_messageable(int(target.thread_id or target.chat_id))
        view = buttons_view(buttons) if buttons else None
        try:
            if view is None:
                message = await channel.send(notice_text(text), allowed_mentions=NO_MENTIONS)
            else:
                message = await channel.send(notice_text(text), allowed_mentions=NO_MENTIONS, view=view)
        except Exception as exc:
            raise self._mapped(exc, str(target)) from None
        return str(message.id)

    async def edit(self, target: ChatTarget, message_id: str, text: str, buttons: tuple[Button, ...] = ()) -> None:
        """Replace a notice's text and buttons in place (no buttons: the components go)."""
        client = self._connected_client()
        channel = client.get_partial_messageable(int(target.thread_id or target.chat_id))
        try:
            # view=None sends an empty component list, which removes the buttons.
            await channel.get_partial_message(int(message_id)).edit(
                content=notice_text(text), view=buttons_view(buttons) if buttons else None, allowed_mentions=NO_MENTIONS
            )
        except Exception as exc:
            raise self._mapped(exc, str(target)) from None

    # --- events: interactions -------------------------------------------------------------

    @staticmethod
    def _target_of(channel: Any, channel_id: int | None) -> ChatTarget:
        if isinstance(channel, discord.Thread) and channel.parent_id:
            return ChatTarget("discord", str(channel.parent_id), str(channel.id))
        return ChatTarget("discord", str(getattr(channel, "id", None) or channel_id))

    @staticmethod
    def _user_of(interaction: discord.Interaction) -> ChatUser:
        user = interaction.user
        # Room admins: members with Manage Channels in this channel (the interaction carries the
        # member's resolved permissions for it).
        return ChatUser(
            "discord",
            str(user.id),
            name=user.display_name,
            is_room_admin=bool(interaction.permissions.manage_channels),
        )

    def _event(self, interaction: discord.Interaction, kind: EventKind, **fields: str) -> ChatEvent:
        target = self._target_of(interaction.channel, interaction.channel_id)
        return ChatEvent(kind, target, self._user_of(interaction), **fields)

    async def _on_command(self, interaction: discord.Interaction, verb: str, args: str) -> None:
        await self._answer(interaction, self._event(interaction, EventKind.COMMAND, command=verb, args=args.strip()))

    async def _subscription_choices(self, interaction: discord.Interaction, typed: str) -> list[tuple[str, str]]:
        target = self._target_of(interaction.channel, interaction.channel_id)
        try:
            # Discord drops an autocomplete answer after 3 s.
            subs = await asyncio.wait_for(self.host.subscriptions(target), 2.0)
        except Exception:
            return []
        typed = typed.strip().lower()
        found = [(f"{s.id} {s.label}", str(s.id)) for s in subs]
        return [(label, value) for label, value in found if typed in label.lower()]

    async def _on_interaction(self, interaction: discord.Interaction) -> None:
        data = interaction.data or {}
        if interaction.type is discord.InteractionType.component:
            custom_id = str(data.get("custom_id", ""))
            if custom_id:
                await self._answer(interaction, self._event(interaction, EventKind.BUTTON, token=custom_id))
        elif interaction.type is discord.InteractionType.modal_submit:
            custom_id = str(data.get("custom_id", ""))
            if custom_id.startswith(MODAL_PREFIX):
                text = _modal_value(data, MODAL_INPUT_ID)
                event = self._event(interaction, EventKind.REPLY, token=custom_id[len(MODAL_PREFIX) :], text=text)
                await self._answer(interaction, event)

    async def _handle(self, event: ChatEvent) -> Answer:
        try:
            return await self.host.handle(event)
        except Exception:
            self.log.exception("discord.handle_failed kind=%s target=%s", event.kind, event.target)
            return Answer("Something went wrong on the bridge; the operator can see it in the logs.", ok=False)

    async def _answer(self, interaction: discord.Interaction, event: ChatEvent) -> None:
        """Hand ``event`` to the core and render its Answer: ephemeral unless public, a modal
        when it asks for text. Slow answers are deferred first (3-second rule)."""
        task = asyncio.create_task(self._handle(event))
        done, _ = await asyncio.wait({task}, timeout=ANSWER_WAIT)
        try:
            if done:
                answer = task.result()
                if answer.ask_text_for:
                    await interaction.response.send_modal(_text_modal(answer))
                else:
                    await interaction.response.send_message(
                        notice_text(answer.text), ephemeral=not answer.public, allowed_mentions=NO_MENTIONS, **_view(answer)
                    )
                return
            await interaction.response.defer(ephemeral=True, thinking=True)
            answer = await task
            text = notice_text(answer.text)
            if answer.ask_text_for:
                text = notice_text(f"{answer.text}\nReply to the post with your text (mention me).".strip())
            if answer.public:
                await interaction.edit_original_response(content="Done.")
                await interaction.followup.send(text, ephemeral=False, allowed_mentions=NO_MENTIONS, **_view(answer))
            else:
                await interaction.edit_original_response(content=text, allowed_mentions=NO_MENTIONS, **_view(answer))
        except discord.HTTPException as exc:
            self.log.warning("discord.answer_failed interaction=%s error=%s", interaction.id, exc)

    # --- events: messages -----------------------------------------------------------------

    async def _on_message(self, message: discord.Message) -> None:
        client = self._client
        if client is None or client.user is None or message.author.bot or message.guild is None:
            return
        me = client.user
        text = re.sub(rf"<@!?{me.id}>", "", message.content or "").strip()
        reference = message.reference
        channel = message.channel
        if reference is not None and reference.message_id is not None:
            resolved = reference.resolved
            if isinstance(resolved, discord.Message) and resolved.author.id != me.id:
                return  # a reply between people, not to the bridge
            if not text:
                # No message_content intent: the text is hidden unless the message mentions us.
                await self._reply_in_chat(message, REPLY_HINT)
                return
            reply_to = str(reference.message_id)
        elif isinstance(channel, discord.Thread) and channel.owner_id == me.id and text:
            # A thread the bridge opened under a post has that post's message id.
            reply_to = str(channel.id)
        else:
            return
        user = ChatUser("discord", str(message.author.id), name=message.author.display_name, is_room_admin=_can_manage(message))
        event = ChatEvent(
            EventKind.REPLY, self._target_of(channel, message.channel.id), user, text=text, reply_to_message=reply_to
        )
        answer = await self._handle(event)
        if answer.text:
            await self._reply_in_chat(message, answer.text)

    async def _reply_in_chat(self, message: discord.Message, text: str) -> None:
        try:
            await message.reply(notice_text(text), mention_author=False, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            self.log.warning("discord.reply_failed channel=%s error=%s", message.channel.id, exc)

    # --- events: faults -------------------------------------------------------------------

    async def _on_ready(self, *args: Any) -> None:
        self.ready.set()

    async def _on_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        await self._unavailable(ChatTarget("discord", str(channel.id)), f"the Discord channel #{channel.name} was deleted")

    async def _on_thread_delete(self, thread: discord.Thread) -> None:
        target = ChatTarget("discord", str(thread.parent_id), str(thread.id))
        await self._unavailable(target, f"the Discord thread {thread.name} was deleted")

    async def _on_guild_remove(self, guild: discord.Guild) -> None:
        reason = f"the bot was removed from the Discord server {guild.name}"
        for channel in guild.channels:
            await self._unavailable(ChatTarget("discord", str(channel.id)), reason)
        for thread in guild.threads:
            await self._unavailable(ChatTarget("discord", str(thread.parent_id), str(thread.id)), reason)

    async def _unavailable(self, target: ChatTarget, reason: str) -> None:
        self.log.warning("discord.destination_unavailable target=%s reason=%s", target, reason)
        try:
            await self.host.destination_unavailable(target, reason)
        except BridgeError:
            self.log.exception("discord.destination_unavailable_failed target=%s", target)


def _can_manage(message: discord.Message) -> bool:
    try:
        return bool(message.channel.permissions_for(message.author).manage_channels)  # type: ignore[union-attr, arg-type]
    except Exception:
        return False


def _view(answer: Answer) -> dict[str, discord.ui.View]:
    """The ``view=`` argument for an answer with buttons (a /find answer), else nothing."""
    view = buttons_view(answer.buttons)
    return {"view": view} if view is not None else {}


def _text_modal(answer: Answer) -> discord.ui.Modal:
    """A modal asking for the text the core wants; its submit comes back as a REPLY event."""
    title = (answer.text or "Reply").splitlines()[0][:45]  # Discord: modal title ≤ 45
    modal = discord.ui.Modal(title=title or "Reply", custom_id=MODAL_PREFIX + answer.ask_text_for, timeout=None)
    modal.add_item(
        discord.ui.TextInput(
            label="Text", custom_id=MODAL_INPUT_ID, style=discord.TextStyle.paragraph, max_length=4000, required=True
        )
    )
    # Handled by on_interaction (any custom_id, also after a restart), so not kept in memory.
    modal.stop()
    return modal


def _modal_value(data: Mapping[str, Any], custom_id: str) -> str:
    """The value of text input ``custom_id`` in a modal submit (action rows or labels)."""
    stack = list(data.get("components") or [])
    while stack:
        item = stack.pop(0)
        if item.get("custom_id") == custom_id and "value" in item:
            return str(item["value"])
        stack.extend(item.get("components") or [])
        if isinstance(item.get("component"), dict):
            stack.append(item["component"])
    return ""


def _refused(exc: BaseException) -> bool:
    """Whether the Gateway ended because Discord refused the token."""
    return isinstance(exc, discord.LoginFailure) or (isinstance(exc, discord.ConnectionClosed) and exc.code == AUTH_FAILED_CLOSE)
