"""The Telegram chat adapter: python-telegram-bot's Application run inside the bridge's loop."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

from telegram import Bot, BotCommand, Update
from telegram.error import BadRequest, ChatMigrated, InvalidToken, TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes, TypeHandler

from adapters.telegram.admins import AdminCache
from adapters.telegram.failures import auth_failed, to_bridge_error
from adapters.telegram.logredact import protect_token
from adapters.telegram.ordering import ChatOrderedUpdates
from adapters.telegram.outbox import Outbox, PieceRecorder
from adapters.telegram.pacing import Pacer
from adapters.telegram.render import Piece, keyboard, plan_compact, plan_notice, plan_post
from adapters.telegram.transport import AiohttpRequest
from adapters.telegram.updates import COMMANDS, PLATFORM, UpdateHandler
from bridge.configschema import Key
from bridge.errors import AuthFailed, DestinationMoved, DestinationUnavailable, Permanent, Transient
from bridge.model import Button, ChatTarget, Delivery, Sent
from bridge.protocols import Host, PartRecorder

# Telegram: a username is 5-32 characters, letters, digits and underscores, starting with a letter.
_USERNAME = re.compile(r"^@[A-Za-z][A-Za-z0-9_]{4,31}$")

# Telegram: a forum topic's name is 1-128 characters.
TOPIC_NAME_LIMIT = 128
# Bot API descriptions of a send into a topic that is gone, or closed (then reopenForumTopic).
_TOPIC_GONE = ("message thread not found", "topic_deleted", "topic_id_invalid")
_TOPIC_CLOSED = ("topic_closed",)

# Update kinds the bridge acts on (Telegram sends only these when asked, saving traffic).
ALLOWED_UPDATES = ["message", "channel_post", "callback_query", "my_chat_member"]


class TelegramAdapter:
    """ChatAdapter for Telegram (see bridge.protocols.ChatAdapter for the contract)."""

    name: ClassVar[str] = PLATFORM
    CONFIG: ClassVar[Mapping[str, Key]] = {
        "token": Key(str, required=True, secret=True, help="the bot token from @BotFather"),
        "api_url": Key(
            str,
            default="https://api.telegram.org",
            help="root of the Bot API server; requests go to {api_url}/bot{token}/{method}",
        ),
        "poll_timeout": Key(int, default=30, min=0, help="seconds a getUpdates long poll may wait"),
        "login_check_interval": Key(
            (int, float),
            default=60,
            min=1,
            help="seconds between checks (getMe) that the token still works; a refused call checks at once",
        ),
        "max_pacing_wait": Key(
            (int, float),
            default=5.0,
            min=0,
            help="seconds a send may wait for its chat's rate limit before handing back RateLimited",
        ),
        "webhook_url": Key(
            str,
            default="",
            needs_http=True,
            requires=("webhook_secret",),
            pattern=r"https?://[^\s/]+(/\S*)?",
            help="the public https:// URL Telegram calls, forwarded to [http] listen; its path is the route served",
        ),
        "webhook_secret": Key(
            str,
            default="",
            secret=True,
            # Telegram: secret_token is 1-256 characters, only A-Z, a-z, 0-9, _ and -.
            pattern=r"[A-Za-z0-9_-]{1,256}",
            help="1 to 256 letters, digits, _ or -; e.g. the output of: openssl rand -hex 32",
        ),
    }

    def __init__(self, settings: Mapping[str, Any], host: Host) -> None:
        self._token: str = settings["token"]
        self._api_url: str = str(settings.get("api_url") or "https://api.telegram.org").rstrip("/")
        self._poll_timeout = int(settings.get("poll_timeout", 30))
        self._max_wait = float(settings.get("max_pacing_wait", 5.0))
        self._webhook_url: str = str(settings.get("webhook_url") or "")
        self._webhook_secret: bytes = str(settings.get("webhook_secret") or "").encode()
        self._host = host
        self._log: logging.Logger = host.log
        self._pacer = Pacer(sleep=self._paced, share=host.workers)
        self._app: Application | None = None
        self._outbox: Outbox | None = None
        self._handler: UpdateHandler | None = None
        self._requests: list[AiohttpRequest] = []
        self._login_every = float(settings.get("login_check_interval", 60))
        self._check_login = asyncio.Event()  # set on a 401: check the token now
        self._login_ok = True
        self._watchdog: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        protect_token(self._token)

    async def _paced(self, seconds: float) -> None:
        """The pacer's wait, counted for /metrics."""
        self._host.pacing_wait(seconds)
        await asyncio.sleep(seconds)

    # --- lifecycle ---------------------------------------------------------------------------

    def _bot(self, sends: int = 1, long_poll: bool = False) -> Bot:
        """A plain Bot, not the ExtBot an Application builds: the bridge uses neither its
        callback-data cache nor its defaults, and skipping them saves CPU on every call. Its
        requests go through aiohttp (see transport.py), ``sends`` connections at most, and
        with ``long_poll`` a connection of its own for getUpdates."""
        request = AiohttpRequest(pool_size=sends, on_unauthorized=self._check_login.set)
        updates = (
            AiohttpRequest(pool_size=1, read_timeout=self._poll_timeout + 10, on_unauthorized=self._check_login.set)
            if long_poll
            else None
        )
        self._requests = [r for r in (request, updates) if r is not None]
        return Bot(
            self._token,
            base_url=f"{self._api_url}/bot",
            base_file_url=f"{self._api_url}/file/bot",
            request=request,
            get_updates_request=updates,
        )

    async def start(self) -> None:
        """Log in (getMe), register the commands and start long polling in this event loop,
        then watch the login (see ``_watch_login``)."""
        await self._start_app()
        self._login_ok = True
        self._watchdog = asyncio.create_task(self._watch_login(), name="telegram-login-watchdog")

    async def _watch_login(self) -> None:
        """A token that stops working while the bridge runs (revoked in @BotFather, the bot
        deleted) must not be a silent outage: python-telegram-bot stops polling on it and says
        nothing to anyone. Every ``login_check_interval`` seconds, and at once after any call
        was refused with 401, ask getMe: on a refused token report it down once (the core
        tells the rooms and the admins, ``bridge status`` shows it) and keep asking at the
        same calm pace; once it works again, start afresh (polling included) and report it
        healthy. A network failure is not a login problem: polling retries that by itself."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._check_login.wait(), self._login_every)
            self._check_login.clear()
            app = self._app
            try:
                if app is None:
                    await self._start_app()  # an earlier restart failed: try it again
                else:
                    await app.bot.get_me()
            except (InvalidToken, AuthFailed) as exc:
                if self._login_ok:
                    self._login_ok = False
                    error = exc if isinstance(exc, AuthFailed) else auth_failed(exc)
                    self._log.error("telegram.login_refused error=%s", error)
                    await self._host.report_health(False, f"{error} (the bridge checks it again every {self._login_every:g} s)")
                continue
            except (TelegramError, Transient, OSError) as exc:
                self._log.info("telegram.login_check_failed error=%s", exc)
                continue
            if not self._login_ok:
                if app is not None:  # polling stopped on the refused token: start it again
                    await self._stop_app()
                    try:
                        await self._start_app()
                    except (AuthFailed, Transient, TelegramError, OSError) as exc:
                        self._log.warning("telegram.restart_failed error=%s", exc)
                        continue
                self._login_ok = True
                self._log.info("telegram.login_works_again")
                await self._host.report_health(True)

    async def _start_app(self) -> None:
        bot = self._bot(sends=256, long_poll=True)  # python-telegram-bot's default pool sizes
        # Chats side by side (a slow answer must not hold the rest), each chat's in order.
        app = ApplicationBuilder().bot(bot).concurrent_updates(ChatOrderedUpdates(slots=16)).build()
        try:
            await app.initialize()
        except BaseException as exc:
            # A failed initialize leaves the HTTP sessions open and the Bot "not initialized",
            # so its shutdown would not close them; the core tries the start again later.
            for request in self._requests:
                await request.shutdown()
            if isinstance(exc, InvalidToken):
                raise auth_failed(exc) from exc
            if isinstance(exc, TelegramError):
                raise Transient(f"telegram: cannot reach the Bot API at {self._api_url}: {exc.message}") from exc
            raise
        self._app = app
        bot = app.bot
        self._outbox = Outbox(bot, self._pacer, self._max_wait)
        self._handler = UpdateHandler(self._host, self._outbox, AdminCache(bot), bot.username, bot.id)
        app.add_handler(TypeHandler(Update, self._on_update))
        try:
            await bot.set_my_commands([BotCommand(verb, text) for verb, text in COMMANDS.items()])
        except TelegramError as exc:
            # The menu is a convenience: the commands work without it.
            self._log.warning("telegram.set_commands_failed error=%s", exc)
        await app.start()
        if self._webhook_url:
            # The route answers before Telegram learns the URL, so no early call is refused.
            # Several workers each serve the route and set the same URL (setWebhook is
            # idempotent): Telegram calls one URL, and whichever worker answers takes the update.
            self._host.serve_webhook(urlsplit(self._webhook_url).path or "/", self._on_webhook)
            try:
                await bot.set_webhook(
                    self._webhook_url, secret_token=self._webhook_secret.decode(), allowed_updates=ALLOWED_UPDATES
                )
            except TelegramError as exc:
                await app.stop()
                await app.shutdown()
                self._app = None
                raise Transient(f"telegram: setWebhook refused {self._webhook_url}: {exc.message}") from exc
            mode = "webhook"
        else:
            try:
                # A bot switched back from webhook mode polls again: whichever worker polls.
                await bot.delete_webhook()
            except TelegramError as exc:
                await app.stop()
                await app.shutdown()
                self._app = None
                raise Transient(f"telegram: deleteWebhook failed: {exc.message}") from exc
            # Long polling runs in one process only (several workers on one database: a second
            # getUpdates would be refused with 409 Conflict), under the listener lease.
            self._listener = asyncio.create_task(self._host.listen("updates", self._poll_updates), name="telegram-updates")
            mode = "polling"
        self._log.info("telegram.started bot=@%s api=%s mode=%s", bot.username, self._api_url, mode)

    async def _poll_updates(self) -> None:
        """Long-poll getUpdates until cancelled (the lease was lost, or the adapter stops)."""
        app = self._app
        assert app is not None and app.updater is not None
        delay = 1.0
        while True:
            try:
                # start_polling first calls deleteWebhook: a bot switched back from webhook mode polls again.
                await app.updater.start_polling(
                    timeout=self._poll_timeout, allowed_updates=ALLOWED_UPDATES, error_callback=self._on_poll_error
                )
                break
            except InvalidToken:
                self._check_login.set()  # the watchdog reports it and starts afresh once it works
                return
            except (TelegramError, OSError) as exc:
                self._log.warning("telegram.polling_start_failed error=%s retry_in=%.0f", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
        self._log.info("telegram.polling")
        try:
            await asyncio.Event().wait()
        finally:
            if app.updater.running:
                # Shielded: a lease lost mid-poll must end this poll before another worker's starts.
                with contextlib.suppress(Exception):
                    await asyncio.shield(app.updater.stop())

    async def _on_webhook(self, headers: Mapping[str, str], body: bytes) -> int:
        """One call to the webhook route: 401 unless it carries our secret token (Telegram:
        X-Telegram-Bot-Api-Secret-Token), 400 for a body that is not an update, else the update
        joins the queue polling fills, and is handled by the same handlers in the same order."""
        given = headers.get("X-Telegram-Bot-Api-Secret-Token", "").encode()
        if not self._webhook_secret or not hmac.compare_digest(given, self._webhook_secret):
            return 401
        app = self._app
        if app is None:
            return 503  # Telegram retries later
        try:
            data = json.loads(body)
            update = Update.de_json(data, app.bot) if isinstance(data, dict) else None
        except (ValueError, TypeError, KeyError):
            update = None
        if update is None:
            self._log.warning("telegram.webhook_bad_update bytes=%d", len(body))
            return 400
        await app.update_queue.put(update)
        return 200

    def _on_poll_error(self, error: TelegramError) -> None:
        self._log.warning("telegram.poll_error error=%s", error)

    async def _on_update(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if isinstance(update, Update) and self._handler is not None:
            await self._handler.handle(update)

    async def stop(self) -> None:
        """Stop watching the login and polling, let running handlers finish, close the HTTP
        clients. Never raises."""
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(BaseException):
                await watchdog
        if await self._stop_app():
            self._log.info("telegram.stopped")

    async def _stop_app(self) -> bool:
        """Stop the Application, step by step: after polling died on a refused token, the
        updater's stop raises that error, and the rest must still close. False if none ran."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(BaseException):
                await listener
        app, self._app = self._app, None
        if app is None:
            return False
        steps = []
        if app.updater is not None and app.updater.running:
            steps.append(app.updater.stop)
        if app.running:
            steps.append(app.stop)
        steps.append(app.shutdown)
        for step in steps:
            try:
                await step()
            except InvalidToken:
                pass  # the polling task ended on it; already reported by the watchdog
            except Exception:
                self._log.exception("telegram.stop_failed")
        for request in self._requests:  # closed by shutdown, unless a step above failed
            await request.shutdown()
        return True

    async def check(self) -> str:
        """getMe with the configured token: ``"ok: @botname"``; AuthFailed on a refused token."""
        bot = self._bot()
        try:
            async with bot:
                me = await bot.get_me()
        except InvalidToken as exc:
            raise auth_failed(exc) from exc
        except TelegramError as exc:
            raise Transient(f"telegram: cannot reach the Bot API at {self._api_url}: {exc.message}") from exc
        return f"ok: @{me.username}"

    # --- destinations -----------------------------------------------------------------------

    @classmethod
    def parse_target(cls, text: str) -> ChatTarget:
        """``<chat_id>[/<topic_id>]`` with a numeric chat id (negative for groups and channels),
        or ``@channelusername[/<topic_id>]``: the Bot API takes a public channel's (or public
        supergroup's) username as ``chat_id``. Usernames are case-insensitive: kept lower-case."""
        chat_id, sep, topic = text.strip().partition("/")
        if _USERNAME.match(chat_id):
            chat_id = chat_id.lower()
        else:
            try:
                chat_id = str(int(chat_id))
            except ValueError:
                raise ValueError(
                    f"{text.strip()[:100]!r} is not a Telegram chat: write the numeric chat id, e.g. telegram:-1001234567890 "
                    "(a group or channel; send /start there and the bot tells you) or telegram:123456789 (a private chat), "
                    "or a public channel's @username, e.g. telegram:@acme_news"
                ) from None
        if sep:
            try:
                if int(topic) <= 0:
                    raise ValueError
            except ValueError:
                raise ValueError(
                    f"{text.strip()[:100]!r}: the topic after '/' must be a positive number, e.g. telegram:-1001234567890/42"
                ) from None
        return ChatTarget(PLATFORM, chat_id, str(int(topic)) if sep else "")

    @classmethod
    def parse_user(cls, text: str) -> str:
        """A Telegram user id: a positive number (usernames change hands and are not in every update)."""
        uid = text.strip()
        if not uid.isascii() or not uid.isdigit():
            raise ValueError(
                f"telegram:{uid[:64]} is not a Telegram user id: write the numeric id, e.g. telegram:123456789 "
                "(send /start to the bot in a private chat and it tells you yours; usernames like @alice never match)"
            )
        return str(int(uid))

    # --- sending --------------------------------------------------------------------------------

    async def send(self, delivery: Delivery, progress: PartRecorder | None = None) -> Sent:
        """Send the post as planned by ``render.plan_post``, from the part after
        ``delivery.parts_done``; every part's message ids come back, those sent before first.
        Each part but the last is handed to ``progress`` before the next is sent (see
        bridge.protocols.ChatAdapter)."""
        pieces = (plan_compact if delivery.compact else plan_post)(delivery.post, delivery.buttons)
        done = [i for part in delivery.parts_done for i in part]
        start = len(delivery.parts_done)
        if start >= len(pieces):  # every part was out already (the plan is the same each time)
            topic_id = delivery.target.thread_id if delivery.topic else ""
            return Sent(message_ids=tuple(done), thread_id=delivery.target.thread_id, topic_id=topic_id)
        recorded = 0
        on_piece = None
        if progress is not None:

            async def on_piece(index: int, ids: Sequence[int]) -> None:
                nonlocal recorded
                recorded += 1
                await progress(index, tuple(str(i) for i in ids))

        target = delivery.target
        if delivery.topic and not target.thread_id:
            target = await self._new_topic(target, delivery.topic)
        try:
            sent = await self._deliver(target, pieces, patient=False, moved_is_pending=True, start=start, on_piece=on_piece)
        except DestinationUnavailable as exc:
            if not delivery.topic or not target.thread_id:
                raise
            if recorded:  # the topic went between two parts: the retry starts after them
                raise Transient(f"{exc}; the parts sent so far are kept, the rest follows") from exc
            # The feed's own topic is closed or deleted: reopen it, or make it again, and send there.
            target = await self._revive_topic(target, delivery.topic, exc)
            sent = await self._deliver(target, pieces, patient=False, moved_is_pending=True, start=start, on_piece=on_piece)
        ids = done + sent
        # The core logs every delivery at info with its message ids; this line adds the parts.
        self._log.debug(
            "telegram.sent delivery=%s post=%s target=%s messages=%s",
            delivery.id,
            delivery.post.ref,
            delivery.target,
            ",".join(ids),
        )
        topic_id = target.thread_id if delivery.topic else ""
        return Sent(message_ids=tuple(ids), thread_id=target.thread_id, topic_id=topic_id)

    async def _new_topic(self, target: ChatTarget, name: str) -> ChatTarget:
        """Create forum topic ``name`` in ``target``'s chat (createForumTopic); the target in it."""
        if self._app is None:
            raise Transient("telegram adapter is not started")
        chat_id: int | str = target.chat_id if target.chat_id.startswith("@") else int(target.chat_id)
        try:
            topic = await self._app.bot.create_forum_topic(chat_id, name[:TOPIC_NAME_LIMIT])
        except BadRequest as exc:
            # Not a forum, or the bot may not manage topics: this feed cannot go into a topic
            # here, but the room's other feeds are fine, so this is not the room's failure.
            raise Permanent(
                f"telegram:{chat_id}: cannot create the topic {name!r}: {exc.message}. Turn on Topics in the "
                "group's settings and let the bot manage topics, or relay without a topic (/filter <id> topic:off)"
            ) from exc
        except TelegramError as exc:
            raise to_bridge_error(exc, chat_id) from exc
        self._log.info("telegram.topic_created chat=%s topic=%s name=%r", chat_id, topic.message_thread_id, name)
        return ChatTarget(PLATFORM, target.chat_id, str(topic.message_thread_id))

    async def _revive_topic(self, target: ChatTarget, name: str, error: DestinationUnavailable) -> ChatTarget:
        """A send into ``target``'s topic failed with ``error``: reopen the topic when it is
        closed (reopenForumTopic), create it again when it is gone; re-raise anything else."""
        cause = error.__cause__
        text = cause.message.lower() if isinstance(cause, BadRequest) else ""
        if any(marker in text for marker in _TOPIC_GONE):
            self._log.info("telegram.topic_gone chat=%s topic=%s name=%r", target.chat_id, target.thread_id, name)
            return await self._new_topic(target, name)
        if not any(marker in text for marker in _TOPIC_CLOSED) or self._app is None:
            raise error
        chat_id: int | str = target.chat_id if target.chat_id.startswith("@") else int(target.chat_id)
        try:
            await self._app.bot.reopen_forum_topic(chat_id, int(target.thread_id))
        except BadRequest as exc:
            if "topic_not_modified" in exc.message.lower():
                return target  # reopened by someone meanwhile
            if any(marker in exc.message.lower() for marker in _TOPIC_GONE):
                return await self._new_topic(target, name)
            raise Permanent(f"telegram:{chat_id}: the topic {name!r} is closed and cannot be reopened: {exc.message}") from exc
        except TelegramError as exc:
            raise to_bridge_error(exc, chat_id) from exc
        self._log.info("telegram.topic_reopened chat=%s topic=%s name=%r", chat_id, target.thread_id, name)
        return target

    async def notify(self, target: ChatTarget, text: str, buttons: tuple[Button, ...] = ()) -> str:
        """A plain-text notice, escaped, with ``buttons`` as an inline keyboard on its last
        message (whose id is returned); same errors as ``send``."""
        pieces = plan_notice(text)
        if buttons:
            pieces[-1] = Piece(pieces[-1].text, keyboard=keyboard(buttons))
        ids = await self._deliver(target, pieces, patient=False)
        return ids[-1] if ids else ""

    async def edit(self, target: ChatTarget, message_id: str, text: str, buttons: tuple[Button, ...] = ()) -> None:
        """Replace a notice's text (escaped, clipped to one message) and buttons in place."""
        if self._outbox is None:
            raise Transient("telegram adapter is not started")
        chat_id: int | str = target.chat_id if target.chat_id.startswith("@") else int(target.chat_id)
        markup = plan_notice(text)[0].text  # the first message's worth: an edit cannot split
        try:
            await self._outbox.edit(chat_id, int(message_id), Piece(markup, keyboard=keyboard(buttons)))
        except TelegramError as exc:
            raise to_bridge_error(exc, chat_id) from exc

    async def _deliver(
        self,
        target: ChatTarget,
        pieces: list[Piece],
        patient: bool,
        moved_is_pending: bool = False,
        start: int = 0,
        on_piece: PieceRecorder | None = None,
    ) -> list[str]:
        """Send ``pieces[start:]`` to ``target`` and map failures. On a group → supergroup
        migration a delivery (``moved_is_pending``) raises DestinationMoved: the core moves the
        chat's rows to the new chat and sends it there (sending it here as well would show it
        twice). A notice is sent to the new chat after the chat is moved."""
        if self._outbox is None:
            raise Transient("telegram adapter is not started")
        # A public channel may be named by its @username, which the Bot API takes as chat_id.
        chat_id: int | str = target.chat_id if target.chat_id.startswith("@") else int(target.chat_id)
        thread = int(target.thread_id) if target.thread_id else None
        try:
            ids = await self._outbox.send(chat_id, pieces, thread_id=thread, patient=patient, start=start, on_piece=on_piece)
        except ChatMigrated as exc:
            # Telegram: a group upgraded to a supergroup answers with its new id.
            new_id = int(exc.new_chat_id)
            new_target = ChatTarget(PLATFORM, str(new_id), target.thread_id)
            self._log.info("telegram.chat_migrated old=%s new=%s", target, new_target)
            if moved_is_pending:
                raise DestinationMoved(target.room, new_target.room) from exc
            await self._host.chat_moved(target.room, new_target.room)
            try:
                ids = await self._outbox.send(new_id, pieces, thread_id=thread, patient=patient)
            except TelegramError as retry_exc:
                raise to_bridge_error(retry_exc, new_id) from retry_exc
        except TelegramError as exc:
            error = to_bridge_error(exc, chat_id)
            self._log.warning("telegram.send_failed target=%s error=%s: %s", target, type(error).__name__, error)
            raise error from exc
        return [str(i) for i in ids]
