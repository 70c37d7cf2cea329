"""The two adapter protocols, and the host the core hands each adapter.

An adapter package registers a class under the entry-point group ``bridge.networks``
or ``bridge.chats`` (name = its config section, e.g. ``bluesky``, ``telegram``). The
core loads it by that name, validates the section against ``CONFIG`` and constructs it
as ``cls(settings, host)``. Adapters talk to the core only through the ``Host``: they
never import the ORM or another adapter.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

from bridge.configschema import Key
from bridge.model import (
    Answer,
    Author,
    Batch,
    ChatEvent,
    ChatTarget,
    Delivery,
    Post,
    Posted,
    Sent,
    Source,
)


class Host(Protocol):
    """What the core offers one adapter. State keys are namespaced per adapter by the core."""

    log: logging.Logger

    async def load_state(self, key: str) -> str | None:
        """Return the value saved under ``key`` (e.g. a login session), or None."""
        ...

    async def save_state(self, key: str, value: str | None) -> None:
        """Persist ``value`` under ``key`` (None deletes it). Survives restarts."""
        ...

    # --- network adapters -------------------------------------------------------------

    def sources(self) -> frozenset[Source]:
        """The sources of this network that enabled subscriptions currently want."""
        ...

    async def sources_changed(self) -> None:
        """Wait until ``sources()`` may have changed (a subscription was added or removed)."""
        ...

    async def load_cursor(self, key: str) -> str | None:
        """The cursor last committed under ``key`` by ``ingest``, or None for a new source."""
        ...

    async def ingest(self, batch: Batch) -> None:
        """Match the items to subscriptions, write their deliveries and the batch's cursors in
        one transaction. Returns once committed; the adapter may then advance. Idempotent: a
        post ingested twice is delivered once per destination."""
        ...

    # --- chat adapters ------------------------------------------------------------------

    async def handle(self, event: ChatEvent) -> Answer:
        """Answer a command, reply or button press. Never raises for bad user input: the
        answer says what was wrong."""
        ...

    async def link_message(self, target: ChatTarget, message_id: str, token: str) -> None:
        """Record that chat message ``message_id`` (e.g. a Reply prompt the adapter sent)
        stands for the post behind ``token``, so a reply to it reaches that post."""
        ...

    async def chat_moved(self, old: ChatTarget, new: ChatTarget) -> None:
        """The chat ``old`` now lives at ``new`` (Telegram group → supergroup): move its
        subscriptions and pending deliveries."""
        ...

    # --- operations (metrics and webhooks) -------------------------------------------

    def count_request(self, endpoint: str, status: int | str) -> None:
        """Count one API request for /metrics. ``endpoint`` must be a method name (an XRPC
        NSID, a Bot API method), never a URL or anything holding a token or user data;
        ``status`` is the HTTP status, or a short word ("error") when none came back."""
        ...

    def stream_lag(self, stream: str, seconds: float) -> None:
        """Report how far ``stream`` (e.g. "firehose") is behind real time, for /metrics."""
        ...

    def pacing_wait(self, seconds: float) -> None:
        """Count a send that waited ``seconds`` for the platform's own rate rules, for /metrics."""
        ...

    def serve_webhook(self, path: str, handler: Callable[[Mapping[str, str], bytes], Awaitable[int]]) -> None:
        """Serve ``POST path`` on the bridge's HTTP endpoint: ``handler`` gets each call's headers
        and body and returns the HTTP status to answer (it must check the caller itself). Raises
        RuntimeError when no endpoint is configured. Call it before telling the platform the URL."""
        ...

    async def destination_unavailable(self, target: ChatTarget, reason: str) -> None:
        """The adapter learned outside a send that ``target`` is gone (bot removed, channel
        deleted): pause it with ``reason``."""
        ...


@runtime_checkable
class NetworkAdapter(Protocol):
    """A microblog network (Bluesky, Mastodon, X).

    Contract:
    * ``start`` logs in (reusing a saved session where the network allows) and starts the
      adapter's own tasks that watch ``host.sources()`` and hand posts to ``host.ingest``.
      It must return promptly; it raises AuthFailed when the credentials are refused.
    * A source without a cursor starts from now: its first fetch must only record the
      position, not hand over old posts (``recent`` exists for an explicit backfill).
    * Cursors advance only through ``ingest``: a crash between fetch and ingest re-fetches.
    * Outbound methods raise the ``bridge.errors`` hierarchy; they must never send text that
      ``check_text`` refuses.
    * ``check``, ``resolve`` and ``owns_handle`` must work without ``start`` (the command line
      calls ``check`` then ``resolve`` to add a subscription while the bridge runs elsewhere).
    """

    name: ClassVar[str]
    CONFIG: ClassVar[Mapping[str, Key]]

    def __init__(self, settings: Mapping[str, Any], host: Host) -> None: ...

    async def start(self) -> None:
        """Log in and start watching sources. Raise AuthFailed on refused credentials."""
        ...

    async def stop(self) -> None:
        """Stop all tasks and close connections; must not raise; idempotent."""
        ...

    async def check(self) -> str:
        """Log in (or verify the saved session) and return a one-line description of the
        account (``"ok: @acme.bsky.social"``). Raise AuthFailed or Transient when it fails."""
        ...

    def owns_handle(self, handle: str) -> bool:
        """Whether ``handle`` (as a user typed it, without a ``network:`` prefix) looks like an
        account of this network. Used to infer the network; must not do I/O."""
        ...

    async def resolve(self, handle: str) -> Author:
        """Look up an account by handle (or id). Raise NotFound with a user-facing message when
        it does not exist, ValueError when the handle is malformed."""
        ...

    async def recent(self, source: Source, limit: int) -> list[Post]:
        """The newest ``limit`` posts of ``source``, newest last (for ``backfill``)."""
        ...

    def check_text(self, text: str) -> str | None:
        """None if ``text`` may be posted, else a one-line reason with the count, e.g.
        ``"the reply is 301 graphemes; Bluesky allows 300"``. Must not do I/O."""
        ...

    async def post(self, text: str) -> Posted:
        """Create a top-level post from the team account."""
        ...

    async def reply(self, parent: Post, text: str) -> Posted:
        """Reply to ``parent`` so that it threads under it on the network; a direct message
        (``parent.conversation``) is answered in the same conversation."""
        ...

    async def like(self, post: Post) -> Posted: ...

    async def repost(self, post: Post) -> Posted: ...

    async def follow(self, author: Author) -> Posted:
        """Follow ``author`` from the team account."""
        ...

    async def direct_message(self, handle: str, text: str) -> Posted:
        """Send a direct message to the account ``handle``."""
        ...


@runtime_checkable
class ChatAdapter(Protocol):
    """A chat platform (Telegram, Discord).

    Contract:
    * ``start`` connects and begins turning what people do into ``host.handle`` calls,
      rendering the Answer it returns. It must return promptly.
    * ``send`` delivers one post to one destination and returns the created message ids. It
      must raise RateLimited (with the server's retry_after) on a 429 for that destination,
      DestinationUnavailable when the chat is gone or closed to the bot, Permanent when the
      platform rejects the message for good, Transient otherwise. It must neutralise mentions
      and markup in network text (no @everyone ping, no injected HTML). It may pace itself to
      the platform's limits; waiting for one destination must not hold up another.
    """

    name: ClassVar[str]
    CONFIG: ClassVar[Mapping[str, Key]]

    def __init__(self, settings: Mapping[str, Any], host: Host) -> None: ...

    async def start(self) -> None:
        """Connect and start receiving events. Raise AuthFailed on a refused token."""
        ...

    async def stop(self) -> None:
        """Disconnect; must not raise; idempotent."""
        ...

    async def check(self) -> str:
        """Verify the token and return ``"ok: @botname"``; raise AuthFailed or Transient."""
        ...

    def parse_target(self, text: str) -> ChatTarget:
        """Validate a destination of this platform (``chat_id[/thread]`` part given); raise
        ValueError with a user-facing message."""
        ...

    async def send(self, delivery: Delivery) -> Sent:
        """Send the post of ``delivery`` to ``delivery.target`` with its buttons."""
        ...

    async def notify(self, target: ChatTarget, text: str) -> None:
        """Send a plain-text notice from the bridge (failures, status). Same errors as send."""
        ...
