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
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

from bridge.configschema import Key
from bridge.model import (
    Answer,
    Author,
    Batch,
    Button,
    Capabilities,
    ChatEvent,
    ChatTarget,
    Delivery,
    Post,
    Posted,
    Profile,
    ProfilePage,
    Sent,
    Source,
    SubscriptionSummary,
)

if TYPE_CHECKING:
    from bridge.matching.filters import Filters

T = TypeVar("T")


class Host(Protocol):
    """What the core offers one adapter. State keys are namespaced per adapter by the core."""

    log: logging.Logger
    name: str  # the account (config section) the adapter serves: "bluesky", "bluesky_sales"

    async def load_state(self, key: str) -> str | None:
        """Return the value saved under ``key`` (e.g. a login session), or None."""
        ...

    async def save_state(self, key: str, value: str | None) -> None:
        """Persist ``value`` under ``key`` (None deletes it). Survives restarts."""
        ...

    async def replace_state(self, key: str, expected: str | None, value: str) -> bool:
        """Compare-and-set: save ``value`` under ``key`` only if the saved value is still
        ``expected`` (None: nothing is saved yet). False when another process changed it
        meanwhile: nothing is written; re-read it with ``load_state`` and use theirs (several
        workers share one login session: a rotated refresh token must never be overwritten
        by an older one)."""
        ...

    async def listen(self, name: str, run: Callable[[], Awaitable[T]]) -> T:
        """Run the listener ``run()`` (update intake, a gateway connection, a firehose, a
        stream, a poller) in one process only: several ``bridge run`` on one Postgres database
        share one bridge, and a listener running twice would take every update twice (or be
        refused, as Telegram answers a second getUpdates with 409). Waits until this process
        holds the listener's lease, awaits ``run()``, cancels it when the lease is lost (before
        another process may take it over) and waits for the lease again. Returns or raises what
        ``run()`` does when it ends by itself. ``name`` is unique within the adapter (e.g.
        "updates", "firehose"). On SQLite (one process) it is simply ``await run()``.

        ``run`` must stop promptly when cancelled, and keep its position only in what it
        commits (cursors through ``ingest``): the next holder resumes from there. Outbound
        calls (send, notify, post, reply) work in every process and need no lease."""
        ...

    def workers(self) -> int:
        """How many processes share this adapter's account now (1 on SQLite). A limit the
        platform counts per bot or per account rather than per connection (Telegram's 30
        messages/s, Discord's 50 requests/s, a network's request budget) is divided by it so
        that the processes together stay within it. It changes as processes start and stop:
        read it where the limit is applied, not once at start."""
        ...

    async def report_health(self, ok: bool, reason: str = "", *, limited: bool = False) -> None:
        """Say whether the adapter can do its work. ``ok=False`` means it cannot until a person
        acts (the platform refused our credentials while running); ``reason`` is one line for
        people, naming the config key to fix. ``ok=False, limited=True`` means only part of the
        work stopped (e.g. a spending cap stops reads while actions that fit still go): the
        ``reason`` must then say what stopped and what still goes, since the rooms are told it
        as is. ``ok=True`` once it works again. The core records it (``bridge status`` shows
        it) and, on a change only, tells the rooms the platform feeds and the bridge's admins
        once. Repeating the current state does nothing. The adapter must keep trying by itself
        at a calm pace while it is down."""
        ...

    # --- network adapters -------------------------------------------------------------

    def sources(self) -> frozenset[Source]:
        """The sources of this network that enabled subscriptions currently want, including
        those of paused rooms: a pause only stops the room receiving. A source leaves this set
        only when people removed its last subscription; only then may the adapter undo what it
        did on the network for it (a follow it made)."""
        ...

    def filters(self, source: Source) -> tuple[Filters, ...]:
        """The filters of every enabled subscription that wants ``source`` (paused rooms
        included; empty for a source no subscription wants). An adapter may use them to ask
        the network for less (leave out replies when no subscription wants any, so that fewer
        reads are billed); it must never leave out what one of them accepts, since the core
        filters again per room. ``sources_changed`` also fires when filters change."""
        ...

    async def sources_changed(self) -> None:
        """Wait until ``sources()`` or ``filters()`` may have changed (a subscription was added,
        removed or filtered)."""
        ...

    async def load_cursor(self, key: str) -> str | None:
        """The cursor last committed under ``key`` by ``ingest``, or None for a new source."""
        ...

    async def ingest(self, batch: Batch) -> None:
        """Match the items to subscriptions, write their deliveries, the notices of the batch's
        gaps and its cursors in one transaction. Returns once committed; the adapter may then
        advance. Idempotent: a post ingested twice is delivered once per destination, a gap
        is told once per room."""
        ...

    # --- chat adapters ------------------------------------------------------------------

    async def handle(self, event: ChatEvent) -> Answer:
        """Answer a command, reply or button press. Never raises for bad user input: the
        answer says what was wrong."""
        ...

    async def subscriptions(self, target: ChatTarget) -> tuple[SubscriptionSummary, ...]:
        """The enabled subscriptions of the room ``target`` (for autocomplete), oldest first."""
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

    def report_spend(self, spent_usd: float, cap_usd: float | None = None, forecast_usd: float | None = None) -> None:
        """Set what a paid network's API has cost this calendar month (UTC) so far, its monthly
        cap (None: no cap) and the forecast by month end (None: none), for /metrics. Call it
        when the figures change (a billed request, the month rolling over) and once they are
        loaded at start; the last call stands. A free network never calls it."""
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


class PartRecorder(Protocol):
    """Handed by the core to ``ChatAdapter.send``: records one part of a post as delivered."""

    async def __call__(self, index: int, message_ids: tuple[str, ...]) -> None:
        """Part ``index`` (0-based, counting ``Delivery.parts_done``) went out as chat messages
        ``message_ids``. Returns once that is committed (its own small transaction, retried
        until it holds); a later attempt of the delivery then starts after this part, and a
        reply to these messages reaches the post."""
        ...


@runtime_checkable
class NetworkAdapter(Protocol):
    """A microblog network (Bluesky, Mastodon, X).

    Contract:
    * ``start`` logs in (reusing a saved session where the network allows) and starts the
      adapter's own tasks that watch ``host.sources()`` and hand posts to ``host.ingest``.
      It must return promptly; it raises AuthFailed when the credentials are refused, and
      Transient when the network cannot be reached. After a failed start the core calls
      ``stop`` (which must close what the attempt opened) and later ``start`` again.
    * A source without a cursor starts from now: its first fetch must only record the
      position, not hand over old posts (``recent`` exists for an explicit backfill).
    * Cursors advance only through ``ingest``: a crash between fetch and ingest re-fetches.
    * No silent gap: when a cursor must skip posts the adapter could not fetch (the network's
      history or the request budget did not reach back), the batch that moves it carries a
      ``Gap`` per source. ``bridge.intake.paging.Pager`` walks a newest-first feed back to its
      watermark and does this accounting; an adapter supplies one page per cursor.
    * Outbound methods raise the ``bridge.errors`` hierarchy; they must never send text that
      ``check_text`` refuses.
    * A paid network may keep a one-line account of its spend under its state key ``status``
      (``host.save_state("status", line)``); ``/status`` and ``bridge status`` show it.
    * ``check``, ``resolve`` and ``owns_handle`` must work without ``start`` (the command line
      calls ``check`` then ``resolve`` to add a subscription while the bridge runs elsewhere).
    * ``name`` is the account's name (its config section, e.g. ``bluesky`` or
      ``bluesky_sales``): every Ref, Source and Post the adapter builds carries it, not the
      network type.
    * Outbound actions take a ``key`` from ``action_key``, which the core writes down with the
      action before the call and hands back unchanged when it retries (after a crash, at
      start). An adapter must not create twice for one key: it uses the key where the network
      deduplicates (Bluesky: the record key; Mastodon: ``Idempotency-Key``) and, where it cannot,
      looks for what the first try created before sending again. A retry of an action the
      network already did returns what the first try created.
    """

    name: str
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
        """The newest ``limit`` posts of a FOLLOW source (value: the account id) or a QUERY
        source, newest last (for ``backfill`` and /recent). Must work without ``start``."""
        ...

    async def find_accounts(self, words: str, limit: int, cursor: str = "") -> ProfilePage:
        """Accounts matching ``words`` (names, handles, bios as the network searches them), at
        most ``limit`` (the core asks for 10 or fewer), from ``cursor`` (a ``next_cursor`` of an
        earlier page, "" for the first). Must work without ``start``. ValueError with a message
        for the user on bad input; a network that cannot search accounts refuses Action.FIND in
        ``capabilities()`` with its reason and raises Permanent(reason) here."""
        ...

    async def profile(self, handle: str) -> Profile:
        """One account by handle (as typed, without a ``network:`` prefix) or id, with
        ``followed_by_team`` where the network says. NotFound when it does not exist,
        ValueError when the handle is malformed. Must work without ``start``."""
        ...

    async def search_posts(self, query: str, limit: int) -> list[Post]:
        """A one-off search: the newest ``limit`` posts matching ``query``, newest last. Nothing
        is recorded (no cursor). Must work without ``start``; a network that cannot search
        refuses Action.SEARCH in ``capabilities()`` and raises Permanent(reason) here."""
        ...

    def lookup_cost(self, what: str, limit: int) -> str:
        """A one-line price note for a look-up (``what`` is "find", "who", "recent" or
        "search"; ``limit`` the results asked), e.g. "about $0.05 of the $25 budget", or "" on
        a free network. The core shows it when not empty. Must not do I/O."""
        ...

    def check_text(self, text: str) -> str | None:
        """None if ``text`` may be posted, else a one-line reason with the count, e.g.
        ``"the reply is 301 graphemes; Bluesky allows 300"``. Must not do I/O."""
        ...

    def capabilities(self) -> Capabilities:
        """Which actions the team account may take on this network (the others with the
        network's reason) and its text limit. Must not do I/O; may change once ``start`` has
        read the server's limits. The core offers only the buttons and commands allowed here."""
        ...

    def action_key(self) -> str:
        """A new key for one outbound action, in the form this network deduplicates on
        (Bluesky: a TID, used as the record key). At most 64 characters; must not do I/O."""
        ...

    async def post(self, text: str, key: str) -> Posted:
        """Create a top-level post from the team account. Must not create twice for one ``key``."""
        ...

    async def reply(self, parent: Post, text: str, key: str) -> Posted:
        """Reply to ``parent`` so that it threads under it on the network; a direct message
        (``parent.conversation``) is answered in the same conversation. Must not create twice
        for one ``key``."""
        ...

    async def like(self, post: Post, key: str) -> Posted:
        """Like ``post``. Must not create twice for one ``key``."""
        ...

    async def repost(self, post: Post, key: str) -> Posted:
        """Repost ``post``. Must not create twice for one ``key``."""
        ...

    async def follow(self, author: Author, key: str) -> Posted:
        """Follow ``author`` from the team account; an existing follow counts as done."""
        ...

    async def direct_message(self, handle: str, text: str, key: str) -> Posted:
        """Send a direct message to the account ``handle``. Where the network takes no key,
        the adapter must look for the message a first try of ``key`` sent before sending."""
        ...


@runtime_checkable
class ChatAdapter(Protocol):
    """A chat platform (Telegram, Discord).

    Contract:
    * ``start`` connects and begins turning what people do into ``host.handle`` calls,
      rendering the Answer it returns. It must return promptly. As for networks: AuthFailed
      on a refused token, Transient when unreachable; after ``stop`` it may be called again.
    * ``send`` delivers one post to one destination and returns the created message ids. It
      must raise RateLimited (with the server's retry_after) on a 429 for that destination,
      DestinationMoved when the platform says the chat now lives elsewhere (without sending
      there: the core moves the delivery), DestinationUnavailable when the chat is gone or
      closed to the bot, Permanent when the platform rejects the message for good, Transient
      otherwise. It must neutralise mentions and markup in network text (no @everyone ping, no
      injected HTML). Waiting for one destination must not hold up another.
    * A post that takes several chat messages (parts) is sent part by part, starting after
      ``delivery.parts_done``; after each part but the last the adapter must await
      ``progress(index, ids)`` before it sends the next one. A failure after that resends
      nothing already recorded.
    * The core cancels a send that gets no answer within its send timeout, counted from the
      start and again from each recorded part; a cancelled send is retried with backoff. So
      ``send`` must not sleep through its own pacing: when the destination's next slot is more
      than a few seconds away it raises RateLimited with that wait (the core comes back then,
      with the parts sent so far recorded) instead of waiting.
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

    @classmethod
    def parse_target(cls, text: str) -> ChatTarget:
        """Validate a destination of this platform (the ``chat_id[/thread]`` part) and return
        it in its canonical form; raise ValueError with a user-facing message that shows the
        right form. Must accept only what ``send`` can send to, and must not depend on settings
        or do I/O: the config and the command line call it on the class, before anything runs."""
        ...

    @classmethod
    def parse_user(cls, text: str) -> str:
        """Validate a person's id on this platform (the part after ``platform:`` in
        ``[bridge] admins``/``senders``) and return it as ``ChatUser.id`` will be; raise
        ValueError with a user-facing message that says how to find the id. Called on the class."""
        ...

    async def send(self, delivery: Delivery, progress: PartRecorder | None = None) -> Sent:
        """Send the post of ``delivery`` to ``delivery.target`` with its buttons, from the part
        after ``delivery.parts_done``; await ``progress`` (when given) after each part but the
        last. Return every part's message ids, those of ``parts_done`` first."""
        ...

    async def notify(self, target: ChatTarget, text: str, buttons: tuple[Button, ...] = ()) -> str:
        """Send a plain-text notice from the bridge (failures, status, a draft waiting for
        approval) with ``buttons`` under it (pressed: a BUTTON event with the button's token).
        Returns the id of the message that carries the buttons ("" when it cannot say), for
        ``edit``. Same errors as send."""
        ...

    async def edit(self, target: ChatTarget, message_id: str, text: str, buttons: tuple[Button, ...] = ()) -> None:
        """Replace the text and buttons of message ``message_id`` that this adapter sent to
        ``target`` with ``notify`` (no buttons: remove them). Text is plain and escaped as in
        notify and must fit one message (clipped, not split). An edit that changes nothing
        is not an error. Raises DestinationUnavailable when the message or chat is gone,
        Transient otherwise; the core then sends the text as a new notice."""
        ...
