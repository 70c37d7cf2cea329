"""The data that crosses the boundary between the core and the adapters.

Frozen dataclasses only: an adapter builds them from its platform's payloads, the
core routes them, and no platform-specific shape leaks through. Identifiers are
opaque strings: the core never assumes AT Protocol, Mastodon or X syntax.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Ref:
    """A thing on a platform: ``network`` (e.g. ``"bluesky"``) plus its native id."""

    network: str
    id: str

    def __str__(self) -> str:
        return f"{self.network}:{self.id}"


@dataclass(frozen=True, slots=True)
class Author:
    """An account on a network. ``id`` is stable (a DID on Bluesky); ``handle`` may change."""

    id: str
    handle: str
    display_name: str = ""
    avatar_url: str = ""
    url: str = ""

    @property
    def label(self) -> str:
        """``Display Name (@handle)``, or just the handle when there is no display name."""
        name = self.display_name.strip()
        return f"{name} (@{self.handle})" if name else f"@{self.handle}"


@dataclass(frozen=True, slots=True)
class Media:
    """One attachment. ``kind`` is ``"image"``, ``"video"`` or ``"gif"``."""

    kind: str
    url: str
    alt: str = ""
    thumb_url: str = ""


@dataclass(frozen=True, slots=True)
class Link:
    """A link over ``text[start:end]`` of a post (Python string indices, not bytes)."""

    start: int
    end: int
    url: str


@dataclass(frozen=True, slots=True)
class Profile:
    """An account as /find and /who show it."""

    author: Author  # id (stable), handle, display_name, url
    bio: str = ""  # plain text
    followers: int | None = None  # None: the network does not say
    following: int | None = None
    posts: int | None = None
    followed_by_team: bool | None = None  # whether the team account follows it; None: unknown


@dataclass(frozen=True, slots=True)
class ProfilePage:
    """One page of accounts found by ``find_accounts``."""

    profiles: tuple[Profile, ...]
    next_cursor: str = ""  # "" when there is no next page (opaque to the core)


@dataclass(frozen=True, slots=True)
class QuotedPost:
    """The post a post quotes, in brief."""

    author: Author
    text: str
    url: str


@dataclass(frozen=True, slots=True)
class Post:
    """A post (or, in the inbox, a direct message) as it arrives from a network.

    ``reply_to`` is set when the post replies to another; ``reposted_by`` when it
    reached us as a repost (``author`` is then the original author). ``reason`` says
    why an inbox item arrived (``"mention"``, ``"reply"``, ``"quote"``, ``"dm"``);
    ``conversation`` is the network's conversation id of a direct message, so that a
    reply in chat answers in the same conversation. ``native`` is the network's own reference
    for acting on the post, encoded by its adapter (opaque to the core, which only stores it and
    hands it back; empty when unknown, and the adapter then looks it up). ``spoiler`` is the
    author's content warning (Mastodon ``spoiler_text``): when set, chat renderers show it in
    clear and hide the text and media captions behind a spoiler.
    """

    ref: Ref
    author: Author
    text: str
    created_at: datetime
    url: str
    links: tuple[Link, ...] = ()
    media: tuple[Media, ...] = ()
    reply_to: Ref | None = None
    quote: QuotedPost | None = None
    reposted_by: Author | None = None
    reason: str = ""
    conversation: str = ""
    native: str = ""
    spoiler: str = ""

    @property
    def is_reply(self) -> bool:
        return self.reply_to is not None

    @property
    def is_repost(self) -> bool:
        return self.reposted_by is not None


class SourceKind(enum.StrEnum):
    FOLLOW = "follow"  # value: the account's stable id
    QUERY = "query"  # value: the search query
    INBOX = "inbox"  # value: "" (the team account's mentions, replies, quotes and DMs)


@dataclass(frozen=True, slots=True)
class Source:
    """Something a network adapter must watch, because at least one enabled subscription wants it."""

    network: str
    kind: SourceKind
    value: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass(frozen=True, slots=True)
class Item:
    """A post together with the source that produced it (the matcher routes on the source)."""

    source: Source
    post: Post


@dataclass(frozen=True, slots=True)
class Gap:
    """Posts of ``source`` the adapter could not fetch: those that reached the network after
    ``since`` and before ``until`` (the network's history or the adapter's request budget did
    not reach back that far). ``missing`` estimates how many (None when unknown); ``url`` is
    where people can read them on the network. The core tells each room of the source once.
    """

    source: Source
    since: datetime
    until: datetime
    missing: int | None = None
    url: str = ""


@dataclass(frozen=True, slots=True)
class Batch:
    """What a network adapter hands the core in one step: items, the cursors that follow them,
    and the gaps the cursors skip.

    The core commits the deliveries the items produce, the notices of the gaps and the cursors
    in one transaction, so a restart resumes exactly after the last committed batch and a gap
    is told once.
    """

    items: tuple[Item, ...] = ()
    cursors: dict[str, str] = field(default_factory=dict)
    gaps: tuple[Gap, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatTarget:
    """A place in a chat platform: ``telegram:-100123``, ``telegram:-100123/42`` (topic),
    ``discord:1122/3344`` (thread)."""

    platform: str
    chat_id: str
    thread_id: str = ""

    def __str__(self) -> str:
        tail = f"/{self.thread_id}" if self.thread_id else ""
        return f"{self.platform}:{self.chat_id}{tail}"

    @classmethod
    def parse(cls, text: str) -> ChatTarget:
        """Parse ``platform:chat_id[/thread_id]``; raise ValueError with a message for the user."""
        platform, sep, rest = text.strip().partition(":")
        if not sep or not platform or not rest:
            raise ValueError(f"{text!r} is not a chat destination; write it as platform:chat_id, e.g. telegram:-1001234567890")
        chat_id, _, thread_id = rest.partition("/")
        if not chat_id or not platform.isalnum():
            raise ValueError(f"{text!r} is not a chat destination; write it as platform:chat_id, e.g. telegram:-1001234567890")
        return cls(platform.lower(), chat_id, thread_id)

    @property
    def room(self) -> ChatTarget:
        """The chat this target is in, without the thread or topic."""
        return ChatTarget(self.platform, self.chat_id)


@dataclass(frozen=True, slots=True)
class ChatUser:
    """Who did something in chat. ``is_room_admin`` is the chat platform's own view
    (Telegram chat administrator or private-chat owner, Discord Manage Channels)."""

    platform: str
    id: str
    name: str = ""
    is_room_admin: bool = False

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.id}"


class EventKind(enum.StrEnum):
    COMMAND = "command"  # /verb args
    REPLY = "reply"  # a reply to a message the bridge sent, or text for a Reply button
    BUTTON = "button"  # a press of a button on a relayed message


@dataclass(frozen=True, slots=True)
class ChatEvent:
    """Something a person did in chat that the core must answer.

    * COMMAND: ``command`` (without slash, lower case) and ``args`` (raw text).
    * REPLY: ``text``, and either ``reply_to_message`` (the chat message id replied to)
      or ``token`` (from a Reply button's prompt or modal).
    * BUTTON: ``token``, exactly as the core put it in the button.
    """

    kind: EventKind
    target: ChatTarget
    user: ChatUser
    command: str = ""
    args: str = ""
    text: str = ""
    reply_to_message: str = ""
    token: str = ""


@dataclass(frozen=True, slots=True)
class Answer:
    """The core's answer to a ChatEvent; the chat adapter only renders it.

    ``text`` is plain text (the adapter escapes it). ``public`` answers are for the whole
    room (they changed its feeds); others may be shown only to the person who asked
    (Discord ephemeral). ``buttons`` go under the answer (Telegram inline keyboard, Discord
    components), in rows of at most three in the adapter's rendering; their tokens come back as
    BUTTON events like those under relayed posts. ``ask_text_for`` asks the adapter to prompt the person for text
    (Telegram ForceReply, Discord modal) and send it back as a REPLY event with that token.
    """

    text: str
    public: bool = False
    ok: bool = True
    ask_text_for: str = ""
    buttons: tuple[Button, ...] = ()


class Action(enum.StrEnum):
    """What the team account can be asked to do on a network from chat."""

    POST = "post"
    REPLY = "reply"
    DM = "dm"
    LIKE = "like"
    REPOST = "repost"
    FOLLOW = "follow"
    FIND = "find"  # look accounts up (/find, /who)
    SEARCH = "search"  # a one-off search of posts (/search)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a network lets the team account do, as its adapter declares it.

    ``refused`` maps each action the network does not allow to the network's reason, shown to
    the person who asks (X: "likes are Enterprise-only since April 2026"); every other action is
    allowed. ``text_limit`` is the longest post in ``text_unit`` (it may come from the server at
    start: Mastodon's per-instance length); 0 means the adapter did not say.

    ``per_post``, when set, refuses an action on one post only (X lets self-serve apps reply
    only to posts whose author mentioned or quoted the team account): it returns the network's
    reason for refusing ``action`` on ``post``, or "". It must not do I/O; it reads what the
    adapter put in the post (``Post.reason``, ``Post.native``).
    """

    refused: tuple[tuple[Action, str], ...] = ()
    text_limit: int = 0
    text_unit: str = "characters"
    per_post: Callable[[Action, Post], str] | None = None
    search_note: str = ""  # what people should know of the network's search, said when a watch is added

    def allows(self, action: Action, post: Post | None = None) -> bool:
        return not self.refusal(action, post)

    def refusal(self, action: Action, post: Post | None = None) -> str:
        """The network's reason for refusing ``action`` (on ``post``, when given), or "" when
        it is allowed."""
        why = next((why for a, why in self.refused if a is action), "")
        if not why and post is not None and self.per_post is not None:
            why = self.per_post(action, post)
        return why


class ButtonAction(enum.StrEnum):
    OPEN = "open"
    REPLY = "reply"
    LIKE = "like"
    REPOST = "repost"
    FOLLOW = "follow"
    # Under a /find, /who or /search answer (tokens of bridge.commands.lookup, not deliveries).
    HERE = "here"  # subscribe this room (Follow here, Watch here)
    RECENT = "recent"  # show an account's recent posts
    PAGE = "page"  # Next / Previous
    # Under a draft waiting for approval (bridge.commands.approval).
    APPROVE = "approve"
    EDIT = "edit"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Button:
    """A button under a relayed post. OPEN carries ``url``; the others carry ``token``, an
    opaque string of at most 64 bytes the adapter puts in callback_data/custom_id and hands
    back in a BUTTON event."""

    action: ButtonAction
    label: str
    token: str = ""
    url: str = ""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One post to send to one destination, from the ledger.

    ``key`` is stable for this (post, destination) across retries and restarts: adapters use it
    as an idempotency key where the platform offers one (Discord nonce; part ``i`` of a post
    sent as several messages derives its own from it).

    ``parts_done`` holds the chat message ids of the parts an earlier attempt already delivered
    (one tuple per part, in order; empty on a first attempt). The adapter renders the post the
    same way every time and sends only the parts after these.

    ``topic``, when set, asks for the post to go into the room's topic or thread of that name
    (a Telegram forum topic, a Discord forum post or thread), one per followed account:
    ``target.thread_id`` is its id from an earlier send ("" when there is none yet). The adapter
    creates it when there is none, reopens it when it was closed or archived and creates it again
    when it was deleted, and says which one it used in ``Sent.topic_id``.

    ``compact`` asks for the room's compact format: one line with the author, the first words
    and the link (and the buttons), instead of the full post.
    """

    id: int
    key: str
    post: Post
    target: ChatTarget
    buttons: tuple[Button, ...] = ()
    open_thread: bool = False
    parts_done: tuple[tuple[str, ...], ...] = ()
    topic: str = ""
    compact: bool = False


@dataclass(frozen=True, slots=True)
class Sent:
    """What a chat adapter reports after sending: the chat message ids of every part of the
    post, those of ``Delivery.parts_done`` included, the first one being the message that
    carries the post (replies to any of them reach the post). ``thread_id`` is a thread opened
    under the post (``Delivery.open_thread``); ``topic_id`` the topic or thread the post went into
    when ``Delivery.topic`` asked for one (the core keeps it for the next posts)."""

    message_ids: tuple[str, ...]
    thread_id: str = ""
    topic_id: str = ""


@dataclass(frozen=True, slots=True)
class Posted:
    """What a network adapter reports after an outbound action created something."""

    ref: Ref
    url: str = ""


@dataclass(frozen=True, slots=True)
class SubscriptionSummary:
    """One subscription of a room, as a chat adapter may list it (autocomplete): its id, and
    the label people read in /subs after the id (``"follow @alice.bsky.social (bluesky)"``)."""

    id: int
    label: str
