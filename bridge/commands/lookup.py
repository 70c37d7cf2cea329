"""Looking before following: /find, /who, /recent and /search, and the buttons under their answers.

Anyone in a room may look; the buttons then act with the rights of who presses them: **Follow
here** and **Watch here** subscribe the room (room admins, exactly as /follow and /watch),
**Recent** shows an account's last posts (anyone), **Follow on <network>** makes the team account
follow (senders, as the Follow button under a relayed post), Next/Previous page (anyone).

An answer with buttons is kept in ``lookup_results`` (Store.save_lookup); a token is
``lk:<what>:<row id>:<index>``, so a press after a restart is answered from the stored row, and
only in the room the answer was sent to. The prefix keeps these tokens apart from the delivery
tokens of relayed posts (bridge.delivery.buttons), which never start with ``lk``.

/recent renders posts the way relays are rendered (the chat adapter's ``send``) but without the
ledger: nothing is recorded as delivered, and a later relay of the same post is not suppressed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge.errors import BridgeError, RateLimited
from bridge.model import (
    Action,
    Answer,
    Author,
    Button,
    ButtonAction,
    ChatEvent,
    Delivery,
    EventKind,
    Post,
    Profile,
    Source,
    SourceKind,
)
from bridge.protocols import NetworkAdapter

if TYPE_CHECKING:
    from bridge.commands import Commands

log = logging.getLogger("bridge.commands.lookup")

PREFIX = "lk"
# Accounts per /find page: three buttons each must fit Discord's 25 per message with the
# paging buttons, and a page stays readable in a chat.
PAGE_SIZE = 5
RECENT_DEFAULT = 5
RECENT_MAX = 20
SEARCH_DEFAULT = 5
SEARCH_MAX = 20
MAX_WORDS = 256
BIO_LINE = 120
# How long /recent may wait in all for the room's pace before it says the chat is busy.
RECENT_PATIENCE = 30.0

FIND_HELP = "/find <words> – find accounts by name or bio, e.g. /find CEO biotech (prefix bluesky: to pick the network)"
WHO_HELP = "/who <handle> – an account in brief"
RECENT_HELP = "/recent <handle> [n] – its last n posts (default 5, at most 20), without following"
SEARCH_HELP = "/search <query> [n] – the newest n posts matching, once (/watch relays them from now on)"


def make_token(what: str, lookup_id: int, index: int = 0) -> str:
    return f"{PREFIX}:{what}:{lookup_id}:{index}"


def parse_token(token: str) -> tuple[str, int, int] | None:
    """(what, lookup id, index) of a look-up button's token, or None when it is not one."""
    parts = token.split(":")
    if len(parts) != 4 or parts[0] != PREFIX or parts[1] not in ("here", "recent", "follow", "next", "prev"):
        return None
    if not all(p.isascii() and p.isdigit() and len(p) <= 18 for p in parts[2:]):
        return None
    return parts[1], int(parts[2]), int(parts[3])


def _profile_json(p: Profile) -> dict[str, Any]:
    a = p.author
    return {
        "id": a.id,
        "handle": a.handle,
        "display_name": a.display_name,
        "url": a.url,
        "bio": p.bio,
        "followers": p.followers,
        "following": p.following,
        "posts": p.posts,
        "followed_by_team": p.followed_by_team,
    }


def _profile_from_json(d: Any) -> Profile | None:
    if not isinstance(d, dict) or not isinstance(d.get("id"), str) or not d["id"]:
        return None

    def num(key: str) -> int | None:
        v = d.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    author = Author(d["id"], str(d.get("handle") or d["id"]), str(d.get("display_name") or ""), url=str(d.get("url") or ""))
    team = d.get("followed_by_team")
    return Profile(
        author,
        str(d.get("bio") or ""),
        num("followers"),
        num("following"),
        num("posts"),
        team if isinstance(team, bool) else None,
    )


def _count(n: int | None, one: str, many: str) -> str:
    return "" if n is None else f"{n:,} {one if n == 1 else many}"


def _first_line(text: str) -> str:
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    return line if len(line) <= BIO_LINE else line[: BIO_LINE - 1].rstrip() + "…"


def describe(p: Profile, n: int | None = None) -> str:
    """One account in brief: number, name and handle, first line of the bio, counts."""
    head = f"{n}. {p.author.label}" if n is not None else p.author.label
    facts = [
        x
        for x in (
            _count(p.followers, "follower", "followers"),
            _count(p.posts, "post", "posts"),
            "followed by the team" if p.followed_by_team else "",
        )
        if x
    ]
    bio = _first_line(p.bio)
    lines = [head + (f" – {bio}" if bio else "")]
    if facts:
        lines.append("   " + " · ".join(facts))
    return "\n".join(lines)


def _split_count(args: str, default: int, most: int) -> tuple[str, int, str]:
    """(text, n, error): a trailing number is how many."""
    words = args.split()
    n = default
    if len(words) > 1 and words[-1].isdigit():
        n = int(words[-1])
        words = words[:-1]
        if not 1 <= n <= most:
            return "", 0, f"Ask for 1 to {most} posts, not {n}."
    return " ".join(words), n, ""


def _take_network_option(args: str) -> tuple[str, str]:
    """(``--network NAME`` value or "", the rest): ``/find --network bluesky CEO`` is
    ``/find bluesky: CEO``."""
    words = args.split()
    for i, w in enumerate(words):
        if w.startswith("--network"):
            value = w.partition("=")[2]
            rest = words[:i] + words[i + 1 :]
            if not value and i + 1 < len(words):
                value = words[i + 1]
                rest = words[:i] + words[i + 2 :]
            return value, " ".join(rest)
    return "", args


@dataclass(frozen=True, slots=True)
class _Page:
    profiles: tuple[Profile, ...]
    cursor: str
    prev: tuple[str, ...]
    next: str


class Lookup:
    """The four look-up commands and their buttons, on the command layer ``c``."""

    def __init__(self, c: Commands) -> None:
        self.c = c

    # --- picking the network ---------------------------------------------------------------

    def _network(self, e: ChatEvent, text: str, *, by_handle: bool) -> tuple[NetworkAdapter | None, str, str]:
        option, rest = _take_network_option(text)
        if option:
            net = self.c.b.networks.get(option)
            if net is None:
                return None, rest, f"No network named {option[:40]!r}; configured: {', '.join(self.c.b.networks) or 'none'}."
            return net, rest.strip(), ""
        return self.c._pick_network(text, by_handle=by_handle)

    @staticmethod
    def _cost(net: NetworkAdapter, what: str, n: int) -> str:
        note = net.lookup_cost(what, n) if hasattr(net, "lookup_cost") else ""
        return f"\n(This look-up costs {note}.)" if note else ""

    def _refused(self, net: NetworkAdapter, action: Action) -> Answer | None:
        why = net.capabilities().refusal(action)
        return Answer(f"{net.name} cannot do that: {why}.", ok=False) if why else None

    # --- /find -----------------------------------------------------------------------------

    async def find(self, e: ChatEvent) -> Answer:
        from bridge.commands import _err, words_for

        w = words_for(e)
        net, words, err = self._network(e, e.args.strip(), by_handle=False)
        if net is None:
            return Answer(err if e.args.strip() else f"Usage: {FIND_HELP if not w.terminal else 'bridge find <words>'}", ok=False)
        words = " ".join(words.split())
        if not any(ch.isalnum() for ch in words):
            return Answer(f"Usage: {w.cmd('find', '<words>')}, e.g. {w.cmd('find', 'CEO biotech')}", ok=False)
        if len(words) > MAX_WORDS:
            return Answer(f"That is {len(words)} characters; at most {MAX_WORDS}.", ok=False)
        if (refused := self._refused(net, Action.FIND)) is not None:
            return refused
        try:
            found = await net.find_accounts(words, PAGE_SIZE, "")
        except (BridgeError, ValueError) as exc:
            return Answer(_err(exc, net.name), ok=False)
        return await self._find_answer(e, net, words, _Page(found.profiles[:PAGE_SIZE], "", (), found.next_cursor))

    async def _find_answer(self, e: ChatEvent, net: NetworkAdapter, words: str, page: _Page) -> Answer:
        from bridge.commands import words_for

        w = words_for(e)
        if not page.profiles:
            more = " on this page" if page.prev else ""
            return Answer(f"No {net.name} account matches {words!r}{more}.{self._cost(net, 'find', PAGE_SIZE)}")
        start = len(page.prev) * PAGE_SIZE + 1
        head = f"{net.name} accounts matching {words!r} ({start}-{start + len(page.profiles) - 1}):"
        lines = [head] + [describe(p, start + i) for i, p in enumerate(page.profiles)]
        payload = {
            "profiles": [_profile_json(p) for p in page.profiles],
            "cursor": page.cursor,
            "prev": list(page.prev),
            "next": page.next,
            "start": start,
        }
        if w.terminal:
            if page.next:
                lines.append("More accounts match; add words to narrow it, or page through them with /find in chat.")
            return Answer("\n".join(lines) + self._cost(net, "find", PAGE_SIZE))
        lookup_id = await self.c.b.store.save_lookup(e.target, net.name, "find", words, payload)
        buttons = self._account_buttons(net, lookup_id, page.profiles, start)
        if page.prev:
            buttons.append(Button(ButtonAction.PAGE, "‹ Previous", token=make_token("prev", lookup_id)))
        if page.next:
            buttons.append(Button(ButtonAction.PAGE, "Next ›", token=make_token("next", lookup_id)))
        return Answer("\n".join(lines) + self._cost(net, "find", PAGE_SIZE), public=True, buttons=tuple(buttons))

    def _account_buttons(self, net: NetworkAdapter, lookup_id: int, profiles: tuple[Profile, ...], start: int) -> list[Button]:
        follow_ok = net.capabilities().allows(Action.FOLLOW)
        out: list[Button] = []
        for i, _p in enumerate(profiles):
            n = f"{start + i} " if len(profiles) > 1 else ""
            out.append(Button(ButtonAction.HERE, f"{n}Follow here", token=make_token("here", lookup_id, i)))
            out.append(Button(ButtonAction.RECENT, f"{n}Recent", token=make_token("recent", lookup_id, i)))
            if follow_ok:
                label = f"{n}Follow on {net.name}"
                out.append(Button(ButtonAction.FOLLOW, label, token=make_token("follow", lookup_id, i)))
        return out

    # --- /who --------------------------------------------------------------------------------

    async def who(self, e: ChatEvent) -> Answer:
        from bridge.commands import _err, words_for

        w = words_for(e)
        arg = e.args.strip()
        if not arg or len(arg.split()) != 1:
            return Answer(f"Usage: {w.cmd('who', '<handle>')}, e.g. {w.cmd('who', 'alice.bsky.social')}", ok=False)
        net, handle, err = self._network(e, arg, by_handle=True)
        if net is None:
            return Answer(err, ok=False)
        if not net.owns_handle(handle):
            return Answer(f"{handle[:100]!r} is not a {net.name} handle.", ok=False)
        try:
            p = await net.profile(handle)
        except (BridgeError, ValueError) as exc:
            return Answer(_err(exc, net.name), ok=False)
        lines = [p.author.label]
        if p.bio.strip():
            lines.append(p.bio.strip()[:600])
        facts = [
            _count(p.followers, "follower", "followers"),
            _count(p.following, "following", "following"),
            _count(p.posts, "post", "posts"),
        ]
        if any(facts):
            lines.append(" · ".join(f for f in facts if f))
        if p.author.url:
            lines.append(p.author.url)
        if p.followed_by_team is not None:
            lines.append("The team account follows it." if p.followed_by_team else "The team account does not follow it.")
        rooms = sorted(
            {
                str(s.destination)
                for s in await self.c.b.store.subscriptions()
                if s.source == Source(net.name, SourceKind.FOLLOW, p.author.id)
            }
        )
        lines.append(f"Relayed to: {', '.join(rooms)}." if rooms else "No room relays it.")
        text = "\n".join(lines) + self._cost(net, "who", 1)
        if w.terminal:
            return Answer(text)
        lookup_id = await self.c.b.store.save_lookup(e.target, net.name, "who", handle, {"profiles": [_profile_json(p)]})
        return Answer(text, public=True, buttons=tuple(self._account_buttons(net, lookup_id, (p,), 1)))

    # --- /recent -----------------------------------------------------------------------------

    async def recent(self, e: ChatEvent) -> Answer:
        from bridge.commands import _err, words_for

        w = words_for(e)
        text, n, err = _split_count(e.args.strip(), RECENT_DEFAULT, RECENT_MAX)
        if err:
            return Answer(err, ok=False)
        if not text or len(text.split()) != 1:
            return Answer(f"Usage: {w.cmd('recent', '<handle> [n]')}, e.g. {w.cmd('recent', 'alice.bsky.social 5')}", ok=False)
        net, handle, err = self._network(e, text, by_handle=True)
        if net is None:
            return Answer(err, ok=False)
        if not net.owns_handle(handle):
            return Answer(f"{handle[:100]!r} is not a {net.name} handle.", ok=False)
        try:
            author = await net.resolve(handle)
        except (BridgeError, ValueError) as exc:
            return Answer(_err(exc, net.name), ok=False)
        return await self._show_recent(e, net, author, n)

    async def _show_recent(self, e: ChatEvent, net: NetworkAdapter, author: Author, n: int) -> Answer:
        from bridge.commands import _err, words_for

        w = words_for(e)
        try:
            posts = await net.recent(Source(net.name, SourceKind.FOLLOW, author.id), n)
        except (BridgeError, ValueError) as exc:
            return Answer(_err(exc, net.name), ok=False)
        posts = posts[-n:]
        cost = self._cost(net, "recent", n)
        if not posts:
            return Answer(f"@{author.handle} has no posts to show.{cost}")
        if w.terminal:
            return Answer(
                f"The last {len(posts)} posts of @{author.handle} on {net.name}, oldest first:\n" + _terminal_posts(posts) + cost
            )
        shown = await self._render(e, posts)
        follow = f"/follow {net.name}:{author.handle}"
        if shown < len(posts):
            return Answer(
                f"Showed {shown} of {len(posts)} posts of @{author.handle}; the chat is busy, try again in a minute.", ok=False
            )
        return Answer(f"Above: the last {shown} posts of @{author.handle} (not followed; {follow} relays new ones here).{cost}")

    async def _render(self, e: ChatEvent, posts: list[Post]) -> int:
        """Send ``posts`` into the room as relays look, outside the ledger. How many went out."""
        chat = self.c.b.chats.get(e.target.platform)
        if chat is None:
            return 0
        batch = uuid.uuid4().hex[:16]
        shown = 0
        waited = 0.0
        for i, post in enumerate(posts):
            buttons = (Button(ButtonAction.OPEN, "Open", url=post.url),) if post.url else ()
            # id 0: no ledger row; the key is this showing's own, so a platform's idempotency
            # (Discord nonce) never mistakes it for a relay of the same post.
            delivery = Delivery(0, f"look-{batch}-{i}", post, e.target, buttons)
            while True:
                try:
                    await chat.send(delivery)
                    break
                except RateLimited as exc:
                    # The room's pace (Telegram: 20 a minute in a group) may ask for a wait;
                    # wait it out within the budget, else say the chat is busy.
                    if waited + exc.retry_after > RECENT_PATIENCE:
                        return shown
                    waited += exc.retry_after
                    await asyncio.sleep(exc.retry_after)
                except BridgeError as exc:
                    log.warning("recent not shown target=%s post=%s reason=%r", e.target, post.ref, str(exc))
                    return shown
            shown += 1
        return shown

    # --- /search -----------------------------------------------------------------------------

    async def search(self, e: ChatEvent) -> Answer:
        from bridge.commands import MAX_QUERY, _err, words_for

        w = words_for(e)
        text, n, err = _split_count(e.args.strip(), SEARCH_DEFAULT, SEARCH_MAX)
        if err:
            return Answer(err, ok=False)
        net, query, err = self._network(e, text, by_handle=False)
        if net is None:
            return Answer(err, ok=False)
        query = " ".join(query.split())
        if not any(ch.isalnum() for ch in query):
            return Answer(f"Usage: {w.cmd('search', '<query> [n]')}, e.g. {w.cmd('search', 'CEO biotech 5')}", ok=False)
        if len(query) > MAX_QUERY:
            return Answer(f"The query is {len(query)} characters; at most {MAX_QUERY}.", ok=False)
        if (refused := self._refused(net, Action.SEARCH)) is not None:
            return refused
        try:
            posts = (await net.search_posts(query, n))[-n:]
        except (BridgeError, ValueError) as exc:
            return Answer(_err(exc, net.name), ok=False)
        cost = self._cost(net, "search", n)
        head = (
            f"The newest {len(posts)} posts matching {query!r} on {net.name}, oldest first:"
            if posts
            else f"No {net.name} post matches {query!r} now."
        )
        body = _terminal_posts(posts) if w.terminal else _compact_posts(posts)
        text = "\n".join(filter(None, [head, body])) + cost
        if w.terminal:
            return Answer(f"{text}\n`bridge watch {query!r} --to <chat>` relays new ones.")
        lookup_id = await self.c.b.store.save_lookup(e.target, net.name, "search", query, {"query": query})
        return Answer(text, public=True, buttons=(Button(ButtonAction.HERE, "Watch here", token=make_token("here", lookup_id)),))

    # --- buttons -----------------------------------------------------------------------------

    async def button(self, e: ChatEvent, token: str) -> Answer:
        parsed = parse_token(token)
        if parsed is None:
            return Answer("That button is not one of the bridge's.", ok=False)
        what, lookup_id, index = parsed
        found = await self.c.b.store.lookup(lookup_id)
        if found is None:
            return Answer("That answer is too old for its buttons (they work for 30 days); ask again.", ok=False)
        if found.room.room != e.target.room:
            log.warning("refused lookup button=%s actor=%s room=%s reason=another-chat", what, e.user.key, e.target)
            return Answer("That button belongs to a message in another chat.", ok=False)
        net = self.c.b.networks.get(found.network)
        if net is None:
            return Answer(f"The {found.network} network is not configured any more.", ok=False)
        if found.kind == "search":
            if what != "here":
                return Answer("That button does nothing.", ok=False)
            if not self.c.is_admin(e.user):
                return Answer(
                    "Only this room's admins (or the bridge's admins) may add a watch here; anyone may /search.", ok=False
                )
            return await self.c.watch(_as_command(e, "watch", f"{net.name}: {found.query}"))
        if what in ("next", "prev"):
            return await self._turn(e, net, found.query, found.page, forward=what == "next")
        profiles = [p for p in map(_profile_from_json, found.page.get("profiles") or ()) if p is not None]
        if not 0 <= index < len(profiles):
            return Answer("That button does nothing.", ok=False)
        author = profiles[index].author
        if what == "here":
            if not self.c.is_admin(e.user):
                return Answer(
                    f"Only this room's admins (or the bridge's admins) may follow @{author.handle} here; "
                    "Recent shows its posts to anyone.",
                    ok=False,
                )
            return await self._follow_here(e, net, author)
        if what == "recent":
            return await self._show_recent(e, net, author, RECENT_DEFAULT)
        # what == "follow": the team account follows, as the Follow button under a relay does.
        from bridge.commands.actions import author_request

        return await self.c._act(
            e,
            net,
            Action.FOLLOW,
            author.id,
            "",
            author_request(author),
            lambda _p: f"Now following @{author.handle} from the team account.",
        )

    async def _follow_here(self, e: ChatEvent, net: NetworkAdapter, author: Author) -> Answer:
        """Subscribe the room to ``author`` as /follow does (the account was found moments ago,
        by its stable id: no second look-up, and a renamed handle still works)."""
        from bridge.commands import words_for

        w = words_for(e)
        sub, created = await self.c.b.subscribe(
            Source(net.name, SourceKind.FOLLOW, author.id), author.handle, e.target, e.user.key
        )
        if not created:
            return Answer(f"Already following @{author.handle} {w.here} (#{sub.id}).")
        return Answer(f"Following @{author.handle} on {net.name} {w.here} (#{sub.id}): new posts from now on.", public=True)

    async def _turn(self, e: ChatEvent, net: NetworkAdapter, words: str, page: dict[str, Any], *, forward: bool) -> Answer:
        from bridge.commands import _err

        prev = [str(c) for c in page.get("prev") or () if isinstance(c, str)]
        if forward:
            cursor = page.get("next")
            if not isinstance(cursor, str) or not cursor:
                return Answer("That was the last page.", ok=False)
            prev.append(str(page.get("cursor") or ""))
        else:
            if not prev:
                return Answer("That is the first page.", ok=False)
            cursor = prev.pop()
        try:
            found = await net.find_accounts(words, PAGE_SIZE, cursor)
        except (BridgeError, ValueError) as exc:
            return Answer(_err(exc, net.name), ok=False)
        return await self._find_answer(e, net, words, _Page(found.profiles[:PAGE_SIZE], cursor, tuple(prev), found.next_cursor))


def _as_command(e: ChatEvent, verb: str, args: str) -> ChatEvent:
    return ChatEvent(EventKind.COMMAND, e.target, e.user, command=verb, args=args)


def _when(post: Post) -> str:
    return post.created_at.strftime("%Y-%m-%d %H:%M UTC")


def _oneline(text: str, limit: int) -> str:
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 1].rstrip() + "…"


def _compact_posts(posts: list[Post]) -> str:
    """One line of a post each, with its link, for a chat message."""
    return "\n".join(f"• @{p.author.handle}: {_oneline(p.text, 160) or '(no text)'}\n  {p.url}" for p in posts)


def _terminal_posts(posts: list[Post]) -> str:
    """Each post in full, for a terminal."""
    blocks = []
    for p in posts:
        head = f"{_when(p)}  {p.author.label}" + (f" (reposted by @{p.reposted_by.handle})" if p.reposted_by else "")
        media = f"\n  [{len(p.media)} attachment(s)]" if p.media else ""
        body = "\n".join("  " + line for line in (p.text.strip() or "(no text)").splitlines())
        blocks.append(f"{head}\n{body}{media}\n  {p.url}")
    return "\n\n".join(blocks)


HELP_LINES = (FIND_HELP, WHO_HELP, RECENT_HELP, SEARCH_HELP)
