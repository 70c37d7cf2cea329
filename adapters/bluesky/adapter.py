"""The Bluesky network adapter: the team account's session, the feeds it watches, and the
actions the team takes from chat.

Tasks while running:
* the poll loop: every ``poll_interval`` seconds (and at once when subscriptions change) it
  polls searches, the inbox and, in poll mode, the timeline (feeds.py);
* in firehose mode, the firehose reader (firehose.py) for followed accounts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

from adapters.bluesky.convert import (
    NETWORK,
    author_from,
    dm_ref,
    post_from_feed_item,
    post_from_view,
    post_url,
    profile_url,
)
from adapters.bluesky.feeds import Cursors, Inbox, Search, Timeline, hydrate, iso
from adapters.bluesky.firehose import Firehose
from adapters.bluesky.http import Api, PacedRequest, RateState
from adapters.bluesky.richtext import build_facets, check_text
from adapters.bluesky.session import SessionClient, SessionKeeper
from bridge.configschema import Key
from bridge.errors import AuthFailed, BridgeError, NotFound, Permanent, RateLimited
from bridge.model import Author, Post, Posted, Ref, Source, SourceKind
from bridge.protocols import Host

# A handle is a domain name (at least two labels); a DID is did:plc:… or did:web:….
_HANDLE = re.compile(r"^(?=.{3,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", re.I)
_DID = re.compile(r"^did:(plc:[a-z2-7]{24}|web:[a-zA-Z0-9.%:-]+)$")


def normalize_handle(handle: str) -> str:
    return handle.strip().removeprefix("@").rstrip(".").lower() if not handle.strip().startswith("did:") else handle.strip()


class BlueskyAdapter:
    name: ClassVar[str] = "bluesky"
    CONFIG: ClassVar[Mapping[str, Key]] = {
        "service": Key(str, "https://bsky.social", help="the account's PDS (or https://bsky.social)"),
        "identifier": Key(str, required=True, help="the team account's handle, e.g. acme.bsky.social"),
        "password": Key(
            str, required=True, secret=True, help="an app password (Settings → Privacy and security → App passwords)"
        ),
        "realtime": Key(str, "poll", choices=("poll", "firehose"), help="how followed accounts are watched"),
        "poll_interval": Key((int, float), 30, min=1, help="seconds between polls (searches and the inbox poll in both modes)"),
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
        self.log: logging.Logger = getattr(host, "log", None) or logging.getLogger("bridge.adapters.bluesky")
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
        )
        self.api = Api(
            self.client, self.session.ensure, self.session.reauth, chat_base=self.chat_service, count=host.count_request
        )
        self.cursors = Cursors(host)
        self.timeline = Timeline(self.api, host, self.cursors, lambda: self.session.did)
        self.search = Search(self.api, self.cursors)
        self.inbox = Inbox(self.api, self.cursors, lambda: self.session.did, self.chat)
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

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Verify the session (restoring the saved one; logging in only without one), then start
        the poll loop and, in firehose mode, the firehose reader."""
        await self._verify()
        self._tasks.append(asyncio.create_task(self._watch_sources(), name="bluesky-sources"))
        self._tasks.append(asyncio.create_task(self._poll_loop(), name="bluesky-poll"))
        if self.realtime == "firehose":
            self._tasks.append(asyncio.create_task(self._firehose_loop(), name="bluesky-firehose"))
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
        await self._verify()
        return f"ok: @{self.session.handle}"

    async def _verify(self) -> None:
        """One cheap authenticated call (getSession): restores the saved session, refreshes
        it or, only when neither works, logs in. AuthFailed when the credentials are refused,
        Transient when Bluesky does not answer."""
        await self.api.query("com.atproto.server.getSession")

    # --- watching ------------------------------------------------------------------------------

    async def _watch_sources(self) -> None:
        while True:
            await self.host.sources_changed()
            self._wake.set()

    def _refresh_follow_sources(self) -> frozenset[Source]:
        sources = self.host.sources()
        self._follow_sources = {s.value: s for s in sources if s.kind is SourceKind.FOLLOW}
        return sources

    async def poll_once(self) -> int:
        """One cycle over every polled source; the number of items handed to the core. Cycles
        never overlap (the loop's and a caller's)."""
        async with self._poll_lock:
            return await self._poll()

    async def _poll(self) -> int:
        await self.session.ensure()
        sources = self._refresh_follow_sources()
        jobs: list[tuple[str, Callable[[], Awaitable[int]]]] = []
        follows = {s for s in sources if s.kind is SourceKind.FOLLOW}
        if self.realtime == "poll":
            jobs.append(("timeline", lambda: self.timeline.poll(follows)))
        for source in sorted((s for s in sources if s.kind is SourceKind.QUERY), key=lambda s: s.value):
            jobs.append((source.key, lambda source=source: self.search.poll(source)))
        for source in (s for s in sources if s.kind is SourceKind.INBOX):
            jobs.append((source.key, lambda source=source: self.inbox.poll(source)))
        n = 0
        failed: BridgeError | None = None
        for what, job in jobs:
            # One failing source must not hold up the others; a rate limit or refused
            # credentials stop the whole cycle.
            try:
                n += await job()
            except (RateLimited, AuthFailed):
                raise
            except BridgeError as exc:
                self.log.warning("poll of %s failed reason=%r", what, str(exc))
                failed = failed or exc
        self.polls += 1
        if failed is not None and n == 0 and len(jobs) == 1:
            raise failed
        return n

    async def _poll_loop(self) -> None:
        delay = self.poll_interval
        while True:
            self._wake.clear()
            try:
                await self.poll_once()
                delay = self.poll_interval
            except RateLimited as exc:
                delay = max(self.poll_interval, exc.retry_after)
                self.log.warning("poll rate limited, next poll in %.0fs", delay)
            except AuthFailed as exc:
                self.log.error("poll stopped: %s", exc)
                return
            except BridgeError as exc:
                delay = min(max(delay * 2, self.poll_interval), 300.0)
                self.log.warning("poll failed, next in %.0fs reason=%r", delay, str(exc))
            except Exception:
                delay = min(max(delay * 2, self.poll_interval), 300.0)
                self.log.exception("poll crashed, next in %.0fs", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _firehose_loop(self) -> None:
        self._refresh_follow_sources()
        try:
            await self.firehose.run()
        except AuthFailed as exc:
            self.log.error("firehose stopped: %s", exc)

    # --- lookups ---------------------------------------------------------------------------------

    def owns_handle(self, handle: str) -> bool:
        h = handle.strip()
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
        found = [p for p in posts if p is not None]
        found.sort(key=lambda p: p.created_at)
        return found[-limit:]

    def check_text(self, text: str) -> str | None:
        return check_text(text)

    # --- actions ---------------------------------------------------------------------------------

    def _refuse(self, text: str) -> None:
        problem = check_text(text)
        if problem:
            raise Permanent(problem)

    async def _record(self, collection: str, record: dict[str, Any]) -> dict[str, Any]:
        await self.session.ensure()
        return await self.api.procedure(
            "com.atproto.repo.createRecord", {"repo": self.session.did, "collection": collection, "record": record}
        )

    async def _post_record(self, text: str, reply: dict[str, Any] | None = None) -> Posted:
        record: dict[str, Any] = {"$type": "app.bsky.feed.post", "text": text, "createdAt": iso(datetime.now(UTC))}
        facets = await build_facets(text, self._resolve_did)
        if facets:
            record["facets"] = facets
        if reply:
            record["reply"] = reply
        res = await self._record("app.bsky.feed.post", record)
        uri = str(res.get("uri", ""))
        me = Author(id=self.session.did, handle=self.session.handle)
        return Posted(Ref(NETWORK, uri), post_url(me, uri))

    async def post(self, text: str) -> Posted:
        self._refuse(text)
        return await self._post_record(text)

    async def _strong_ref(self, post: Post) -> tuple[dict[str, str], Mapping[str, Any]]:
        """{uri, cid} of a post and its record, from the AppView (the core keeps only the uri)."""
        uri = post.ref.id
        if not uri.startswith("at://"):
            raise NotFound(f"{uri!r} is not a Bluesky post")
        views = await hydrate(self.api, [uri])
        view = views.get(uri)
        if view is None or not isinstance(view.get("cid"), str):
            raise NotFound(f"the post by @{post.author.handle} no longer exists on Bluesky")
        record = view.get("record") if isinstance(view.get("record"), Mapping) else {}
        return {"uri": uri, "cid": view["cid"]}, record

    async def reply(self, parent: Post, text: str) -> Posted:
        self._refuse(text)
        if parent.conversation:
            return await self._send_message(parent.conversation, text)
        ref, record = await self._strong_ref(parent)
        root = ref
        parent_reply = record.get("reply") if isinstance(record.get("reply"), Mapping) else None
        if parent_reply and isinstance(parent_reply.get("root"), Mapping):
            r = parent_reply["root"]
            if isinstance(r.get("uri"), str) and isinstance(r.get("cid"), str):
                root = {"uri": r["uri"], "cid": r["cid"]}
        return await self._post_record(text, {"root": root, "parent": ref})

    async def like(self, post: Post) -> Posted:
        ref, _ = await self._strong_ref(post)
        res = await self._record(
            "app.bsky.feed.like", {"$type": "app.bsky.feed.like", "subject": ref, "createdAt": iso(datetime.now(UTC))}
        )
        return Posted(Ref(NETWORK, str(res.get("uri", ""))), post.url)

    async def repost(self, post: Post) -> Posted:
        ref, _ = await self._strong_ref(post)
        res = await self._record(
            "app.bsky.feed.repost", {"$type": "app.bsky.feed.repost", "subject": ref, "createdAt": iso(datetime.now(UTC))}
        )
        return Posted(Ref(NETWORK, str(res.get("uri", ""))), post.url)

    async def follow(self, author: Author) -> Posted:
        did = author.id if author.id.startswith("did:") else (await self.resolve(author.handle)).id
        await self.session.ensure()
        rel = await self.api.query("app.bsky.graph.getRelationships", actor=self.session.did, others=[did])
        for r in rel.get("relationships") or ():
            if isinstance(r, Mapping) and r.get("did") == did and isinstance(r.get("following"), str):
                await self.timeline.released(did)  # already followed: now the team's own follow
                return Posted(Ref(NETWORK, r["following"]), profile_url(author.handle or did))
        res = await self._record(
            "app.bsky.graph.follow", {"$type": "app.bsky.graph.follow", "subject": did, "createdAt": iso(datetime.now(UTC))}
        )
        await self.timeline.released(did)
        return Posted(Ref(NETWORK, str(res.get("uri", ""))), profile_url(author.handle or did))

    async def direct_message(self, handle: str, text: str) -> Posted:
        self._refuse(text)
        author = await self.resolve(handle)
        res = await self.chat("chat.bsky.convo.getConvoForMembers", members=[author.id])
        convo = res.get("convo") if isinstance(res.get("convo"), Mapping) else {}
        convo_id = convo.get("id")
        if not isinstance(convo_id, str):
            raise Permanent(f"Bluesky gave no conversation with @{author.handle}")
        return await self._send_message(convo_id, text)

    async def _send_message(self, convo_id: str, text: str) -> Posted:
        message: dict[str, Any] = {"text": text}
        facets = await build_facets(text, self._resolve_did)
        if facets:
            message["facets"] = facets
        res = await self.chat("chat.bsky.convo.sendMessage", data={"convoId": convo_id, "message": message})
        mid = str(res.get("id", ""))
        return Posted(dm_ref(convo_id, mid), f"https://bsky.app/messages/{convo_id}")

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
