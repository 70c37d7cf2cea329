"""A wire-level emulator of the Mastodon client API (REST and the streaming websocket), on
127.0.0.1, written from the Mastodon documentation (docs.joinmastodon.org; the page behind each
route is named where it is served).

One emulator is one server (``domain``, the team account's server) and the part of the
fediverse it knows: local accounts (``acct`` = ``username``) and remote ones (``acct`` =
``username@other.example``). A remote account can be *unknown* to the server until a search
with ``resolve=true`` fetches it over WebFinger, as on a real server.

What it serves (with the semantics a client depends on):

* instance: ``GET /api/v1/instance`` and ``/api/v2/instance`` (``configuration.statuses
  .max_characters``, ``characters_reserved_per_url``, ``urls.streaming``);
* accounts: ``verify_credentials`` (and the app's, with the token's scopes), ``lookup``, ``GET /api/v1/accounts/:id``, the account's
  statuses (``since_id``/``min_id``/``max_id``/``limit``, ``exclude_replies``,
  ``exclude_reblogs``), ``follow``/``unfollow``; ``/api/v2/search`` (``resolve``, ``type``;
  full-text status search can be switched off per server, as on servers without Elasticsearch);
* timelines: home, hashtag, list; lists and their accounts (only followed accounts can be added);
* notifications (``types[]``/``exclude_types[]``), conversations;
* ``POST /api/v1/statuses`` with ``Idempotency-Key`` (the same key from the same account answers
  with the same status, and posts nothing new), length checked as the server counts it;
  favourite, reblog;
* every list answers with a ``Link`` header (``rel="next"`` with ``max_id``, ``rel="prev"``
  with ``min_id``), newest first;
* ``X-RateLimit-Limit/Remaining/Reset`` on every answer, a real budget per token (300 per 5
  minutes unless told otherwise), 429 past it;
* OAuth scopes per token: a token without the scope a route needs gets 403 ``This action is
  outside the authorized scopes``; no or a bad token on a route that needs one gets 401;
* faults a test injects: 5xx, a 429 storm, slow answers;
* the streaming API over websocket (``/api/v1/streaming``, ``stream=user|hashtag|direct|list``
  and ``{"type": "subscribe", ...}`` messages), events ``update``, ``notification``,
  ``conversation``, ``delete`` with the payload a JSON *string*, as Mastodon sends it; a test
  drops every stream with ``drop_streams()``.

Tests seed the world through Python (``add_account``, ``add_token``, ``post``, ``boost``,
``dm``, ``follow``) and read what the bridge did (``statuses``, ``requests``).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import regex
from aiohttp import WSMsgType, web

# docs: api/rate-limits.md — 300 requests per 5 minutes per account on /api/*.
DEFAULT_RATE_LIMIT = 300
DEFAULT_RATE_WINDOW = 300.0
# docs: methods/statuses.md — "Idempotency keys are stored for up to 1 hour".
IDEMPOTENCY_TTL = 3600.0
FIRST_ID = 110_000_000_000_000_000

SCOPE_ERROR = "This action is outside the authorized scopes"
TOKEN_ERROR = "The access token is invalid"
NOT_FOUND = "Record not found"


class ApiError(Exception):
    def __init__(self, status: int, error: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.headers = status, error, headers or {}


BAD_TOKEN = web.RequestKey("bad_token", ApiError)


@dataclass(eq=False)  # identity: entities are compared and hashed as themselves
class Account:
    id: str
    username: str
    domain: str  # the account's server
    display_name: str = ""
    note: str = ""
    bot: bool = False
    known: bool = True  # a remote account the server has not fetched yet is not known
    created_at: str = "2024-01-01T00:00:00.000Z"
    following: set[str] = field(default_factory=set)  # account ids
    # docs: entities/NotificationPolicy.md — for_private_mentions "filter": a private mention
    # from an account this one does not follow becomes a filtered notification.
    filter_private_mentions: bool = False

    def acct(self, local_domain: str) -> str:
        return self.username if self.domain == local_domain else f"{self.username}@{self.domain}"

    @property
    def url(self) -> str:
        return f"https://{self.domain}/@{self.username}"


@dataclass(eq=False)  # identity: entities are compared and hashed as themselves
class Status:
    id: str
    account: Account
    content: str  # HTML, as the server renders it
    text: str  # the source text (what a local post was written as)
    created_at: str
    visibility: str = "public"
    spoiler_text: str = ""
    sensitive: bool = False
    in_reply_to: Status | None = None
    reblog: Status | None = None
    mentions: list[Account] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    media: list[dict[str, Any]] = field(default_factory=list)
    favourited_by: set[str] = field(default_factory=set)
    reblogged_by: set[str] = field(default_factory=set)
    deleted: bool = False

    @property
    def url(self) -> str:
        return f"https://{self.account.domain}/@{self.account.username}/{self.id}"


@dataclass(eq=False)  # identity: entities are compared and hashed as themselves
class Token:
    token: str
    account: Account
    scopes: frozenset[str]
    window_start: float = 0.0
    used: int = 0


@dataclass(eq=False)  # identity: entities are compared and hashed as themselves
class Notification:
    id: str
    type: str
    account: Account  # who caused it
    recipient: Account
    status: Status | None
    created_at: str
    filtered: bool = False  # kept out of GET /api/v1/notifications and the stream


@dataclass(eq=False)  # identity: entities are compared and hashed as themselves
class Conversation:
    id: str
    members: frozenset[str]  # account ids, the owner included
    last_status: Status
    unread: bool = True


@dataclass(eq=False)  # identity: entities are compared and hashed as themselves
class MastoList:
    id: str
    owner: Account
    title: str
    account_ids: list[str] = field(default_factory=list)


@dataclass
class Fault:
    status: int = 0  # 0: no error, only the delay
    delay: float = 0.0
    path: str = ""  # only requests whose path contains this
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False)  # identity: entities are compared and hashed as themselves
class Stream:
    ws: web.WebSocketResponse
    token: Token
    subscriptions: set[tuple[str, ...]] = field(default_factory=set)  # ("user",) ("hashtag", "cats") ...
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # frames go out in the order events happened


class _Snowflakes:
    """Status ids as Mastodon makes them (lib/mastodon/snowflake.rb): the time in milliseconds
    shifted left 16 bits, then a sequence within the millisecond; increasing."""

    def __init__(self) -> None:
        self._last = FIRST_ID

    def __iter__(self) -> _Snowflakes:
        return self

    def __next__(self) -> int:
        self._last = max(self._last + 1, int(time.time() * 1000) << 16)
        return self._last

    def at(self, when: datetime) -> int:
        """The id of a status written at ``when`` (Mastodon::Snowflake.id_at: a remote status
        gets its id from its own creation time, so one that arrives late sorts below newer
        ones); a sequence keeps ids of one millisecond apart."""
        self._seq = getattr(self, "_seq", 0) + 1
        return (int(when.timestamp() * 1000) << 16) + (self._seq & 0xFFFF)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _id_int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


# What a status's source text links, as the server's formatter would (a simplification of
# Mastodon's TextFormatter: URLs, @user(@domain) mentions and #hashtags).
_URL = regex.compile(r"https?://[^\s<>\"]+[^\s<>\".,;:!?)\]']")
_MENTION = regex.compile(r"(?<![\w/])@([a-z0-9_]+(?:[a-z0-9_.-]+[a-z0-9_]+)?)(?:@([\w.-]+\w))?", regex.IGNORECASE)
# Mastodon's Tag::HASHTAG_RE: a tag has at least one letter ("#3" in "post #3" is no tag).
_TAG = regex.compile(r"(?<![\w/#])#(\w*[\p{L}_]\w*)")


def url_length(text: str, chars_per_url: int) -> int:
    """The length the server counts for ``text`` (docs: methods/instance.md, statuses
    ``characters_reserved_per_url``; Mastodon's StatusLengthValidator): grapheme clusters,
    each URL as ``chars_per_url``, each ``@user@domain`` mention as ``@user``."""
    counted = _URL.sub("x" * chars_per_url, text)
    counted = _MENTION.sub(lambda m: "@" + m.group(1), counted)
    return len(regex.findall(r"\X", counted))


class MastodonEmulator:
    """A Mastodon server on 127.0.0.1. ``start()`` returns its base URL (the API root)."""

    def __init__(
        self,
        domain: str = "team.example",
        *,
        max_characters: int = 500,
        characters_reserved_per_url: int = 23,
        full_text_search: bool = True,
        rate_limit: int = DEFAULT_RATE_LIMIT,
        rate_window: float = DEFAULT_RATE_WINDOW,
        version: str = "4.3.0",
    ) -> None:
        self.domain = domain
        self.max_characters = max_characters
        self.characters_reserved_per_url = characters_reserved_per_url
        self.full_text_search = full_text_search
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.version = version
        self.list_scopes = True  # /api/v1/apps/verify_credentials names the token's scopes (4.3+)
        self.accounts: dict[str, Account] = {}
        self.tokens: dict[str, Token] = {}
        self.statuses: dict[str, Status] = {}
        self.notifications: list[Notification] = []
        self.conversations: dict[str, Conversation] = {}  # per owner: key f"{owner}:{id}"
        self.lists: dict[str, MastoList] = {}
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path?query, headers)
        self.streams: list[Stream] = []
        self._idempotency: dict[tuple[str, str], tuple[float, str]] = {}
        self._ids = _Snowflakes()
        self._replies: Counter[str] = Counter()  # status id -> replies (counted once, not per rendering)
        self._small_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/api/v1/instance", self._instance_v1)
        r.add_get("/api/v2/instance", self._instance_v2)
        r.add_get("/api/v1/accounts/verify_credentials", self._verify_credentials)
        r.add_get("/api/v1/apps/verify_credentials", self._app_credentials)
        r.add_get("/api/v1/accounts/lookup", self._lookup)
        r.add_get("/api/v1/accounts/relationships", self._relationships)
        r.add_get("/api/v1/accounts/{id}", self._account)
        r.add_get("/api/v1/accounts/{id}/statuses", self._account_statuses)
        r.add_post("/api/v1/accounts/{id}/follow", self._follow)
        r.add_post("/api/v1/accounts/{id}/unfollow", self._unfollow)
        r.add_get("/api/v2/search", self._search)
        r.add_get("/api/v1/timelines/home", self._home)
        r.add_get("/api/v1/timelines/tag/{tag}", self._tag_timeline)
        r.add_get("/api/v1/timelines/list/{id}", self._list_timeline)
        r.add_get("/api/v1/lists", self._lists)
        r.add_post("/api/v1/lists", self._create_list)
        r.add_get("/api/v1/lists/{id}/accounts", self._list_accounts)
        r.add_post("/api/v1/lists/{id}/accounts", self._add_list_accounts)
        r.add_delete("/api/v1/lists/{id}/accounts", self._remove_list_accounts)
        r.add_get("/api/v1/notifications", self._notifications)
        r.add_get("/api/v1/conversations", self._conversations)
        r.add_post("/api/v1/statuses", self._create_status)
        r.add_get("/api/v1/statuses/{id}", self._get_status)
        r.add_delete("/api/v1/statuses/{id}", self._delete_status)
        r.add_post("/api/v1/statuses/{id}/favourite", self._favourite)
        r.add_post("/api/v1/statuses/{id}/reblog", self._reblog)
        r.add_get("/api/v1/streaming", self._streaming)
        r.add_get("/api/v1/streaming/", self._streaming)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        await self.drop_streams()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- seeding (tests) -----------------------------------------------------------------------

    def add_account(
        self, username: str, server: str = "", *, display_name: str = "", bot: bool = False, known: bool = True
    ) -> Account:
        """An account on ``server`` (default: this server). A remote account with
        ``known=False`` is found only by a search with ``resolve=true``."""
        account = Account(
            id=str(next(self._small_ids) + 100_000),
            username=username,
            domain=(server or self.domain).lower(),
            display_name=display_name,
            bot=bot,
            known=known,
        )
        self.accounts[account.id] = account
        return account

    def add_token(self, account: Account, scopes: Iterable[str] = ("read", "write", "follow"), token: str = "") -> str:
        """A bearer token of ``account`` with ``scopes`` (``read`` covers ``read:*``)."""
        value = token or f"tok-{account.username}-{next(self._small_ids)}"
        self.tokens[value] = Token(value, account, frozenset(scopes))
        return value

    def follow(self, follower: Account, followed: Account) -> None:
        follower.following.add(followed.id)
        followed.known = True

    def post(
        self,
        account: Account,
        text: str = "",
        *,
        html_content: str = "",
        spoiler_text: str = "",
        visibility: str = "public",
        in_reply_to: Status | None = None,
        media: Iterable[tuple[str, str, str]] = (),
        tags: Iterable[str] = (),
        notify: bool = True,
        created_at: datetime | None = None,
    ) -> Status:
        """A status by ``account``: ``text`` rendered to HTML as the server would (mentions,
        hashtags and links linked), or ``html_content`` as given (what a remote server sent).
        ``media`` is (type, url, description) per attachment; ``tags`` adds hashtags (those of
        ``text`` are found by themselves, those of ``html_content`` are not). Mentioned local accounts are
        notified, direct statuses open or extend a conversation, and streams hear of it.
        ``created_at`` in the past: a status from another server that federates only now (its id
        is made from that time)."""
        mentions = self._mentioned(text)
        status = Status(
            id=str(self._ids.at(created_at) if created_at else next(self._ids)),
            account=account,
            content=html_content or self._render(text, mentions),
            text=text,
            created_at=(
                created_at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z") if created_at else _now_iso()
            ),
            visibility=visibility,
            spoiler_text=spoiler_text,
            sensitive=bool(spoiler_text),
            in_reply_to=in_reply_to,
            mentions=mentions,
            tags=sorted({t.lower() for t in [*_TAG.findall(text), *tags]}),
            media=[
                {
                    "id": str(next(self._small_ids)),
                    "type": kind,
                    "url": url,
                    "preview_url": url,
                    "remote_url": None if account.domain == self.domain else url,
                    "description": description or None,
                    "blurhash": None,
                    "meta": {},
                }
                for kind, url, description in media
            ],
        )
        self.statuses[status.id] = status
        if in_reply_to is not None:
            self._replies[in_reply_to.id] += 1
        if notify:
            self._fan_out(status)
        return status

    def boost(self, account: Account, status: Status) -> Status:
        boost = Status(
            id=str(next(self._ids)),
            account=account,
            content="",
            text="",
            created_at=_now_iso(),
            visibility="public",
            reblog=status,
        )
        status.reblogged_by.add(account.id)
        self.statuses[boost.id] = boost
        self._fan_out(boost)
        return boost

    def dm(self, account: Account, to: Iterable[Account], text: str, in_reply_to: Status | None = None) -> Status:
        """A direct status from ``account`` mentioning ``to``."""
        recipients = list(to)
        prefix = " ".join("@" + r.acct(self.domain) for r in recipients)
        return self.post(account, f"{prefix} {text}", visibility="direct", in_reply_to=in_reply_to)

    def delete(self, status: Status) -> None:
        status.deleted = True
        self._publish((), None, "delete", status.id)

    def statuses_by(self, account: Account) -> list[Status]:
        return [s for s in self.statuses.values() if s.account is account and not s.deleted]

    def inject(self, *faults: Fault) -> None:
        """Answer the next requests (one per fault, in order) with these faults."""
        self.faults.extend(faults)

    def storm_429(self, count: int, reset_in: float = 1.0, path: str = "") -> None:
        """The next ``count`` requests get 429 with a reset ``reset_in`` seconds ahead."""
        for _ in range(count):
            self.faults.append(
                Fault(status=429, path=path, body={"error": "Too many requests"}, headers={"_reset_in": str(reset_in)})
            )

    async def drop_streams(self) -> None:
        """Close every streaming connection, as a restarting streaming server does."""
        streams, self.streams = self.streams, []
        for stream in streams:
            with contextlib.suppress(Exception):
                await stream.ws.close(code=1001, message=b"going away")

    # --- rendering ---------------------------------------------------------------------------

    def _mentioned(self, text: str) -> list[Account]:
        found: list[Account] = []
        for m in _MENTION.finditer(text):
            username, domain = m.group(1).lower(), (m.group(2) or self.domain).lower()
            for a in self.accounts.values():
                if a.username.lower() == username and a.domain == domain and a not in found:
                    found.append(a)
        return found

    def _render(self, text: str, mentions: list[Account]) -> str:
        """Source text → HTML as Mastodon's formatter writes it (paragraphs, <br>, h-card
        mentions, hashtag links, links with invisible/ellipsis spans)."""
        by_name = {(a.username.lower(), a.domain): a for a in mentions}
        out: list[str] = []
        pos = 0
        spans: list[tuple[int, int, str]] = []
        for m in _URL.finditer(text):
            spans.append((m.start(), m.end(), self._link_html(m.group(0))))
        for m in _MENTION.finditer(text):
            a = by_name.get((m.group(1).lower(), (m.group(2) or self.domain).lower()))
            if a is not None:
                spans.append(
                    (
                        m.start(),
                        m.end(),
                        f'<span class="h-card" translate="no"><a href="{html.escape(a.url)}" class="u-url mention">'
                        f"@<span>{html.escape(a.username)}</span></a></span>",
                    )
                )
        for m in _TAG.finditer(text):
            tag = m.group(1)
            spans.append(
                (
                    m.start(),
                    m.end(),
                    f'<a href="https://{self.domain}/tags/{html.escape(tag.lower())}" class="mention hashtag" rel="tag">'
                    f"#<span>{html.escape(tag)}</span></a>",
                )
            )
        spans.sort()
        for start, end, markup in spans:
            if start < pos:
                continue  # overlaps an earlier entity (a URL containing a #fragment)
            out.append(html.escape(text[pos:start]))
            out.append(markup)
            pos = end
        out.append(html.escape(text[pos:]))
        body = "".join(out)
        paragraphs = [p.replace("\n", "<br />") for p in body.split("\n\n")]
        return "".join(f"<p>{p}</p>" for p in paragraphs)

    @staticmethod
    def _link_html(url: str) -> str:
        # Mastodon hides the scheme and cuts the visible part at 30 characters, the rest in an
        # "invisible" span (the web app draws the ellipsis from the "ellipsis" class).
        scheme, _, rest = url.partition("://")
        prefix = html.escape(scheme + "://")
        if len(rest) > 30:
            shown = (
                f'<span class="ellipsis">{html.escape(rest[:30])}</span><span class="invisible">{html.escape(rest[30:])}</span>'
            )
        else:
            shown = f'<span>{html.escape(rest)}</span><span class="invisible"></span>'
        return (
            f'<a href="{html.escape(url)}" target="_blank" rel="nofollow noopener" translate="no">'
            f'<span class="invisible">{prefix}</span>{shown}</a>'
        )

    # --- entities (docs: entities/Account.md, Status.md, Notification.md, Conversation.md) ---

    def _account_json(self, a: Account) -> dict[str, Any]:
        return {
            "id": a.id,
            "username": a.username,
            "acct": a.acct(self.domain),
            "display_name": a.display_name,
            "locked": False,
            "bot": a.bot,
            "discoverable": True,
            "group": False,
            "created_at": a.created_at,
            "note": a.note,
            "url": a.url,
            "uri": f"https://{a.domain}/users/{a.username}",
            "avatar": f"https://{a.domain}/avatars/{a.username}.png",
            "avatar_static": f"https://{a.domain}/avatars/{a.username}.png",
            "header": "",
            "header_static": "",
            "followers_count": sum(1 for o in self.accounts.values() if a.id in o.following),
            "following_count": len(a.following),
            "statuses_count": sum(1 for s in self.statuses.values() if s.account is a),
            "last_status_at": None,
            "emojis": [],
            "fields": [],
        }

    def _status_json(self, s: Status, viewer: Account | None) -> dict[str, Any]:
        return {
            "id": s.id,
            "uri": f"https://{s.account.domain}/users/{s.account.username}/statuses/{s.id}",
            "url": None if s.reblog is not None else s.url,
            "created_at": s.created_at,
            "account": self._account_json(s.account),
            "content": s.content,
            "visibility": s.visibility,
            "sensitive": s.sensitive,
            "spoiler_text": s.spoiler_text,
            "media_attachments": s.media,
            "application": None,
            "mentions": [{"id": a.id, "username": a.username, "url": a.url, "acct": a.acct(self.domain)} for a in s.mentions],
            "tags": [{"name": t, "url": f"https://{self.domain}/tags/{t}"} for t in s.tags],
            "emojis": [],
            "reblogs_count": len(s.reblogged_by),
            "favourites_count": len(s.favourited_by),
            "replies_count": self._replies[s.id],
            "in_reply_to_id": s.in_reply_to.id if s.in_reply_to else None,
            "in_reply_to_account_id": s.in_reply_to.account.id if s.in_reply_to else None,
            "reblog": self._status_json(s.reblog, viewer) if s.reblog is not None else None,
            "poll": None,
            "card": None,
            "language": "en",
            "text": None,
            "edited_at": None,
            "favourited": viewer is not None and viewer.id in s.favourited_by,
            "reblogged": viewer is not None and viewer.id in s.reblogged_by,
            "muted": False,
            "bookmarked": False,
            "filtered": [],
        }

    def _notification_json(self, n: Notification) -> dict[str, Any]:
        return {
            "id": n.id,
            "type": n.type,
            "created_at": n.created_at,
            "account": self._account_json(n.account),
            "status": self._status_json(n.status, n.recipient) if n.status is not None else None,
        }

    def _conversation_json(self, c: Conversation, owner: Account) -> dict[str, Any]:
        return {
            "id": c.id,
            "unread": c.unread,
            "accounts": [self._account_json(self.accounts[i]) for i in sorted(c.members) if i != owner.id],
            "last_status": self._status_json(c.last_status, owner),
        }

    # --- fan-out: notifications, conversations, streams --------------------------------------

    def _visible_to(self, s: Status, viewer: Account) -> bool:
        if s.deleted:
            return False
        if s.visibility in ("public", "unlisted"):
            return True
        if s.account is viewer or viewer in s.mentions:
            return True
        return s.visibility == "private" and s.account.id in viewer.following

    def _in_home(self, s: Status, owner: Account) -> bool:
        if not self._visible_to(s, owner) or s.visibility == "direct":
            return False
        return s.account is owner or s.account.id in owner.following

    def _fan_out(self, s: Status) -> None:
        origin = s.reblog or s
        for owner in {t.account.id: t.account for t in self.tokens.values() if t.token}.values():
            if self._in_home(s, owner):
                self._publish(("user",), owner, "update", s)
                for lst in self.lists.values():
                    if lst.owner is owner and s.account.id in lst.account_ids:
                        self._publish(("list", lst.id), owner, "update", s)
        if s.reblog is None and s.visibility == "public":
            for tag in s.tags:
                self._publish(("hashtag", tag), None, "update", s)
        if s.reblog is not None:
            if s.reblog.account.domain == self.domain and s.reblog.account is not s.account:
                self._notify("reblog", s.account, s.reblog.account, s.reblog)
            return
        for mentioned in origin.mentions:
            if mentioned.domain == self.domain and mentioned is not s.account:
                self._notify("mention", s.account, mentioned, s)
        if s.visibility == "direct":
            members = frozenset({s.account.id, *(a.id for a in s.mentions)})
            for owner in {s.account, *s.mentions}:
                if owner.domain != self.domain:
                    continue
                convo = next(
                    (c for k, c in self.conversations.items() if k.startswith(f"{owner.id}:") and c.members == members), None
                )
                if convo is None:
                    convo = Conversation(id=str(next(self._small_ids)), members=members, last_status=s)
                    self.conversations[f"{owner.id}:{convo.id}"] = convo
                convo.last_status = s
                convo.unread = owner is not s.account
                self._publish(("direct",), owner, "conversation", self._conversation_json(convo, owner))

    def _notify(self, kind: str, by: Account, recipient: Account, status: Status | None) -> Notification:
        n = Notification(str(next(self._ids)), kind, by, recipient, status, _now_iso())
        n.filtered = (
            kind == "mention"
            and status is not None
            and status.visibility == "direct"
            and recipient.filter_private_mentions
            and by.id not in recipient.following
            and (status.in_reply_to is None or status.in_reply_to.account is not recipient)
        )
        self.notifications.append(n)
        if not n.filtered:
            self._publish(("user",), recipient, "notification", self._notification_json(n))
        return n

    def _publish(self, key: tuple[str, ...], owner: Account | None, event: str, payload: Status | dict[str, Any] | str) -> None:
        """Send ``event`` to every stream subscribed to ``key`` (of ``owner``'s tokens when
        given); a delete (a bare id, ``key`` empty) goes to every subscription."""
        for st in list(self.streams):
            if owner is not None and st.token.account is not owner:
                continue
            keys = sorted(st.subscriptions) if not key else [key] if key in st.subscriptions else []
            for k in keys:
                body = self._status_json(payload, st.token.account) if isinstance(payload, Status) else payload
                self._send(st, k, event, body)

    def _send(self, st: Stream, key: tuple[str, ...], event: str, payload: Any) -> None:
        # docs: methods/streaming.md — the payload of update/notification/conversation is the
        # entity "cast to a string"; a delete carries the status id. ``stream`` names the
        # subscription the event belongs to (["hashtag", "cats"], ["list", "12"], ["user"]).
        frame = {
            "stream": list(key),
            "event": event,
            "payload": payload if isinstance(payload, str) else json.dumps(payload),
        }
        if not st.ws.closed:
            task = asyncio.get_running_loop().create_task(_send_quietly(st, json.dumps(frame)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # --- the HTTP layer: auth, rate limits, faults -------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs, dict(request.headers)))
        token = self._token(request)
        headers: dict[str, str] = {}
        try:
            if request.path.startswith("/api/") and not request.path.startswith("/api/v1/streaming"):
                headers = self._rate(token, request)
                fault = self._next_fault(request.path)
                if fault is not None:
                    if fault.delay:
                        await asyncio.sleep(fault.delay)
                    if fault.status:
                        extra = dict(fault.headers)
                        reset_in = extra.pop("_reset_in", None)
                        if reset_in is not None:
                            extra.update(self._limit_headers(self.rate_limit, 0, time.time() + float(reset_in)))
                        raise ApiError(fault.status, (fault.body or {}).get("error", "Internal Server Error"), extra)
            response = await handler(request)
        except ApiError as exc:
            return web.json_response({"error": exc.error}, status=exc.status, headers={**headers, **exc.headers})
        for k, v in headers.items():
            if not response.prepared:
                response.headers[k] = v
        return response

    def _token(self, request: web.Request) -> Token | None:
        """The token the request carries (header, or ``access_token`` as the streaming API
        also takes it); an unknown one is remembered so that routes answer 401."""
        auth = request.headers.get("Authorization", "")
        value = auth[7:].strip() if auth.startswith("Bearer ") else request.query.get("access_token", "")
        if not value:
            return None
        token = self.tokens.get(value)
        if token is None:
            request[BAD_TOKEN] = ApiError(401, TOKEN_ERROR)
        return token

    def _rate(self, token: Token | None, request: web.Request) -> dict[str, str]:
        # docs: api/rate-limits.md — per account with a token (per IP without; here: one bucket).
        bucket = token or self._anon
        now = time.time()
        window = self.rate_window
        start = now - (now % window) if window >= 1 else now
        if bucket.window_start == 0.0 or now >= bucket.window_start + window:
            bucket.window_start, bucket.used = start if window >= 1 else now, 0
        reset = bucket.window_start + window
        bucket.used += 1
        remaining = max(0, self.rate_limit - bucket.used)
        headers = self._limit_headers(self.rate_limit, remaining, reset)
        if bucket.used > self.rate_limit:
            raise ApiError(429, "Too many requests", headers)
        return headers

    @staticmethod
    def _limit_headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
        # Mastodon sends the reset as an ISO 8601 timestamp (e.g. 2020-09-08T13:25:00.019685Z).
        stamp = datetime.fromtimestamp(reset, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": stamp}

    @property
    def _anon(self) -> Token:
        anon = self.tokens.get("")
        if anon is None:
            anon = Token("", Account("0", "anonymous", self.domain), frozenset())
            self.tokens[""] = anon
        return anon

    def _next_fault(self, path: str) -> Fault | None:
        for i, fault in enumerate(self.faults):
            if fault.path in path:
                return self.faults.pop(i)
        return None

    def _auth(self, request: web.Request, *scopes: str, required: bool = True) -> Account | None:
        """The caller; 401 without a valid token when ``required``; 403 when the token has
        none of ``scopes`` (``read`` covers ``read:statuses``, ``follow`` covers
        ``write:follows`` as in docs: api/oauth-scopes.md)."""
        bad = request.get(BAD_TOKEN)
        if bad is not None:
            raise bad
        token = self._token(request)
        if token is None or not token.token:
            if required:
                raise ApiError(401, TOKEN_ERROR)
            return None
        if scopes and not any(_covers(token.scopes, s) for s in scopes):
            raise ApiError(403, SCOPE_ERROR)
        return token.account

    # --- pagination --------------------------------------------------------------------------

    def _page(
        self, request: web.Request, items: list[tuple[int, Any]], default_limit: int = 20, max_limit: int = 40
    ) -> tuple[list[Any], dict[str, str]]:
        """``items`` as (sortable id, item), paginated as Mastodon does (docs:
        api/guidelines.md#pagination): newest first; ``max_id`` bounds from above,
        ``since_id`` from below, ``min_id`` gives the page just newer than it."""
        q = request.query
        limit = _id_int(q.get("limit")) or default_limit
        limit = max(1, min(limit, max_limit))
        max_id, since_id, min_id = _id_int(q.get("max_id")), _id_int(q.get("since_id")), _id_int(q.get("min_id"))
        items = sorted(items, key=lambda p: p[0], reverse=True)
        if max_id is not None:
            items = [p for p in items if p[0] < max_id]
        if since_id is not None:
            items = [p for p in items if p[0] > since_id]
        if min_id is not None:
            items = [p for p in items if p[0] > min_id][-limit:]
        else:
            items = items[:limit]
        headers: dict[str, str] = {}
        if items:
            base = f"{self.url}{request.path}"
            keep = [(k, v) for k, v in q.items() if k not in ("max_id", "since_id", "min_id")]
            nxt = urlencode([*keep, ("max_id", str(items[-1][0]))])
            prev = urlencode([*keep, ("min_id", str(items[0][0]))])
            headers["Link"] = f'<{base}?{nxt}>; rel="next", <{base}?{prev}>; rel="prev"'
        return [p[1] for p in items], headers

    def _statuses_page(self, request: web.Request, statuses: Iterable[Status], viewer: Account | None) -> web.Response:
        page, headers = self._page(request, [(int(s.id), s) for s in statuses])
        return web.json_response([self._status_json(s, viewer) for s in page], headers=headers)

    # --- routes ------------------------------------------------------------------------------

    def _instance_common(self) -> dict[str, Any]:
        return {
            "statuses": {
                "max_characters": self.max_characters,
                "max_media_attachments": 4,
                "characters_reserved_per_url": self.characters_reserved_per_url,
            },
        }

    async def _instance_v1(self, request: web.Request) -> web.Response:
        # docs: methods/instance.md#v1 — urls.streaming_api, configuration since 3.4.2.
        return web.json_response(
            {
                "uri": self.domain,
                "title": f"{self.domain} (emulated)",
                "version": self.version,
                "urls": {"streaming_api": self._streaming_url()},
                "configuration": self._instance_common(),
            }
        )

    async def _instance_v2(self, request: web.Request) -> web.Response:
        # docs: methods/instance.md#v2 — configuration.urls.streaming, configuration.statuses.
        return web.json_response(
            {
                "domain": self.domain,
                "title": f"{self.domain} (emulated)",
                "version": self.version,
                "source_url": "https://github.com/mastodon/mastodon",
                "configuration": {"urls": {"streaming": self._streaming_url()}, **self._instance_common()},
                "registrations": {"enabled": False},
            }
        )

    def _streaming_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)

    async def _verify_credentials(self, request: web.Request) -> web.Response:
        # docs: methods/accounts.md#verify_credentials — read:accounts (or profile).
        me = self._auth(request, "read:accounts", "profile")
        assert me is not None
        return web.json_response({**self._account_json(me), "source": {"privacy": "public", "note": ""}})

    async def _app_credentials(self, request: web.Request) -> web.Response:
        # docs: methods/apps.md#verify_credentials — any valid token; ``scopes`` since 4.3.0
        # (older versions, and ``list_scopes=False`` here, leave it out).
        self._auth(request)
        token = self._token(request)
        assert token is not None
        app: dict[str, Any] = {"id": "1", "name": "bridge", "website": None}
        if self.list_scopes:
            app["scopes"] = sorted(token.scopes)
        return web.json_response(app)

    def _find_account(self, acct: str) -> Account | None:
        acct = acct.strip().lstrip("@").lower()
        username, _, domain = acct.partition("@")
        domain = domain or self.domain
        for a in self.accounts.values():
            if a.username.lower() == username and a.domain == domain:
                return a
        return None

    async def _lookup(self, request: web.Request) -> web.Response:
        # docs: methods/accounts.md#lookup — a WebFinger address; no remote fetch: 404 for
        # an account this server does not know yet.
        self._auth(request, required=False)
        a = self._find_account(request.query.get("acct", ""))
        if a is None or not a.known:
            raise ApiError(404, NOT_FOUND)
        return web.json_response(self._account_json(a))

    def _account_or_404(self, account_id: str) -> Account:
        a = self.accounts.get(account_id)
        if a is None or not a.known:
            raise ApiError(404, NOT_FOUND)
        return a

    async def _account(self, request: web.Request) -> web.Response:
        self._auth(request, required=False)
        return web.json_response(self._account_json(self._account_or_404(request.match_info["id"])))

    async def _relationships(self, request: web.Request) -> web.Response:
        me = self._auth(request, "read:follows", "follow")
        assert me is not None
        ids = request.query.getall("id[]", []) or request.query.getall("id", [])
        return web.json_response([self._relationship(me, i) for i in ids if i in self.accounts])

    def _relationship(self, me: Account, other_id: str) -> dict[str, Any]:
        other = self.accounts[other_id]
        return {"id": other_id, "following": other_id in me.following, "followed_by": me.id in other.following}

    async def _account_statuses(self, request: web.Request) -> web.Response:
        # docs: methods/accounts.md#statuses — public (or read:statuses); exclude_replies,
        # exclude_reblogs; a reply to oneself is kept by exclude_replies (a thread).
        viewer = self._auth(request, "read:statuses", required=False)
        a = self._account_or_404(request.match_info["id"])
        q = request.query
        no_replies = q.get("exclude_replies") in ("true", "1")
        no_reblogs = q.get("exclude_reblogs") in ("true", "1")
        chosen = [
            s
            for s in self.statuses.values()
            if s.account is a
            and (
                (viewer is None and s.visibility in ("public", "unlisted"))
                or (viewer is not None and self._visible_to(s, viewer))
            )
            and s.visibility != "direct"
            and not (no_reblogs and s.reblog is not None)
            and not (no_replies and s.in_reply_to is not None and s.in_reply_to.account is not a)
        ]
        return self._statuses_page(request, chosen, viewer)

    async def _follow(self, request: web.Request) -> web.Response:
        # docs: methods/accounts.md#follow — follow or write:follows.
        me = self._auth(request, "write:follows", "follow")
        assert me is not None
        other = self._account_or_404(request.match_info["id"])
        me.following.add(other.id)
        return web.json_response(self._relationship(me, other.id))

    async def _unfollow(self, request: web.Request) -> web.Response:
        me = self._auth(request, "write:follows", "follow")
        assert me is not None
        other = self._account_or_404(request.match_info["id"])
        me.following.discard(other.id)
        for lst in self.lists.values():
            if lst.owner is me and other.id in lst.account_ids:
                lst.account_ids.remove(other.id)  # Mastodon drops list membership with the follow
        return web.json_response(self._relationship(me, other.id))

    async def _search(self, request: web.Request) -> web.Response:
        # docs: methods/search.md#v2 — resolve needs a user token (read:search).
        q = request.query
        resolve = q.get("resolve") in ("true", "1")
        viewer = self._auth(request, "read:search", required=resolve)
        query = q.get("q", "").strip()
        kind = q.get("type", "")
        limit = max(1, min(_id_int(q.get("limit")) or 20, 40))
        result: dict[str, list[Any]] = {"accounts": [], "statuses": [], "hashtags": []}
        if not query:
            return web.json_response(result)
        if kind in ("", "accounts"):
            wanted = query.lstrip("@").lower()
            if "@" in wanted:
                a = self._find_account(wanted)
                if a is not None and (a.known or resolve):
                    a.known = True  # fetched over WebFinger
                    result["accounts"].append(self._account_json(a))
            else:
                result["accounts"] = [
                    self._account_json(a)
                    for a in self.accounts.values()
                    if a.known and a.id != "0" and (wanted in a.username.lower() or wanted in a.display_name.lower())
                ][:limit]
        if kind in ("", "statuses") and self.full_text_search:
            words = query.lower().split()
            hits = [
                s
                for s in self.statuses.values()
                if s.reblog is None and s.visibility == "public" and not s.deleted and all(w in s.text.lower() for w in words)
            ]
            hits.sort(key=lambda s: int(s.id), reverse=True)
            max_id = _id_int(q.get("max_id"))
            min_id = _id_int(q.get("min_id"))
            if max_id is not None:
                hits = [s for s in hits if int(s.id) < max_id]
            if min_id is not None:
                hits = [s for s in hits if int(s.id) > min_id]
            result["statuses"] = [self._status_json(s, viewer) for s in hits[:limit]]
        if kind in ("", "hashtags"):
            tag = query.lstrip("#").lower()
            names = sorted({t for s in self.statuses.values() for t in s.tags if tag in t})
            result["hashtags"] = [{"name": n, "url": f"https://{self.domain}/tags/{n}", "history": []} for n in names[:limit]]
        return web.json_response(result)

    async def _home(self, request: web.Request) -> web.Response:
        # docs: methods/timelines.md#home — read:statuses.
        me = self._auth(request, "read:statuses")
        assert me is not None
        return self._statuses_page(request, [s for s in self.statuses.values() if self._in_home(s, me)], me)

    async def _tag_timeline(self, request: web.Request) -> web.Response:
        # docs: methods/timelines.md#tag — public statuses with the hashtag (case-insensitive).
        viewer = self._auth(request, "read:statuses", required=False)
        tag = request.match_info["tag"].lower()
        chosen = [
            s for s in self.statuses.values() if s.reblog is None and s.visibility == "public" and not s.deleted and tag in s.tags
        ]
        return self._statuses_page(request, chosen, viewer)

    def _own_list(self, me: Account, list_id: str) -> MastoList:
        lst = self.lists.get(list_id)
        if lst is None or lst.owner is not me:
            raise ApiError(404, NOT_FOUND)
        return lst

    async def _list_timeline(self, request: web.Request) -> web.Response:
        # docs: methods/timelines.md#list — read:lists; the home feed narrowed to the list.
        me = self._auth(request, "read:lists")
        assert me is not None
        lst = self._own_list(me, request.match_info["id"])
        chosen = [s for s in self.statuses.values() if s.account.id in lst.account_ids and self._in_home(s, me)]
        return self._statuses_page(request, chosen, me)

    def _list_json(self, lst: MastoList) -> dict[str, Any]:
        return {"id": lst.id, "title": lst.title, "replies_policy": "list", "exclusive": False}

    async def _lists(self, request: web.Request) -> web.Response:
        me = self._auth(request, "read:lists")
        return web.json_response([self._list_json(lst) for lst in self.lists.values() if lst.owner is me])

    async def _create_list(self, request: web.Request) -> web.Response:
        me = self._auth(request, "write:lists")
        assert me is not None
        params = await _params(request)
        title = str(params.get("title") or "").strip()
        if not title:
            raise ApiError(422, "Validation failed: Title can't be blank")
        lst = MastoList(str(next(self._small_ids)), me, title)
        self.lists[lst.id] = lst
        return web.json_response(self._list_json(lst))

    async def _list_accounts(self, request: web.Request) -> web.Response:
        me = self._auth(request, "read:lists")
        assert me is not None
        lst = self._own_list(me, request.match_info["id"])
        page, headers = self._page(request, [(int(i), self.accounts[i]) for i in lst.account_ids], 40, 80)
        return web.json_response([self._account_json(a) for a in page], headers=headers)

    async def _add_list_accounts(self, request: web.Request) -> web.Response:
        # docs: methods/lists.md#accounts-add — only accounts the owner follows can be added
        # (404 "Record not found" otherwise: the follow is looked up).
        me = self._auth(request, "write:lists")
        assert me is not None
        lst = self._own_list(me, request.match_info["id"])
        params = await _params(request)
        ids = params.get("account_ids[]") or params.get("account_ids") or []
        ids = ids if isinstance(ids, list) else [ids]
        for i in ids:
            if str(i) not in me.following:
                raise ApiError(404, NOT_FOUND)
        for i in ids:
            if str(i) in lst.account_ids:
                raise ApiError(422, "Validation failed: Account has already been taken")
            lst.account_ids.append(str(i))
        return web.json_response({})

    async def _remove_list_accounts(self, request: web.Request) -> web.Response:
        me = self._auth(request, "write:lists")
        assert me is not None
        lst = self._own_list(me, request.match_info["id"])
        params = await _params(request)
        ids = params.get("account_ids[]") or params.get("account_ids") or []
        for i in ids if isinstance(ids, list) else [ids]:
            if str(i) in lst.account_ids:
                lst.account_ids.remove(str(i))
        return web.json_response({})

    async def _notifications(self, request: web.Request) -> web.Response:
        # docs: methods/notifications.md#get — read:notifications; types[], exclude_types[];
        # filtered notifications only with include_filtered=true.
        me = self._auth(request, "read:notifications")
        assert me is not None
        include_filtered = request.query.get("include_filtered", "") == "true"
        types = set(request.query.getall("types[]", []))
        excluded = set(request.query.getall("exclude_types[]", []))
        chosen = [
            n
            for n in self.notifications
            if n.recipient is me
            and (not types or n.type in types)
            and n.type not in excluded
            and (include_filtered or not n.filtered)
            and (n.status is None or not n.status.deleted)
        ]
        page, headers = self._page(request, [(int(n.id), n) for n in chosen], 40, 80)
        return web.json_response([self._notification_json(n) for n in page], headers=headers)

    async def _conversations(self, request: web.Request) -> web.Response:
        # docs: methods/conversations.md#get — read:statuses; paginated by the last status.
        me = self._auth(request, "read:statuses")
        assert me is not None
        chosen = [(int(c.last_status.id), c) for k, c in self.conversations.items() if k.startswith(f"{me.id}:")]
        page, headers = self._page(request, chosen, 20, 40)
        return web.json_response([self._conversation_json(c, me) for c in page], headers=headers)

    async def _create_status(self, request: web.Request) -> web.Response:
        # docs: methods/statuses.md#create — write:statuses; Idempotency-Key "to prevent
        # duplicate submissions of the same status", kept for up to 1 hour.
        me = self._auth(request, "write:statuses")
        assert me is not None
        key = request.headers.get("Idempotency-Key", "")
        now = time.time()
        if key:
            seen = self._idempotency.get((me.id, key))
            if seen is not None and now - seen[0] < IDEMPOTENCY_TTL:
                return web.json_response(self._status_json(self.statuses[seen[1]], me))
        params = await _params(request)
        text = str(params.get("status") or "")
        spoiler = str(params.get("spoiler_text") or "")
        media_ids = params.get("media_ids[]") or params.get("media_ids") or []
        if not text.strip() and not media_ids:
            raise ApiError(422, "Validation failed: Text can't be blank")
        visibility = str(params.get("visibility") or "public")
        if visibility not in ("public", "unlisted", "private", "direct"):
            raise ApiError(422, f"Validation failed: Visibility is not included in the list ({visibility})")
        length = url_length(spoiler + text, self.characters_reserved_per_url)
        if length > self.max_characters:
            raise ApiError(422, f"Validation failed: Text character limit of {self.max_characters} exceeded")
        parent = None
        reply_to = params.get("in_reply_to_id")
        if reply_to:
            parent = self.statuses.get(str(reply_to))
            if parent is None or not self._visible_to(parent, me):
                raise ApiError(404, NOT_FOUND)
        status = self.post(me, text, spoiler_text=spoiler, visibility=visibility, in_reply_to=parent)
        if (
            parent is not None
            and parent.account is not me
            and parent.account.domain == self.domain
            and parent.account not in status.mentions
        ):
            self._notify("mention", me, parent.account, status)
        if key:
            self._idempotency[(me.id, key)] = (now, status.id)
        return web.json_response(self._status_json(status, me))

    def _status_or_404(self, request: web.Request, me: Account | None) -> Status:
        s = self.statuses.get(request.match_info["id"])
        if (
            s is None
            or s.deleted
            or (me is not None and not self._visible_to(s, me))
            or (me is None and s.visibility not in ("public", "unlisted"))
        ):
            raise ApiError(404, NOT_FOUND)
        return s

    async def _get_status(self, request: web.Request) -> web.Response:
        me = self._auth(request, "read:statuses", required=False)
        return web.json_response(self._status_json(self._status_or_404(request, me), me))

    async def _delete_status(self, request: web.Request) -> web.Response:
        me = self._auth(request, "write:statuses")
        s = self._status_or_404(request, me)
        if s.account is not me:
            raise ApiError(404, NOT_FOUND)
        self.delete(s)
        return web.json_response({**self._status_json(s, me), "text": s.text})

    async def _favourite(self, request: web.Request) -> web.Response:
        # docs: methods/statuses.md#favourite — write:favourites; favouriting twice is fine.
        me = self._auth(request, "write:favourites")
        assert me is not None
        s = self._status_or_404(request, me)
        if me.id not in s.favourited_by:
            s.favourited_by.add(me.id)
            if s.account.domain == self.domain and s.account is not me:
                self._notify("favourite", me, s.account, s)
        return web.json_response(self._status_json(s, me))

    async def _reblog(self, request: web.Request) -> web.Response:
        # docs: methods/statuses.md#boost — write:statuses; a second boost answers the first.
        me = self._auth(request, "write:statuses")
        assert me is not None
        s = self._status_or_404(request, me)
        target = s.reblog or s
        if target.visibility not in ("public", "unlisted"):
            raise ApiError(422, "Validation failed: Reblog of status is not permitted")
        existing = next((b for b in self.statuses.values() if b.reblog is target and b.account is me and not b.deleted), None)
        boost = existing or self.boost(me, target)
        return web.json_response(self._status_json(boost, me))

    # --- streaming (docs: methods/streaming.md#websocket) ------------------------------------

    async def _streaming(self, request: web.Request) -> web.StreamResponse:
        bad = request.get(BAD_TOKEN)
        token = self._token(request)
        if bad is not None or token is None:
            raise ApiError(401, TOKEN_ERROR)
        ws = web.WebSocketResponse(heartbeat=None)
        stream = Stream(ws, token)
        initial = self._stream_key(
            token, request.query.get("stream", ""), request.query.get("tag", ""), request.query.get("list", "")
        )
        if isinstance(initial, ApiError):
            raise initial
        await ws.prepare(request)
        if initial:
            stream.subscriptions.add(initial)
        self.streams.append(stream)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    command = json.loads(msg.data)
                except ValueError:
                    continue
                if not isinstance(command, dict):
                    continue
                key = self._stream_key(
                    token, str(command.get("stream", "")), str(command.get("tag", "")), str(command.get("list", ""))
                )
                if isinstance(key, ApiError):
                    await ws.send_str(json.dumps({"error": key.error, "status": key.status}))
                    continue
                if key and command.get("type") == "subscribe":
                    stream.subscriptions.add(key)
                elif key and command.get("type") == "unsubscribe":
                    stream.subscriptions.discard(key)
        finally:
            if stream in self.streams:
                self.streams.remove(stream)
        return ws

    def _stream_key(self, token: Token, name: str, tag: str, list_id: str) -> tuple[str, ...] | ApiError | None:
        """The subscription ``name`` asks for, or the error the server answers (the user and
        direct streams need read:statuses; user also read:notifications)."""
        if not name:
            return None
        needs = {"user": ("read:statuses", "read:notifications"), "direct": ("read:statuses",), "list": ("read:statuses",)}
        for scope in needs.get(name, ()):
            if not _covers(token.scopes, scope):
                return ApiError(403, SCOPE_ERROR)
        if name == "user" or name == "direct":
            return (name,)
        if name == "hashtag":
            return ("hashtag", tag.lower()) if tag else ApiError(400, "No tag for stream provided")
        if name == "list":
            lst = self.lists.get(list_id)
            return ("list", list_id) if lst is not None and lst.owner is token.account else ApiError(404, "No such list")
        return ApiError(400, "Unknown stream type")


def _covers(granted: frozenset[str], scope: str) -> bool:
    """docs: api/oauth-scopes.md — ``read`` grants every ``read:*``, ``write`` every
    ``write:*``; the legacy ``follow`` grants the follow and block writes and reads."""
    if scope in granted:
        return True
    top = scope.split(":", 1)[0]
    if ":" in scope and top in granted:
        return True
    return (
        scope in ("write:follows", "read:follows", "write:blocks", "read:blocks", "write:mutes", "read:mutes")
        and "follow" in granted
    )


async def _params(request: web.Request) -> dict[str, Any]:
    """Form or JSON parameters of a POST, as Rails reads either; ``name[]`` repeated → list."""
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "Error while parsing JSON") from None
        return body if isinstance(body, dict) else {}
    form = await request.post()
    out: dict[str, Any] = {}
    for k in form:
        values = form.getall(k)
        out[k] = [str(v) for v in values] if k.endswith("[]") else str(values[-1])
    for k, v in request.query.items():
        out.setdefault(k, v)
    return out


async def _send_quietly(stream: Stream, data: str) -> None:
    async with stream.lock:  # asyncio locks are FIFO: frames leave in the order they were made
        with contextlib.suppress(Exception):
            await stream.ws.send_str(data)


__all__ = ["ApiError", "Fault", "MastodonEmulator", "url_length"]
