"""The chat command layer: parses and validates what people type, checks who may do it,
does it, records outbound actions, and answers with plain text the chat adapters render.

Bad input never raises: it gets a one-line answer that says what is wrong and changes
nothing.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from bridge.commands.actions import ActionLog, Unfinished, author_request, post_request
from bridge.commands.approval import DRAFT_PROMPTS, Approvals, parse_draft_token
from bridge.commands.lookup import Lookup
from bridge.commands.lookup import parse_token as lookup_token
from bridge.delivery.buttons import parse_token
from bridge.delivery.quiet import QUIET_HELP, parse_quiet
from bridge.errors import AuthFailed, BridgeError, NotFound, Permanent, RateLimited, Transient
from bridge.intake.sanitize import well_formed
from bridge.matching.filters import DIGEST_MODES, FILTER_HELP, Filters, parse_rules
from bridge.model import (
    Action,
    Answer,
    ButtonAction,
    ChatEvent,
    ChatTarget,
    ChatUser,
    EventKind,
    Post,
    Posted,
    Source,
    SourceKind,
    SubscriptionSummary,
)
from bridge.protocols import NetworkAdapter
from bridge.registry import available
from bridge.storage.store import MANUAL_PAUSE, MessagePost, SubscriptionInfo

if TYPE_CHECKING:
    from bridge.core import Core

log = logging.getLogger("bridge.commands")

MAX_ARGS = 10_000
MAX_QUERY = 256
REPLY_LOOKUP_TRIES = 10
# ChatUser.platform of the command line: its answers name the destination instead of "this room".
TERMINAL = "cli"
# Networks people may name before they are configured here (a prefix that is not a handle).
KNOWN_NETWORKS = ("bluesky", "mastodon", "x")

HELP = """Commands:
/find <words> – find accounts by name or bio, e.g. /find CEO biotech; buttons follow them here
/who <handle> – an account in brief
/recent <handle> [n] – its last posts, without following
/search <query> [n] – the newest posts matching, once
/follow <handle> – relay an account's posts here (prefix bluesky: to pick the network)
/unfollow <handle or id> – stop
/watch <query> – relay posts matching a search, e.g. /watch "Home Depot"
/unwatch <query or id> – stop
/subs – this room's subscriptions, with ids and filters
/filter <id> include:a,b exclude:c replies:off reposts:off media:only – filter a subscription
/digest <id> off|hourly|daily – collect a subscription's posts into one message
/quiet 22:00-07:00 Europe/Berlin – hold posts at night and summarise them after (/quiet off)
/inbox on|off – relay the team account's mentions, replies and DMs here
/post <text> – post from the team account
/dm <handle> <text> – send a direct message from the team account
/status – health of this room's feeds
/pause, /resume – stop relaying into this room for now, and start again
/approval on|all|off – replies, posts and DMs (all: every action) wait for an approver's Approve
/audit [n] – who did what as the team account from this room
Reply to a relayed post to reply on the network; use its buttons to like, repost or follow.
Room admins manage feeds; only the bridge's senders and admins may speak as the team account."""


def _err(exc: Exception, network: str) -> str:
    """A user-facing line for an adapter failure."""
    net = network.capitalize()
    if isinstance(exc, RateLimited):
        return f"{net} is rate-limiting the team account; try again in {max(1, round(exc.retry_after))} s."
    if isinstance(exc, AuthFailed):
        return f"The team's {net} login was refused; an admin must fix the [{network}] credentials (run `bridge check`)."
    if isinstance(exc, NotFound | ValueError):
        return str(exc).rstrip(".") + "."
    if isinstance(exc, Permanent):
        return f"{net} refused it: {exc}"
    if isinstance(exc, Transient):
        return f"{net} did not answer ({exc}); try again in a minute."
    return f"Something went wrong talking to {net}; it is logged. Try again later."


def split_prefix(text: str, names: Iterable[str]) -> tuple[str | None, str]:
    """(account name, rest) when ``text`` starts with a configured account's name and a colon
    (``bluesky: hi``, ``bluesky:alice.bsky.social``), else (None, text). Only the names exactly
    as configured count: ``X: launch`` is text about X, not a post to an account named ``x``,
    and ``https://…`` is a link."""
    name, sep, rest = text.strip().partition(":")
    if sep and name in set(names):
        return name, rest.strip()
    return None, text


@dataclass(frozen=True, slots=True)
class _Words:
    """The same answer worded for where it is read: a chat room ("here", "/subs") or the
    terminal ("in telegram:-100…", "bridge subs --to …")."""

    terminal: bool
    target: ChatTarget

    @property
    def here(self) -> str:
        return f"in {self.target}" if self.terminal else "here"

    @property
    def room(self) -> str:
        return str(self.target) if self.terminal else "this room"

    @property
    def room_first(self) -> str:
        """``room`` at the start of a sentence."""
        return str(self.target) if self.terminal else "This room"

    def cmd(self, verb: str, args: str = "") -> str:
        tail = f" {args}" if args else ""
        return f"bridge {verb}{tail} --to {self.target}" if self.terminal else f"/{verb}{tail}"

    @property
    def lists_them(self) -> str:
        return f"`{self.cmd('subs')}` lists them" if self.terminal else "/subs lists them"

    def say(self, text: str) -> str:
        """A help text written for chat (``/quiet 22:00-07:00``), as a terminal user types it."""
        return re.sub(r"/(quiet|filter|digest|subs|inbox)\b", r"bridge \1", text) if self.terminal else text


def words_for(e: ChatEvent) -> _Words:
    return _Words(e.user.platform == TERMINAL, e.target)


class Commands:
    def __init__(self, bridge: Core) -> None:
        self.b = bridge
        self.actions = ActionLog(bridge.store, lambda: bridge.networks, self._notify)
        self.lookup = Lookup(self)
        self.approvals = Approvals(self)
        self._verbs: dict[str, Callable[[ChatEvent], Awaitable[Answer]]] = {
            "help": self.help,
            "start": self.help,
            "follow": self.follow,
            "unfollow": self.unfollow,
            "watch": self.watch,
            "unwatch": self.unwatch,
            "subs": self.subs,
            "filter": self.filter,
            "inbox": self.inbox,
            "digest": self.digest,
            "quiet": self.quiet,
            "post": self.post,
            "dm": self.dm,
            "status": self.status,
            "pause": self.pause,
            "resume": self.resume,
            "find": self.lookup.find,
            "who": self.lookup.who,
            "recent": self.lookup.recent,
            "search": self.lookup.search,
            "approval": self.approvals.command,
            "audit": self.audit,
        }

    # --- entry point ---------------------------------------------------------------------

    async def handle(self, event: ChatEvent) -> Answer:
        """Answer one chat event. Never raises."""
        event = well_formed(event)
        try:
            # Someone acting in a room paused by a failure shows the bot is back in it. Not a
            # room paused on purpose (only /resume ends that), nor an act from the terminal.
            terminal = event.user.platform == TERMINAL
            if not terminal and event.command.lower() != "resume" and await self.b.store.resume_destination(event.target):
                log.info("destination resumed destination=%s", event.target)
                self.b.refresh_routes_later()
            if event.kind is EventKind.COMMAND:
                verb = self._verbs.get(event.command.lower())
                if verb is None:
                    return Answer(f"Unknown command /{event.command[:32]}. Send /help for the list.", ok=False)
                if len(event.args) > MAX_ARGS:
                    return Answer(f"That is {len(event.args)} characters; commands take at most {MAX_ARGS}.", ok=False)
                return await verb(event)
            if event.kind is EventKind.REPLY:
                return await self.reply(event)
            if event.kind is EventKind.BUTTON:
                return await self.button(event)
            return Answer("", ok=False)
        except Exception:
            log.exception(
                "command failed kind=%s command=%s target=%s user=%s", event.kind, event.command, event.target, event.user.key
            )
            return Answer("Something went wrong; it is logged. Try again later.", ok=False)

    # --- permissions ---------------------------------------------------------------------

    def is_admin(self, user: ChatUser) -> bool:
        return user.is_room_admin or user.key in self.b.config.admins

    def may_send(self, user: ChatUser) -> bool:
        return user.key in self.b.config.admins or user.key in self.b.config.senders

    def _not_admin(self) -> Answer:
        return Answer("Only this room's admins (or the bridge's admins) may change its feeds.", ok=False)

    def _not_sender(self, user: ChatUser) -> Answer:
        return Answer(
            f"Only the bridge's senders may speak as the team account; ask an admin to add {user.key} to [bridge] senders.",
            ok=False,
        )

    # --- networks --------------------------------------------------------------------------

    def _pick_network(self, text: str, *, by_handle: bool) -> tuple[NetworkAdapter | None, str, str]:
        """(adapter, rest of text, error). A ``name:`` prefix picks the network; otherwise the
        handle's syntax does, or the only configured network."""
        nets = self.b.networks
        if not nets:
            return None, text, "No network is configured; add a [bluesky] section to the config."
        name, rest = split_prefix(text, nets)
        if name is not None:
            return nets[name], rest, ""
        named, sep, _ = text.strip().partition(":")
        # Only a network's name as it is written (lower case) is a prefix: "X: launch" is text.
        if sep and (named in KNOWN_NETWORKS or available().get(named) == "network"):
            return None, text, f"The {named} network is not configured; configured: {', '.join(nets)}."
        if sep and named in available():
            return None, text, f"{named} is a chat platform, not a network; networks configured: {', '.join(nets)}."
        if by_handle:
            owners = [n for n in nets.values() if n.owns_handle(text.strip())]
            if len(owners) == 1:
                return owners[0], text.strip(), ""
            if not owners and len(nets) > 1:
                return (
                    None,
                    text,
                    f"{text.strip()[:100]!r} is not a handle of {', '.join(nets)}; prefix it with the network, e.g. bluesky:alice.bsky.social",
                )
            if len(owners) > 1:
                return (
                    None,
                    text,
                    f"{text.strip()[:100]!r} could be on {', '.join(n.name for n in owners)}; prefix it, e.g. {owners[0].name}:{text.strip()[:40]}",
                )
        if len(nets) == 1:
            return next(iter(nets.values())), text.strip(), ""
        return None, text, f"Say which network: prefix with one of {', '.join(n + ':' for n in nets)}"

    # --- feeds -------------------------------------------------------------------------------

    async def follow(self, e: ChatEvent) -> Answer:
        if not self.is_admin(e.user):
            return self._not_admin()
        w = words_for(e)
        arg = e.args.strip()
        if not arg or len(arg.split()) != 1:
            return Answer(f"Usage: {w.cmd('follow', '<handle>')}, e.g. {w.cmd('follow', 'alice.bsky.social')}", ok=False)
        net, handle, err = self._pick_network(arg, by_handle=True)
        if net is None:
            return Answer(err, ok=False)
        if not net.owns_handle(handle):
            return Answer(f"{handle[:100]!r} is not a {net.name} handle.", ok=False)
        try:
            author = await net.resolve(handle)
        except (BridgeError, ValueError) as exc:
            return Answer(_err(exc, net.name), ok=False)
        sub, created = await self.b.subscribe(Source(net.name, SourceKind.FOLLOW, author.id), author.handle, e.target, e.user.key)
        if not created:
            return Answer(f"Already following @{author.handle} {w.here} (#{sub.id}).")
        return Answer(f"Following @{author.handle} on {net.name} {w.here} (#{sub.id}): new posts from now on.", public=True)

    async def watch(self, e: ChatEvent) -> Answer:
        if not self.is_admin(e.user):
            return self._not_admin()
        w = words_for(e)
        net, query, err = self._pick_network(e.args.strip(), by_handle=False)
        if net is None:
            return Answer(err, ok=False)
        query = " ".join(query.split())
        if not any(c.isalnum() for c in query):  # '""' or '#' would match nothing (or everything)
            usage = w.cmd("watch", "<query>")
            example = "bridge watch '\"Home Depot\"'" if w.terminal else '/watch "Home Depot"'
            said = f"{query[:40]!r} has no word to search for. " if query else ""
            return Answer(f"{said}Usage: {usage}, e.g. {example} or {w.cmd('watch', '#nrf2027')}", ok=False)
        if len(query) > MAX_QUERY:
            return Answer(f"The query is {len(query)} characters; at most {MAX_QUERY}.", ok=False)
        # A network may watch only some queries (Mastodon: a phrase needs full-text search).
        check_query = getattr(net, "check_query", None)
        refusal = check_query(query) if check_query is not None else None
        if refusal:
            return Answer(f"Cannot watch {query!r} on {net.name}: {refusal}.", ok=False)
        sub, created = await self.b.subscribe(Source(net.name, SourceKind.QUERY, query), query, e.target, e.user.key)
        if not created:
            return Answer(f"Already watching {query!r} {w.here} (#{sub.id}).")
        note = net.capabilities().search_note
        return Answer(
            f"Watching {query!r} on {net.name} {w.here} (#{sub.id}): matching posts from now on."
            + (f" Note: {note}." if note else ""),
            public=True,
        )

    async def _find(self, e: ChatEvent, kind: SourceKind) -> tuple[SubscriptionInfo | None, str]:
        w = words_for(e)
        arg = " ".join(e.args.split())
        if not arg:
            what = f"<{'handle' if kind is SourceKind.FOLLOW else 'query'} or id>"
            return None, f"Usage: {w.cmd(e.command, what)}; {w.lists_them}."
        subs = [s for s in await self.b.store.subscriptions(e.target) if s.source.kind is kind]
        wanted = arg.removeprefix("#")
        for s in subs:
            if wanted.isdigit() and s.id == int(wanted):
                return s, ""
        _, bare = split_prefix(arg, self.b.networks)
        bare = bare.strip().lstrip("@").casefold()
        for s in subs:
            if bare in (s.label.lstrip("@").casefold(), s.source.value.casefold()):
                return s, ""
        return (
            None,
            f"No {'follow' if kind is SourceKind.FOLLOW else 'watch'} matching {arg[:100]!r} in {w.room}; {w.lists_them}.",
        )

    async def unfollow(self, e: ChatEvent) -> Answer:
        return await self._stop(e, SourceKind.FOLLOW)

    async def unwatch(self, e: ChatEvent) -> Answer:
        return await self._stop(e, SourceKind.QUERY)

    async def _stop(self, e: ChatEvent, kind: SourceKind) -> Answer:
        if not self.is_admin(e.user):
            return self._not_admin()
        sub, err = await self._find(e, kind)
        if sub is None:
            return Answer(err, ok=False)
        await self.b.unsubscribe(sub.id)
        what = f"@{sub.label}" if kind is SourceKind.FOLLOW else repr(sub.label)
        done = "following" if kind is SourceKind.FOLLOW else "watching"
        return Answer(f"Stopped {done} {what} {words_for(e).here} (#{sub.id}).", public=True)

    async def subs(self, e: ChatEvent) -> Answer:
        w = words_for(e)
        subs = await self.b.store.subscriptions(e.target)
        if not subs:
            if w.terminal:
                return Answer(f"No subscriptions in {w.room}; add one with `{w.cmd('follow', '<handle>')}` or `{w.cmd('watch', '<query>')}`.")
            return Answer("No subscriptions in this room. Room admins can add one with /follow <handle> or /watch <query>.")
        lines = [f"Subscriptions in {w.room}:"]
        for s in subs:
            lines.append(_describe(s))
        return Answer("\n".join(lines))

    async def summaries(self, target: ChatTarget) -> tuple[SubscriptionSummary, ...]:
        """The room's subscriptions with the labels /subs shows (for a chat adapter's
        autocomplete)."""
        subs = await self.b.store.subscriptions(target)
        return tuple(SubscriptionSummary(s.id, _describe(s).removeprefix(f"#{s.id} ")) for s in subs)

    async def filter(self, e: ChatEvent) -> Answer:
        if not self.is_admin(e.user):
            return self._not_admin()
        w = words_for(e)
        first, _, rules = e.args.strip().partition(" ")
        first = first.removeprefix("#")
        if not first.isdigit():
            return Answer(f"Usage: {w.cmd('filter', '<id> <rules>')}; {FILTER_HELP}. {w.lists_them.capitalize()} with their ids.", ok=False)
        sub = await self.b.store.subscription(int(first))
        if sub is None or sub.destination != e.target or not sub.enabled:
            return Answer(f"No subscription #{first} in {w.room}; {w.lists_them}.", ok=False)
        try:
            new = parse_rules(sub.filters, rules)
        except ValueError as exc:
            return Answer(w.say(str(exc)), ok=False)
        await self.b.set_filters(sub, new)
        return Answer(f"#{sub.id} now: {new.describe() or 'everything'}.", public=True)

    async def digest(self, e: ChatEvent) -> Answer:
        if not self.is_admin(e.user):
            return self._not_admin()
        w = words_for(e)
        words = e.args.split()
        if len(words) != 2 or not words[0].removeprefix("#").isdigit() or words[1].lower() not in DIGEST_MODES:
            return Answer(f"Usage: {w.cmd('digest', '<id> off|hourly|daily')}; {w.lists_them} with their ids.", ok=False)
        sub = await self.b.store.subscription(int(words[0].removeprefix("#")))
        if sub is None or sub.destination != e.target or not sub.enabled:
            return Answer(f"No subscription #{words[0].removeprefix('#')} in {w.room}; {w.lists_them}.", ok=False)
        mode = words[1].lower()
        await self.b.set_filters(sub, replace(sub.filters, digest=mode))
        if mode == "off":
            return Answer(f"#{sub.id}: posts arrive one by one again.", public=True)
        zone = f"the time zone of the quiet hours of {w.room}" if w.terminal else "the room's /quiet time zone"
        when = "at the top of every hour" if mode == "hourly" else f"every day at 09:00 ({zone}, else UTC)"
        return Answer(f"#{sub.id}: posts are collected and sent as one message {when}.", public=True)

    async def quiet(self, e: ChatEvent) -> Answer:
        if not self.is_admin(e.user):
            return self._not_admin()
        w = words_for(e)
        if not e.args.strip():
            current = (await self.b.store.quiet_hours()).get(str(e.target))
            where = f" of {w.room}" if w.terminal else ""
            return Answer(
                f"Quiet hours{where}: {current.describe() if current else 'none'}. {w.say(QUIET_HELP[0].upper() + QUIET_HELP[1:])}."
            )
        try:
            hours = parse_quiet(e.args)
        except ValueError as exc:
            return Answer(w.say(str(exc)[0].upper() + str(exc)[1:]) + ".", ok=False)
        await self.b.set_quiet(e.target, hours)
        where = f" in {w.room}" if w.terminal else ""
        if hours is None:
            return Answer(f"Quiet hours off{where}: posts arrive as they come.", public=True)
        return Answer(
            f"Quiet hours {hours.describe()}{where}: posts are held then and summarised in one message after.", public=True
        )

    async def inbox(self, e: ChatEvent) -> Answer:
        if not self.is_admin(e.user):
            return self._not_admin()
        words = [w.rstrip(":") for w in e.args.split()]
        modes = [w.lower() for w in words if w.lower() in ("on", "off")]
        named = [w for w in words if w in self.b.networks]
        w = words_for(e)
        if len(modes) != 1 or len(modes) + len(named) != len(words):
            return Answer(
                f"Usage: {w.cmd('inbox', 'on')} or {w.cmd('inbox', 'off')} (optionally with the network, e.g. {w.cmd('inbox', 'bluesky on')})",
                ok=False,
            )
        if not self.b.networks:
            return Answer("No network is configured; add a [bluesky] section to the config.", ok=False)
        mode, nets = modes[0], named or list(self.b.networks)
        done = []
        for name in nets:
            source = Source(name, SourceKind.INBOX, "")
            if mode == "on":
                await self.b.subscribe(source, "inbox", e.target, e.user.key)
            else:
                for s in await self.b.store.subscriptions(e.target):
                    if s.source == source:
                        await self.b.unsubscribe(s.id)
            done.append(name)
        if mode == "on":
            return Answer(f"The team account's mentions, replies and DMs on {', '.join(done)} now arrive {w.here}.", public=True)
        return Answer(f"The inbox of {', '.join(done)} no longer arrives {w.here}.", public=True)

    async def status(self, e: ChatEvent) -> Answer:
        """This room's feeds, failing ones first, read as ``bridge status`` reads them (see
        bridge.ops.status); a platform this room depends on that is not working comes first."""
        from bridge.ops import status

        w = words_for(e)
        report = await status.gather(self.b.store, e.target)
        room = next((r for r in report.rooms if r.destination == e.target), None)
        paused = room.paused if room is not None else None
        head = [f"{w.room_first} is paused ({paused}); {self.comes_back(e.target, paused, w)}"] if paused else []
        feeds = room.feeds if room is not None else ()
        needs = {e.target.platform, *(f.subscription.source.network for f in feeds)}
        head += [f"{status.platform_line(name, h)}" for name, h in report.down.items() if name in needs]
        if not feeds:
            return Answer("\n".join([*head, f"No subscriptions in {w.room}."]))
        failing = f" ({room.failing} failing)" if room is not None and room.failing else ""
        lines = [*head, f"Feeds of {w.room}{failing}:"]
        for f in feeds:
            last = f.last_delivery.strftime("%Y-%m-%d %H:%M UTC") if f.last_delivery else "never"
            line = f"{'! ' if f.failing else ''}#{f.subscription.id} {f.what}: {f.sent} delivered, last {last}; {f.pending} waiting; {f.failed} failed"
            if f.last_error:
                line += f" (last failure: {f.last_error[:200]})"
            lines.append(line)
        lines += await network_status_lines(self.b.store, {f.subscription.source.network for f in feeds})
        return Answer("\n".join(lines))

    async def audit(self, e: ChatEvent) -> Answer:
        """``/audit [n]``: the room's last n audit records (actions, drafts, refusals)."""
        if not (self.is_admin(e.user) or self.approvals.is_approver(e.user)):
            return Answer("Only this room's admins and the bridge's approvers may read its audit trail.", ok=False)
        arg = e.args.strip() or "20"
        if not arg.isdigit() or not 1 <= int(arg) <= AUDIT_MAX:
            return Answer(f"Usage: /audit [n], n from 1 to {AUDIT_MAX} (default 20)", ok=False)
        rows = await self.b.store.actions(int(arg), room=e.target)
        if not rows:
            return Answer(f"No actions recorded {words_for(e).here} yet.")
        return Answer("\n".join(audit_line(r) for r in reversed(rows)))

    async def help(self, e: ChatEvent) -> Answer:
        """The commands, then where the person is: the destination string of this chat (for
        ``bridge … --to`` and ``to = […]``) and their own id (for ``[bridge] admins``)."""
        where = (
            f"This chat is {e.target}: use it as --to {e.target} on the command line, "
            f'or to = ["{e.target}"] in a [[subscription]].'
        )
        if e.target.thread_id:
            where += f" (The whole chat is {e.target.room}.)"
        who = f'You are {e.user.key}: an admin adds you with admins = ["{e.user.key}"] in [bridge].'
        return Answer(f"{HELP}\n\n{where}\n{who}")

    # --- pausing a room ------------------------------------------------------------------

    @staticmethod
    def comes_back(target: ChatTarget, reason: str, w: _Words | None = None) -> str:
        """How a paused room comes back, for /status and ``bridge status``."""
        by_hand = f"`bridge resume --to {target}`" if w is None or w.terminal else "/resume"
        if reason.startswith(MANUAL_PAUSE):
            return f"it resumes with {by_hand}"
        return f"it resumes when someone sends a command there (once the bot can post there again), or with {by_hand}"

    async def pause(self, e: ChatEvent) -> Answer:
        if not self.is_admin(e.user):
            return self._not_admin()
        w = words_for(e)
        paused = (await self.b.store.paused_destinations()).get(str(e.target))
        if paused is not None:
            return Answer(f"{w.room_first} is already paused ({paused}); {self.comes_back(e.target, paused, w)}.")
        who = "the command line" if w.terminal else (e.user.name or e.user.key)
        dropped = await self.b.pause(e.target, f"{MANUAL_PAUSE}{who[:100]}")
        waiting = f" {dropped} waiting posts are dropped." if dropped else ""
        return Answer(f"Paused: nothing is relayed {w.here} until {w.cmd('resume')}.{waiting}", public=True)

    async def resume(self, e: ChatEvent) -> Answer:
        if not self.is_admin(e.user):
            return self._not_admin()
        w = words_for(e)
        if not await self.b.store.resume_destination(e.target, paused_on_purpose=True):
            return Answer(f"{w.room_first} is not paused.")
        log.info("destination resumed destination=%s by=%s", e.target, e.user.key)
        await self.b.refresh_routes()
        return Answer(f"Resumed: new posts are relayed {w.here} again.", public=True)

    # --- speaking as the team account ------------------------------------------------------

    async def _notify(self, target: ChatTarget, text: str) -> None:
        chat = self.b.chats.get(target.platform)
        if chat is not None:
            await chat.notify(target, text)

    async def _refuse(self, e: ChatEvent, network: str, action: str, subject: str, error: str, text: str = "") -> None:
        await self.b.store.record_action(
            actor=e.user.key,
            actor_name=e.user.name[:255],
            room=str(e.target),
            network=network,
            action=action,
            subject=subject[:512],
            text=text,
            status="refused",
            error=error,
        )

    def _not_allowed(self, net: NetworkAdapter, action: Action, post: Post | None = None) -> str:
        """The network's reason for not allowing ``action`` (on ``post``) from the team account, or ""."""
        why = net.capabilities().refusal(action, post)
        return f"{net.name} does not allow it: {why}" if why else ""

    async def _act(
        self,
        e: ChatEvent,
        net: NetworkAdapter,
        action: Action,
        subject: str,
        text: str,
        request: dict[str, Any],
        done: Callable[[Posted], str],
        where: str = "",
        post: Post | None = None,
    ) -> Answer:
        """Check permission, the network's capabilities and the text; then write the action
        down, do it and record the outcome (bridge.commands.actions). In a room with approval
        on, the action becomes a draft instead (bridge.commands.approval); ``where`` is the
        link it would go to, shown on the draft."""
        if not self.may_send(e.user):
            await self._refuse(e, net.name, action.value, subject, "not a sender", text)
            log.warning("refused action=%s actor=%s room=%s reason=not-a-sender", action, e.user.key, e.target)
            return self._not_sender(e.user)
        refusal = self._not_allowed(net, action, post)
        if refusal:
            await self._refuse(e, net.name, action.value, subject, refusal, text)
            return Answer(f"Not done: {refusal}.", ok=False)
        if action in (Action.POST, Action.REPLY, Action.DM):
            problem = "the text is empty" if not text.strip() else net.check_text(text)
            if problem:
                await self._refuse(e, net.name, action.value, subject, problem, text)
                return Answer(f"Not sent: {problem}.", ok=False)
        if e.user.platform != TERMINAL and await self.approvals.needed(e.target, action):
            return await self.approvals.draft(e, net.name, action, subject, text, request, where)
        answer, posted = await self._run_action(
            net,
            action,
            text,
            request,
            actor=e.user.key,
            actor_name=e.user.name[:255],
            room=str(e.target),
            subject=subject[:512],
        )
        return answer if posted is None else Answer(done(posted))

    async def _run_action(
        self, net: NetworkAdapter, action: Action, text: str, request: dict[str, Any], **record: Any
    ) -> tuple[Answer, Posted | None]:
        """Write the action down, do it, record the outcome: (the answer on failure, None) or
        (an empty answer, what the network created)."""
        try:
            posted = await self.actions.run(net, action, text, request, **record)
        except Unfinished as exc:
            return (
                Answer(
                    _err(exc.cause, net.name).removesuffix(" try again in a minute.").rstrip(";.")
                    + ". The bridge tries again by itself (it cannot be done twice) and tells this room.",
                    ok=False,
                ),
                None,
            )
        except (BridgeError, ValueError) as exc:
            log.warning("action failed action=%s actor=%s network=%s reason=%r", action, record.get("actor"), net.name, str(exc))
            return Answer(_err(exc, net.name), ok=False), None
        return Answer(""), posted

    async def post(self, e: ChatEvent) -> Answer:
        net, text, err = self._pick_network(e.args, by_handle=False)
        if net is None:
            return Answer(err, ok=False)
        return await self._act(e, net, Action.POST, "", text.strip(), {}, lambda p: f"Posted: {p.url or p.ref.id}")

    async def dm(self, e: ChatEvent) -> Answer:
        handle, _, text = e.args.strip().partition(" ")
        if not handle or not text.strip():
            return Answer("Usage: /dm <handle> <text>", ok=False)
        net, handle, err = self._pick_network(handle, by_handle=True)
        if net is None:
            return Answer(err, ok=False)
        if not net.owns_handle(handle):
            return Answer(f"{handle[:100]!r} is not a {net.name} handle.", ok=False)
        return await self._act(
            e,
            net,
            Action.DM,
            handle,
            text.strip(),
            {"handle": handle},
            lambda p: f"Message sent to {handle}.",
            where=f"@{handle}",
        )

    async def reply(self, e: ChatEvent) -> Answer:
        found: MessagePost | None = None
        token = e.token
        if not token and e.reply_to_message:
            # A reply to an Edit or Reject prompt (Telegram ForceReply) names the draft.
            token = (
                await self.b.store.load_state(DRAFT_PROMPTS, f"{e.target.platform}:{e.target.chat_id}:{e.reply_to_message}") or ""
            )
        drafted = parse_draft_token(token)
        if drafted is not None:
            return await self.approvals.answered(e, *drafted)
        if e.token:
            parsed = parse_token(e.token)
            if parsed is None or parsed[0] is not ButtonAction.REPLY:
                return Answer("That reply prompt has expired; press Reply again.", ok=False)
            found = await self.b.store.delivery_post(parsed[1])
        elif e.reply_to_message:
            found = await self.b.store.message_post(e.target, e.reply_to_message)
            for _ in range(REPLY_LOOKUP_TRIES):
                if found is not None:
                    break
                # A reply can race the send it answers: the message is out (a person may answer
                # it at once) a moment before the ledger records which post it carries.
                await asyncio.sleep(0.1)
                found = await self.b.store.message_post(e.target, e.reply_to_message)
            if found is None:
                return Answer("")  # a reply to someone else's message: none of our business
        if found is None or found.destination.room != e.target.room:
            return Answer("That post is not from this chat.", ok=False)
        post = found.post
        net = self.b.networks.get(post.ref.network)
        if net is None:
            return Answer(f"The {post.ref.network} network is not configured any more.", ok=False)
        text = e.text.strip()
        what = Action.DM if post.conversation else Action.REPLY
        return await self._act(
            e,
            net,
            what,
            str(post.ref),
            text,
            post_request(post),
            lambda p: (
                f"Replied to @{post.author.handle}: {p.url or p.ref.id}"
                if what is Action.REPLY
                else f"Answered @{post.author.handle}."
            ),
            where=post.url or str(post.ref),
            post=post,
        )

    async def button(self, e: ChatEvent) -> Answer:
        if lookup_token(e.token) is not None:
            return await self.lookup.button(e, e.token)
        drafted = parse_draft_token(e.token)
        if drafted is not None:
            return await self.approvals.press(e, *drafted)
        parsed = parse_token(e.token)
        if parsed is None:
            return Answer("That button is not one of the bridge's.", ok=False)
        action, delivery_id = parsed
        found = await self.b.store.delivery_post(delivery_id)
        if found is None or found.destination.room != e.target.room:
            # A button pressed on a forwarded copy (or a forged token) tries to act as the team
            # account too: refused, and recorded like any other refusal.
            await self._refuse(
                e,
                found.post.ref.network if found else "",
                action.value,
                str(found.post.ref) if found else f"delivery {delivery_id}",
                "button from another chat",
            )
            log.warning("refused action=%s actor=%s room=%s reason=button-from-another-chat", action.value, e.user.key, e.target)
            return Answer("That button belongs to a message in another chat.", ok=False)
        post = found.post
        net = self.b.networks.get(post.ref.network)
        if net is None:
            return Answer(f"The {post.ref.network} network is not configured any more.", ok=False)
        if action is ButtonAction.REPLY:
            if not self.may_send(e.user):
                await self._refuse(e, net.name, "reply", str(post.ref), "not a sender")
                return self._not_sender(e.user)
            refusal = self._not_allowed(net, Action.DM if post.conversation else Action.REPLY, post)
            if refusal:
                return Answer(f"Not done: {refusal}.", ok=False)
            return Answer(f"Write your reply to @{post.author.handle}.", ask_text_for=e.token)
        calls: dict[ButtonAction, tuple[Action, dict[str, Any], str]] = {
            ButtonAction.LIKE: (Action.LIKE, post_request(post), f"Liked @{post.author.handle}'s post."),
            ButtonAction.REPOST: (Action.REPOST, post_request(post), f"Reposted @{post.author.handle}'s post."),
            ButtonAction.FOLLOW: (
                Action.FOLLOW,
                author_request(post.author),
                f"Now following @{post.author.handle} from the team account.",
            ),
        }
        if action not in calls:
            return Answer("That button does nothing.", ok=False)
        what, request, msg = calls[action]
        subject = post.author.id if action is ButtonAction.FOLLOW else str(post.ref)
        where = post.author.url if action is ButtonAction.FOLLOW else post.url
        return await self._act(e, net, what, subject, "", request, lambda _p: msg, where=where or subject, post=post)


AUDIT_MAX = 200


def audit_line(r: dict[str, Any]) -> str:
    """One audit record for people: when, what, who asked, who approved, the outcome, the link."""
    when = r["created_at"].strftime("%Y-%m-%d %H:%M:%S UTC")
    who = (r["actor_name"] and f"{r['actor_name']} ({r['actor']})") or r["actor"]
    line = f"{when} {r['action']} on {r['network'] or '?'} by {who}: {r['status']}"
    if r.get("approved_by"):
        line += f"{' by' if r['status'] == 'rejected' else ', approved by'} {r['approved_by_name'] or r['approved_by']}"
        if r["approved_by_name"]:
            line += f" ({r['approved_by']})"
    if r["result_url"]:
        line += f" {r['result_url']}"
    elif r["subject"]:
        line += f" [{r['subject'][:120]}]"
    if r["error"]:
        line += f" – {r['error'][:200]}"
    return line


async def network_status_lines(store: Any, networks: Iterable[str]) -> list[str]:
    """The one-line accounts networks keep under their state key ``status`` (X: the month's
    spend, forecast and cap), for /status and ``bridge status``."""
    lines = []
    for name in sorted(set(networks)):
        line = await store.load_state(name, "status")
        if line:
            lines.append(f"{name}: {line[:300]}")
    return lines


def _what(s: SubscriptionInfo) -> str:
    if s.source.kind is SourceKind.FOLLOW:
        return f"follow @{s.label} ({s.source.network})"
    if s.source.kind is SourceKind.QUERY:
        return f"watch {s.label!r} ({s.source.network})"
    return f"inbox ({s.source.network})"


def _describe(s: SubscriptionInfo) -> str:
    rules = s.filters.describe()
    return f"#{s.id} {_what(s)}" + (f" – {rules}" if rules else "")


__all__ = ["HELP", "Commands", "Filters", "Post"]
