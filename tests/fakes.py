"""Fake adapters at the adapter boundary, for tests of the core and of the other side.

``FakeNetwork`` is a network whose posts a test publishes by hand; ``FakeChat`` is a chat
whose people a test plays. Both honour the protocol contracts, so the core cannot tell
them from real adapters.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from bridge.configschema import Key
from bridge.errors import DestinationUnavailable, NotFound, Permanent, Transient
from bridge.model import (
    Action,
    Answer,
    Author,
    Batch,
    Button,
    Capabilities,
    ChatEvent,
    ChatTarget,
    ChatUser,
    Delivery,
    EventKind,
    Item,
    Post,
    Posted,
    Profile,
    ProfilePage,
    Ref,
    Sent,
    Source,
    SourceKind,
)
from bridge.protocols import Host, PartRecorder


class FakeNetwork:
    """Accounts are handles ending in ``.fake``; ``missing.fake`` does not exist."""

    kind: ClassVar[str] = "network"  # not registered under an entry point
    name: str = "fakenet"
    CONFIG: ClassVar[Mapping[str, Key]] = {
        "max_length": Key(int, 300, help="longest post allowed"),
        "token": Key(str, "", secret=True),
        "refuse": Key(dict, {}, help="actions this network refuses, with its reason"),
        "cost": Key(str, "", help="the price note of a look-up"),
    }

    def __init__(self, settings: Mapping[str, Any], host: Host) -> None:
        self.settings = settings
        self.host = host
        self.name = str(getattr(host, "name", "") or type(self).name)
        self.actions: list[tuple[Any, ...]] = []
        self.done_keys: dict[str, Posted] = {}  # what each action key created: one per key
        self._keys = itertools.count(1)
        self.published: list[Post] = []
        self.started = False
        self._ids = itertools.count(1)
        self.fail_next: list[Exception] = []
        self.lose_answers = 0  # the next actions are done, but their answer never arrives
        self.accounts: list[Profile] = []  # what find_accounts and profile know

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False

    async def check(self) -> str:
        return "ok: @team.fake"

    def owns_handle(self, handle: str) -> bool:
        return handle.lstrip("@").endswith(".fake") and " " not in handle and ":" not in handle

    async def resolve(self, handle: str) -> Author:
        handle = handle.lstrip("@")
        if not self.owns_handle(handle):
            raise ValueError(f"{handle!r} is not a fakenet handle")
        if handle.startswith("missing"):
            raise NotFound(f"no fakenet account @{handle}")
        return author(handle)

    async def recent(self, source: Source, limit: int) -> list[Post]:
        return [p for p in self.published if _wants(source, p)][-limit:]

    async def find_accounts(self, words: str, limit: int, cursor: str = "") -> ProfilePage:
        if not self.capabilities().allows(Action.FIND):
            raise Permanent(self.capabilities().refusal(Action.FIND))
        wanted = words.casefold().split()
        found = [
            p
            for p in self.accounts
            if all(w in f"{p.author.handle} {p.author.display_name} {p.bio}".casefold() for w in wanted)
        ]
        start = int(cursor or 0)
        page = tuple(found[start : start + limit])
        return ProfilePage(page, str(start + limit) if start + limit < len(found) else "")

    async def profile(self, handle: str) -> Profile:
        who = await self.resolve(handle)
        return next((p for p in self.accounts if p.author.id == who.id), Profile(who))

    async def search_posts(self, query: str, limit: int) -> list[Post]:
        if not self.capabilities().allows(Action.SEARCH):
            raise Permanent(self.capabilities().refusal(Action.SEARCH))
        return [p for p in self.published if query.casefold() in p.text.casefold()][-limit:]

    def lookup_cost(self, what: str, limit: int) -> str:
        return str(self.settings.get("cost", ""))

    def check_text(self, text: str) -> str | None:
        limit = self.settings.get("max_length", 300)
        if len(text) > limit:
            return f"the text is {len(text)} characters; fakenet allows {limit}"
        return None

    def capabilities(self) -> Capabilities:
        refused = tuple((Action(a), str(why)) for a, why in dict(self.settings.get("refuse") or {}).items())
        return Capabilities(refused=refused, text_limit=int(self.settings.get("max_length", 300)))

    def action_key(self) -> str:
        return f"k{next(self._keys)}-{id(self)}"

    async def _do(self, key: str, *action: Any) -> Posted:
        # A network that deduplicates on the key: a second call with one key creates nothing.
        if key in self.done_keys:
            return self.done_keys[key]
        if self.fail_next:
            raise self.fail_next.pop(0)
        self.actions.append(action)
        n = next(self._ids)
        posted = Posted(Ref(self.name, f"out{n}"), f"https://fake.example/out{n}")
        self.done_keys[key] = posted
        if self.lose_answers:
            self.lose_answers -= 1
            raise Transient("fakenet did not answer in time")
        return posted

    async def post(self, text: str, key: str) -> Posted:
        return await self._do(key, "post", text)

    async def reply(self, parent: Post, text: str, key: str) -> Posted:
        return await self._do(key, "reply", parent.ref.id, text)

    async def like(self, post: Post, key: str) -> Posted:
        return await self._do(key, "like", post.ref.id)

    async def repost(self, post: Post, key: str) -> Posted:
        return await self._do(key, "repost", post.ref.id)

    async def follow(self, who: Author, key: str) -> Posted:
        return await self._do(key, "follow", who.id)

    async def direct_message(self, handle: str, text: str, key: str) -> Posted:
        return await self._do(key, "dm", handle, text)

    # --- test controls -------------------------------------------------------------------

    def make_post(self, author_handle: str, text: str, **fields: Any) -> Post:
        n = next(self._ids)
        pid = fields.pop("id", f"p{n}")
        return Post(
            ref=Ref(self.name, pid),
            author=author(author_handle),
            text=text,
            created_at=fields.pop("created_at", datetime.now(UTC)),
            url=fields.pop("url", f"https://fake.example/{pid}"),
            **fields,
        )

    async def publish(self, author_handle: str, text: str, **fields: Any) -> Post:
        """Make a post and hand it to the core for every source that wants it."""
        post = self.make_post(author_handle, text, **fields)
        await self.deliver(post)
        return post

    async def deliver(self, *posts: Post, cursor: str | None = None) -> None:
        self.published.extend(posts)
        items = tuple(Item(s, p) for p in posts for s in self.host.sources() if _wants(s, p))
        await self.host.ingest(Batch(items, {"stream": cursor or posts[-1].ref.id}))


def author(handle: str) -> Author:
    handle = handle.lstrip("@")
    return Author(
        id=f"id:{handle}", handle=handle, display_name=handle.split(".")[0].title(), url=f"https://fake.example/@{handle}"
    )


def _wants(source: Source, post: Post) -> bool:
    if source.kind is SourceKind.FOLLOW:
        return source.value in (post.author.id, post.reposted_by.id if post.reposted_by else None)
    if source.kind is SourceKind.QUERY:
        return all(w in post.text.casefold() for w in source.value.casefold().split())
    return bool(post.reason)


class FakeChat:
    """Chats are any id; a test plays the people in them."""

    kind: ClassVar[str] = "chat"  # not registered under an entry point
    name: ClassVar[str] = "fakechat"
    CONFIG: ClassVar[Mapping[str, Key]] = {"token": Key(str, "", secret=True)}

    def __init__(self, settings: Mapping[str, Any], host: Host) -> None:
        self.host = host
        self.sent: list[Delivery] = []
        self.notices: list[tuple[ChatTarget, str]] = []
        self.shown: dict[str, tuple[ChatTarget, str, tuple[Button, ...]]] = {}  # notice id -> its current form
        self.edits: list[tuple[str, str]] = []
        self.messages: dict[str, Delivery] = {}
        self.fail: dict[str, list[Exception]] = {}  # chat id -> errors raised by the next sends
        self.send_delay = 0.0
        self.in_flight = 0
        self._ids = itertools.count(1000)
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def check(self) -> str:
        return "ok: @fakebot"

    @classmethod
    def parse_target(cls, text: str) -> ChatTarget:
        if not text.strip() or text.strip().startswith(("#", "@")):
            raise ValueError(f"{text.strip()!r} is not a {cls.name} chat: write its id")
        return ChatTarget.parse(f"{cls.name}:{text}")

    @classmethod
    def parse_user(cls, text: str) -> str:
        if text.strip().startswith("@"):
            raise ValueError(f"{cls.name}:{text.strip()} is a name, not a user id")
        return text.strip()

    async def send(self, delivery: Delivery, progress: PartRecorder | None = None) -> Sent:
        errors = self.fail.get(delivery.target.chat_id)
        if errors:
            raise errors.pop(0)
        self.in_flight += 1
        try:
            if self.send_delay:
                await asyncio.sleep(self.send_delay)
        finally:
            self.in_flight -= 1
        mid = str(next(self._ids))
        self.messages[mid] = delivery
        async with self._changed:
            self.sent.append(delivery)
            self._changed.notify_all()
        return Sent((mid,))

    async def notify(self, target: ChatTarget, text: str, buttons: tuple[Button, ...] = ()) -> str:
        self.notices.append((target, text))
        mid = str(next(self._ids))
        self.shown[mid] = (target, text, buttons)
        return mid

    async def edit(self, target: ChatTarget, message_id: str, text: str, buttons: tuple[Button, ...] = ()) -> None:
        if message_id not in self.shown:
            raise DestinationUnavailable(f"no message {message_id}")
        self.shown[message_id] = (target, text, buttons)
        self.edits.append((message_id, text))

    # --- test controls -------------------------------------------------------------------

    def sent_to(self, chat_id: str) -> list[str]:
        """Native post ids delivered to ``chat_id``, in order."""
        return [d.post.ref.id for d in self.sent if d.target.chat_id == chat_id]

    def message_id_of(self, post_id: str, chat_id: str) -> str:
        for mid, d in self.messages.items():
            if d.post.ref.id == post_id and d.target.chat_id == chat_id:
                return mid
        raise KeyError(post_id)

    async def wait_sent(self, n: int, timeout: float = 5.0) -> list[Delivery]:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.sent) >= n), timeout)
        return self.sent

    def target(self, chat_id: str, thread: str = "") -> ChatTarget:
        return ChatTarget(self.name, chat_id, thread)

    def user(self, user_id: str, admin: bool = False) -> ChatUser:
        return ChatUser(self.name, user_id, f"user {user_id}", is_room_admin=admin)

    async def command(self, chat_id: str, user_id: str, text: str, admin: bool = False) -> Answer:
        verb, _, args = text.strip().removeprefix("/").partition(" ")
        return await self.host.handle(
            ChatEvent(EventKind.COMMAND, self.target(chat_id), self.user(user_id, admin), command=verb, args=args)
        )

    async def reply(self, chat_id: str, user_id: str, message_id: str, text: str) -> Answer:
        return await self.host.handle(
            ChatEvent(EventKind.REPLY, self.target(chat_id), self.user(user_id), text=text, reply_to_message=message_id)
        )

    async def press(self, chat_id: str, user_id: str, token: str) -> Answer:
        return await self.host.handle(ChatEvent(EventKind.BUTTON, self.target(chat_id), self.user(user_id), token=token))

    async def answer_prompt(self, chat_id: str, user_id: str, token: str, text: str) -> Answer:
        return await self.host.handle(
            ChatEvent(EventKind.REPLY, self.target(chat_id), self.user(user_id), text=text, token=token)
        )
