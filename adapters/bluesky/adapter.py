"""The Bluesky network adapter: the team account's session, the feeds it watches, and the
actions the team takes from chat.

Tasks while running:
* the poll loop: every ``poll_interval`` seconds (and at once when subscriptions change) it
  polls searches, the inbox and, in poll mode, the timeline (feeds.py); a feed still walking
  back to its position after an outage or a burst gets its next turn at once, as far as the
  intake's request budget allows (bridge.intake.schedule);
* in firehose mode, the firehose reader (firehose.py) for followed accounts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

from adapters.bluesky.convert import (
    as_account,
    author_from,
    decode_native,
    dm_ref,
    parse_time,
    post_from_feed_item,
    post_from_view,
    post_url,
    profile_from,
    profile_url,
)
from adapters.bluesky.feeds import TIMELINE_KEY, Cursors, Feeds, Inbox, Search, Timeline, hydrate, iso
from adapters.bluesky.firehose import Firehose
from adapters.bluesky.http import Api, PacedRequest, RateState
from adapters.bluesky.richtext import build_facets, check_text
from adapters.bluesky.session import SessionClient, SessionKeeper
from adapters.bluesky.tid import Tids, tid_time
from bridge.configschema import Key
from bridge.errors import AuthFailed, BridgeError, NotFound, Permanent, RateLimited, Transient
from bridge.intake.paging import Turn
from bridge.intake.schedule import RequestBudget, Schedule
from bridge.model import Author, Batch, Capabilities, Post, Posted, Profile, ProfilePage, Ref, Source, SourceKind
from bridge.protocols import Host

# The longest search query sent (the AppView's q has no documented limit; ours is /watch's).
MAX_QUERY = 256
# Bluesky: a post is at most 300 graphemes (app.bsky.feed.post maxGraphemes).
TEXT_LIMIT = 300
# Chat messages a retried direct message looks through for its first try's copy.
DM_LOOKBACK = 50

# A handle is a domain name (at least two labels); a DID is did:plc:… or did:web:….
_HANDLE = re.compile(r"^(?=.{3,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", re.I)
_DID = re.compile(r"^did:(plc:[a-z2-7]{24}|web:[a-zA-Z0-9.%:-]+)$")

# Bluesky's PDS allows 3000 requests per 5 minutes per IP address; intake takes at most half,
# which leaves the rest for actions from chat, session refreshes and the firehose's lookups.
INTAKE_REQUESTS = 1500
INTAKE_WINDOW = 300.0


# A profile link as bsky.app shows it: https://bsky.app/profile/alice.bsky.social (or a DID).
_PROFILE_URL = re.compile(r"^(?:https?://)?(?:www\.)?bsky\.app/profile/([^/?#\s]+)/?(?:[?#].*)?$", re.I)


def normalize_handle(handle: str) -> str:
    h = handle.strip()
    if m := _PROFILE_URL.match(h):
        h = m.group(1)
    return h.removeprefix("@").rstrip(".").lower() if not h.startswith("did:") else h


class AccountHost:
    """The host as the feed readers see it: what they hand over is renamed from the network
    type the converters use (``bluesky``) to this account's name (``bluesky_sales``)."""

    def __init__(self, host: Host, account: str) -> None:
        self._host, self._account = host, account

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)

    async def ingest(self, batch: Batch) -> None:
        items = tuple(replace(i, post=as_account(i.post, self._account)) for i in batch.items)
        await self._host.ingest(replace(batch, items=items))


class BlueskyAdapter:
    name: str = "bluesky"  # the account's name: the host's, when it says (a [bluesky_sales] section)
    CONFIG: ClassVar[Mapping[str, Key]] = {
        "service": Key(str, "https://bsky.social", help="the account's PDS (or https://bsky.social)"),
        "identifier": Key(str, required=True, help="the team account's handle, e.g. acme.bsky.social"),
        "password": Key(
            str, required=True, secret=True, help="an app password (Settings → Privacy and security → App passwords)"
        ),
        "realtime": Key(str, "poll", choices=("poll", "firehose"), help="how followed accounts are watched"),
        "poll_interval": Key((int, float), 30, min=1, help="seconds between polls (searches and the inbox poll in both modes)"),
        "catch_up": Key(
            int,
            5000,
            min=100,
            help="posts read back per feed after an outage or a burst; beyond them the rooms are told what they missed",
        ),
        "firehose_url": Key(str, "", help="subscribeRepos server; empty: the public relay wss://bsky.network"),
        "chat_service": Key(
            str,
            "",
            help="chat API base URL; empty: through the PDS with the atproto-proxy header (tests point it at an emulator)",
        ),
    }

    def __init__(self, settings: Mapping[str, Any], host: Host) -> None:
        self.settings = {k: settings.get(k, spec.default) for k, spec in self.CONFIG.items()}
        self.host = host
        self.name = str(getattr(host, "name", "") or type(self).name)
        self.log: logging.Logger = getattr(host, "log", None) or logging.getLogger("bridge.adapters.bluesky")
        self.tids = Tids()
        self.service = str(self.settings["service"]).rstrip("/")
        self.realtime = str(self.settings["realtime"])
        self.poll_interval = float(self.settings["poll_interval"])
        self.chat_service = str(self.settings["chat_service"]).rstrip("/")
        self.rate = RateState()
        self.client = SessionClient(self.service, request=PacedRequest(rate=self.rate))
        self.session = SessionKeeper(
            self.client,
            str(self.settings["identifier"]).strip().removeprefix("@"),
            str(self.settings["password"]),
            load=lambda: host.load_state("session"),
            save=lambda value: host.save_state("session", value),
            replace=lambda old, new: host.replace_state("session", old, new),
        )
        self.api = Api(
            self.client, self.session.ensure, self.session.reauth, chat_base=self.chat_service, count=host.count_request
        )
        self.cursors = Cursors(AccountHost(host, self.name))
        self.budget = RequestBudget(INTAKE_REQUESTS, INTAKE_WINDOW)
        self.schedule = Schedule(self.poll_interval)
        feeds = Feeds(self.cursors, self.budget, int(self.settings["catch_up"]))
        self.timeline = Timeline(self.api, host, feeds, lambda: self.session.did)
        self.search = Search(self.api, feeds)
        self.inbox = Inbox(self.api, feeds, lambda: self.session.did, self.chat)
        self._follow_sources: dict[str, Source] = {}
        self.firehose = Firehose(
            str(self.settings["firehose_url"]),
            self.api,
            self.cursors,
            lambda: self._follow_sources,
            self._blob_url,
            lag=lambda seconds: host.stream_lag("firehose", seconds),
        )
        self._tasks: list[asyncio.Task[Any]] = []
        self._wake = asyncio.Event()
        self._poll_lock = asyncio.Lock()
        self.polls = 0  # completed poll cycles, for tests and status
        self._down = False  # the login was refused and the core was told

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Verify the session (restoring the saved one; logging in only without one), then start
        the poll loop and, in firehose mode, the firehose reader."""
        self.client.request.reopen()
        try:
            await self._verify()
        except Transient as exc:
            raise Transient(f"cannot reach Bluesky at {self.service}: {exc}") from exc
        self._tasks.append(asyncio.create_task(self._watch_sources(), name="bluesky-sources"))
        self._tasks.append(asyncio.create_task(self.host.listen("poll", self._poll_loop), name="bluesky-poll"))
        if self.realtime == "firehose":
            self._tasks.append(asyncio.create_task(self.host.listen("firehose", self._firehose_loop), name="bluesky-firehose"))
        self.log.info("bluesky started account=@%s realtime=%s", self.session.handle, self.realtime)

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.client.request.close()

    async def check(self) -> str:
        try:
            await self._verify()
        except Transient as exc:
            raise Transient(f"cannot reach Bluesky at {self.service}: {exc}") from exc
        return f"ok: @{self.session.handle} on {self.service}"

    async def _verify(self) -> None:
        """One cheap authenticated call (getSession): restores the saved session, refreshes
        it or, only when neither works, logs in. AuthFailed when the credentials are refused,
        Transient when Bluesky does not answer."""
        await self.api.query("com.atproto.server.getSession")

    # --- watching ------------------------------------------------------------------------------

    async def _watch_sources(self) -> None:
        while True:
            await self.host.sources_changed()
            self.schedule.due_all()
            self._wake.set()

    def _refresh_follow_sources(self) -> frozenset[Source]:
        sources = self.host.sources()
        self._follow_sources = {s.value: s for s in sources if s.kind is SourceKind.FOLLOW}
        return sources

    async def poll_once(self) -> int:
        """One cycle over every polled source (a turn each, due or not); the number of items
        handed to the core. Cycles never overlap (the loop's and a caller's)."""
        async with self._poll_lock:
            self.schedule.due_all()
            return await self._poll()

    def _jobs(self) -> list[tuple[str, Callable[[], Awaitable[Turn]]]]:
        sources = self._refresh_follow_sources()
        jobs: list[tuple[str, Callable[[], Awaitable[Turn]]]] = []
        follows = {s for s in sources if s.kind is SourceKind.FOLLOW}
        if self.realtime == "poll":
            jobs.append((TIMELINE_KEY, lambda: self.timeline.poll(follows)))
        queries = sorted((s for s in sources if s.kind is SourceKind.QUERY), key=lambda s: s.value)
        self.search.forget(queries)
        for source in queries:
            jobs.append((source.key, lambda source=source: self.search.poll(source)))
        for source in (s for s in sources if s.kind is SourceKind.INBOX):
            jobs.append((source.key, lambda source=source: self.inbox.poll(source)))
        self.schedule.forget(key for key, _ in jobs)
        return jobs

    async def _poll(self) -> int:
        """A turn for every feed the schedule has due; the number of items handed over."""
        await self.session.ensure()
        jobs = self._jobs()
        due = set(self.schedule.due(key for key, _ in jobs))
        try:
            n = await self.schedule.take_turns(jobs, due, self.log)
        except (RateLimited, AuthFailed):
            raise
        except BridgeError:
            self.polls += 1  # the round ran; its only feed failed
            raise
        self.polls += 1
        return n

    def _next_turn_in(self) -> float:
        """Seconds until a feed is due; a feed behind waits for the request budget."""
        delay = self.schedule.next_in(key for key, _ in self._jobs())
        if delay <= 0:
            delay = max(self.budget.wait(), 0.05)
        return delay

    async def _poll_loop(self) -> None:
        delay = self.poll_interval
        while True:
            self._wake.clear()
            try:
                async with self._poll_lock:
                    await self._poll()
                delay = self._next_turn_in()
                await self._healthy()
            except RateLimited as exc:
                delay = max(self.poll_interval, exc.retry_after)
                self.log.warning("poll rate limited, next poll in %.0fs", delay)
            except AuthFailed as exc:
                # A dead login: the core tells the rooms and the admins (once); the session
                # keeper tries one login again after its calm pause, so a fixed password or a
                # lifted suspension is picked up without a restart.
                delay = max(self.session.retry_in(), self.poll_interval)
                if not self._down:
                    self._down = True
                    await self.host.report_health(False, str(exc))
                self.log.warning("poll paused: the login was refused; next attempt in %.0fs", delay)
                await asyncio.sleep(delay)  # not woken early by subscription changes
                continue
            except BridgeError as exc:
                delay = min(max(delay * 2, self.poll_interval), 300.0)
                self.log.warning("poll failed, next in %.0fs reason=%r", delay, str(exc))
            except Exception:
                delay = min(max(delay * 2, self.poll_interval), 300.0)
                self.log.exception("poll crashed, next in %.0fs", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _healthy(self) -> None:
        if self._down:
            self._down = False
            self.log.info("login works again account=@%s", self.session.handle)
            await self.host.report_health(True)

    async def _firehose_loop(self) -> None:
        while True:
            self._refresh_follow_sources()
            try:
                await self.firehose.run()
                return
            except AuthFailed as exc:
                # The poll loop reports the dead login; the firehose waits for the same retry.
                delay = max(self.session.retry_in(), self.poll_interval)
                self.log.warning("firehose paused: %s; next attempt in %.0fs", exc, delay)
                await asyncio.sleep(delay)

    # --- lookups ---------------------------------------------------------------------------------

    def owns_handle(self, handle: str) -> bool:
        h = handle.strip()
        if m := _PROFILE_URL.match(h):
            h = m.group(1)
        if h.startswith("did:"):
            return bool(_DID.match(h))
        if h.count("@") > 1 or ("@" in h and not h.startswith("@")):
            return False  # @user@host is Mastodon's
        return bool(_HANDLE.match(h.removeprefix("@").rstrip(".")))

    async def resolve(self, handle: str) -> Author:
        """The account behind a handle or DID, with its DID as ``id``. The handle is resolved
        by the identity system (resolveHandle), which knows an account before the AppView has
        indexed its profile; the profile only adds the display name and avatar."""
        if not self.owns_handle(handle):
            raise ValueError(f"{handle.strip()[:100]!r} is not a Bluesky handle (like alice.bsky.social) or DID")
        actor = normalize_handle(handle)
        did = actor if actor.startswith("did:") else await self._resolve_did(actor)
        if did is None:
            raise NotFound(f"no Bluesky account @{actor}")
        try:
            author = author_from(await self.api.query("app.bsky.actor.getProfile", actor=did))
        except (NotFound, Permanent):
            if actor.startswith("did:"):
                raise NotFound(f"no Bluesky account {actor}") from None
            author = Author(id=did, handle=actor, url=profile_url(actor))
        if not author.id:
            raise NotFound(f"no Bluesky account @{actor}")
        return author

    async def _resolve_did(self, handle: str) -> str | None:
        try:
            res = await self.api.query("com.atproto.identity.resolveHandle", handle=handle)
        except (NotFound, Permanent):
            return None
        did = res.get("did")
        return did if isinstance(did, str) else None

    async def recent(self, source: Source, limit: int) -> list[Post]:
        limit = max(1, min(limit, 100))
        if source.kind is SourceKind.FOLLOW:
            res = await self.api.query("app.bsky.feed.getAuthorFeed", actor=source.value, limit=limit)
            posts = [post_from_feed_item(x) for x in res.get("feed") or ()]
        elif source.kind is SourceKind.QUERY:
            res = await self.api.query("app.bsky.feed.searchPosts", q=source.value, sort="latest", limit=limit)
            posts = [post_from_view(x) for x in res.get("posts") or ()]
        else:
            return []
        found = [as_account(p, self.name) for p in posts if p is not None]
        found.sort(key=lambda p: p.created_at)
        return found[-limit:]

    # --- look-ups (/find, /who, /recent, /search) -------------------------------------------------

    async def find_accounts(self, words: str, limit: int, cursor: str = "") -> ProfilePage:
        """app.bsky.actor.searchActors (the AppView matches handles, display names and bios),
        with whether the team account follows each from app.bsky.graph.getRelationships."""
        words = " ".join(words.split())
        if not any(c.isalnum() for c in words):
            raise ValueError(f"{words[:40]!r} has no word to search for")
        params: dict[str, Any] = {"q": words[:MAX_QUERY], "limit": max(1, min(limit, 25))}
        if cursor:
            params["cursor"] = cursor[:512]
        res = await self.api.query("app.bsky.actor.searchActors", **params)
        views = [v for v in res.get("actors") or () if isinstance(v, Mapping) and isinstance(v.get("did"), str)]
        following = await self._team_follows([v["did"] for v in views])
        profiles = tuple(profile_from(v, following.get(v["did"])) for v in views[:limit])
        next_cursor = res.get("cursor")
        return ProfilePage(profiles, next_cursor if isinstance(next_cursor, str) and profiles else "")

    async def profile(self, handle: str) -> Profile:
        """app.bsky.actor.getProfile (counts and bio) for the account ``resolve`` finds."""
        author = await self.resolve(handle)
        try:
            view = await self.api.query("app.bsky.actor.getProfile", actor=author.id)
        except (NotFound, Permanent):  # not indexed by the AppView yet: what resolve knows
            return Profile(author, followed_by_team=(await self._team_follows([author.id])).get(author.id))
        found = (await self._team_follows([author.id])).get(author.id)
        return profile_from(view, found)

    async def _team_follows(self, dids: list[str]) -> dict[str, bool]:
        """Whether the team account follows each DID (app.bsky.graph.getRelationships takes at
        most 30 at a time); {} when it cannot say."""
        out: dict[str, bool] = {}
        await self.session.ensure()
        me = self.session.did
        for i in range(0, len(dids), 30):
            chunk = [d for d in dids[i : i + 30] if d != me]
            if not chunk:
                continue
            try:
                rel = await self.api.query("app.bsky.graph.getRelationships", actor=me, others=chunk)
            except (NotFound, Permanent):
                return out
            for r in rel.get("relationships") or ():
                if isinstance(r, Mapping) and isinstance(r.get("did"), str):
                    out[r["did"]] = isinstance(r.get("following"), str)
        return out

    async def search_posts(self, query: str, limit: int) -> list[Post]:
        query = " ".join(query.split())
        if not any(c.isalnum() for c in query):
            raise ValueError(f"{query[:40]!r} has no word to search for")
        return await self.recent(Source(self.name, SourceKind.QUERY, query[:MAX_QUERY]), limit)

    def lookup_cost(self, what: str, limit: int) -> str:
        return ""  # Bluesky's AppView reads are free

    def check_text(self, text: str) -> str | None:
        return check_text(text)

    def capabilities(self) -> Capabilities:
        return Capabilities(text_limit=TEXT_LIMIT, text_unit="graphemes")

    # --- actions ---------------------------------------------------------------------------------
    #
    # Every create names its record key: the core's action key, a TID chosen and written down
    # before the call. A retry of the same action (after a crash, at start) creates the same
    # at:// uri, which the PDS refuses as existing; the record already there is the first try's
    # and counts as done. Direct messages have no client key (chat.bsky.convo.sendMessage): a
    # retry looks through the conversation's latest messages for its first try's copy (sent by
    # the team account, same text, not before the key's time) and sends only when none is there.

    def action_key(self) -> str:
        return self.tids.next()

    def _refuse(self, text: str) -> None:
        problem = check_text(text)
        if problem:
            raise Permanent(problem)

    async def _record(self, collection: str, record: dict[str, Any], key: str) -> dict[str, Any]:
        """Create ``record`` under record key ``key``: {uri, cid} of what the first try of this
        key created (now or before)."""
        await self.session.ensure()
        did = self.session.did
        try:
            return await self.api.procedure(
                "com.atproto.repo.createRecord", {"repo": did, "collection": collection, "rkey": key, "record": record}
            )
        except (Permanent, Transient) as exc:
            # The PDS refuses a record key in use; a lost answer looks the same to us. Either
            # way, a record under this key is the first try's.
            existing = await self._existing(did, collection, key)
            if existing is None:
                raise
            self.log.info(
                "action key already used, the first try's record counts collection=%s rkey=%s reason=%r",
                collection,
                key,
                str(exc),
            )
            return existing

    async def _existing(self, did: str, collection: str, key: str) -> dict[str, Any] | None:
        try:
            res = await self.api.query("com.atproto.repo.getRecord", repo=did, collection=collection, rkey=key)
        except (NotFound, Permanent):
            return None
        if isinstance(res.get("uri"), str) and isinstance(res.get("cid"), str):
            return {"uri": res["uri"], "cid": res["cid"]}
        return None

    async def _post_record(self, text: str, key: str, reply: dict[str, Any] | None = None) -> Posted:
        record: dict[str, Any] = {"$type": "app.bsky.feed.post", "text": text, "createdAt": iso(_key_time(key))}
        facets = await build_facets(text, self._resolve_did)
        if facets:
            record["facets"] = facets
        if reply:
            record["reply"] = reply
        res = await self._record("app.bsky.feed.post", record, key)
        uri = str(res.get("uri", ""))
        me = Author(id=self.session.did, handle=self.session.handle)
        return Posted(Ref(self.name, uri), post_url(me, uri))

    async def post(self, text: str, key: str) -> Posted:
        self._refuse(text)
        return await self._post_record(text, key)

    async def _strong_refs(self, post: Post) -> tuple[dict[str, str], dict[str, str]]:
        """({uri, cid} of a post, {uri, cid} of its thread root): from ``post.native`` where the
        feed gave it, else from the AppView (posts stored before it existed, firehose records)."""
        uri = post.ref.id
        if not uri.startswith("at://"):
            raise NotFound(f"{uri!r} is not a Bluesky post")
        known = decode_native(uri, post.native)
        if known is not None:
            return known
        views = await hydrate(self.api, [uri])
        view = views.get(uri)
        if view is None or not isinstance(view.get("cid"), str):
            raise NotFound(f"the post by @{post.author.handle} no longer exists on Bluesky")
        record = view.get("record") if isinstance(view.get("record"), Mapping) else {}
        ref = {"uri": uri, "cid": view["cid"]}
        root = ref
        parent_reply = record.get("reply") if isinstance(record.get("reply"), Mapping) else None
        if parent_reply and isinstance(parent_reply.get("root"), Mapping):
            r = parent_reply["root"]
            if isinstance(r.get("uri"), str) and isinstance(r.get("cid"), str):
                root = {"uri": r["uri"], "cid": r["cid"]}
        return ref, root

    async def reply(self, parent: Post, text: str, key: str) -> Posted:
        self._refuse(text)
        if parent.conversation:
            return await self._send_message(parent.conversation, text, key)
        ref, root = await self._strong_refs(parent)
        return await self._post_record(text, key, {"root": root, "parent": ref})

    async def like(self, post: Post, key: str) -> Posted:
        ref, _ = await self._strong_refs(post)
        res = await self._record(
            "app.bsky.feed.like", {"$type": "app.bsky.feed.like", "subject": ref, "createdAt": iso(_key_time(key))}, key
        )
        return Posted(Ref(self.name, str(res.get("uri", ""))), post.url)

    async def repost(self, post: Post, key: str) -> Posted:
        ref, _ = await self._strong_refs(post)
        res = await self._record(
            "app.bsky.feed.repost", {"$type": "app.bsky.feed.repost", "subject": ref, "createdAt": iso(_key_time(key))}, key
        )
        return Posted(Ref(self.name, str(res.get("uri", ""))), post.url)

    async def follow(self, author: Author, key: str) -> Posted:
        did = author.id if author.id.startswith("did:") else (await self.resolve(author.handle)).id
        await self.session.ensure()
        rel = await self.api.query("app.bsky.graph.getRelationships", actor=self.session.did, others=[did])
        for r in rel.get("relationships") or ():
            if isinstance(r, Mapping) and r.get("did") == did and isinstance(r.get("following"), str):
                await self.timeline.released(did)  # already followed: now the team's own follow
                return Posted(Ref(self.name, r["following"]), profile_url(author.handle or did))
        res = await self._record(
            "app.bsky.graph.follow",
            {"$type": "app.bsky.graph.follow", "subject": did, "createdAt": iso(_key_time(key))},
            key,
        )
        await self.timeline.released(did)
        return Posted(Ref(self.name, str(res.get("uri", ""))), profile_url(author.handle or did))

    async def direct_message(self, handle: str, text: str, key: str) -> Posted:
        self._refuse(text)
        author = await self.resolve(handle)
        res = await self.chat("chat.bsky.convo.getConvoForMembers", members=[author.id])
        convo = res.get("convo") if isinstance(res.get("convo"), Mapping) else {}
        convo_id = convo.get("id")
        if not isinstance(convo_id, str):
            raise Permanent(f"Bluesky gave no conversation with @{author.handle}")
        return await self._send_message(convo_id, text, key)

    async def _send_message(self, convo_id: str, text: str, key: str) -> Posted:
        # sendMessage takes no client key. The window of a duplicate: a first try whose message
        # is more than DM_LOOKBACK messages back in a busy conversation, or a clock skew (below).
        sent = await self._sent_since(convo_id, text, _key_time(key))
        if sent:
            self.log.info("direct message of this action already sent, not sending again convo=%s", convo_id)
            return Posted(dm_ref(convo_id, sent, self.name), f"https://bsky.app/messages/{convo_id}")
        message: dict[str, Any] = {"text": text}
        facets = await build_facets(text, self._resolve_did)
        if facets:
            message["facets"] = facets
        res = await self.chat("chat.bsky.convo.sendMessage", data={"convoId": convo_id, "message": message})
        mid = str(res.get("id", ""))
        return Posted(dm_ref(convo_id, mid, self.name), f"https://bsky.app/messages/{convo_id}")

    async def _sent_since(self, convo_id: str, text: str, since: datetime) -> str:
        """The id of a message the team account sent in ``convo_id`` with ``text`` at or after
        ``since``, or ""."""
        res = await self.chat("chat.bsky.convo.getMessages", convoId=convo_id, limit=DM_LOOKBACK)
        me = self.session.did
        for m in res.get("messages") or ():
            if not isinstance(m, Mapping) or not isinstance(m.get("id"), str):
                continue
            sender = m.get("sender") if isinstance(m.get("sender"), Mapping) else {}
            # The key's time is our clock, sentAt the chat service's: a skew of our clock ahead of
            # theirs is a window in which a retry does not find its first try (and sends again);
            # no slack, so that the same words asked for again later are a new message.
            if sender.get("did") == me and m.get("text") == text and parse_time(m.get("sentAt")) >= since:
                return m["id"]
        return ""

    # --- the chat API ------------------------------------------------------------------------------

    async def chat(self, nsid: str, data: Mapping[str, Any] | None = None, **params: Any) -> dict[str, Any]:
        """A chat.bsky.* call (through the PDS with the atproto-proxy header, or to
        ``chat_service``)."""
        if data is not None:
            return await self.api.procedure(nsid, data, chat=True)
        return await self.api.query(nsid, chat=True, **params)

    def _blob_url(self, did: str, cid: str) -> str:
        base = self.client._base_url.removesuffix("/xrpc")
        return f"{base}/xrpc/com.atproto.sync.getBlob?did={quote(did)}&cid={quote(cid)}"


def _key_time(key: str) -> datetime:
    """The time an action key was chosen (a TID carries it), or now for any other key."""
    return tid_time(key) or datetime.now(UTC)
