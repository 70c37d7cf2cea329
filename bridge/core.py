"""What the command layer and the adapters' hosts need of the running bridge.

``bridge.app.Bridge`` provides it. Commands and hosts are written against this protocol, not
against ``Bridge``, so that the assembly (``app``) imports them and nothing imports it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from bridge.model import Batch, ChatTarget, Source

if TYPE_CHECKING:
    from bridge.commands import Commands
    from bridge.config import Config
    from bridge.delivery.quiet import QuietHours
    from bridge.matching.filters import Filters
    from bridge.ops.http import OpsServer
    from bridge.ops.metrics import Metrics
    from bridge.protocols import ChatAdapter, NetworkAdapter
    from bridge.storage.store import Store, SubscriptionInfo
    from bridge.workers import Workers


class Core(Protocol):
    config: Config
    store: Store
    networks: Mapping[str, NetworkAdapter]
    chats: Mapping[str, ChatAdapter]
    commands: Commands
    metrics: Metrics
    http: OpsServer | None
    workers: Workers  # the rooms and listeners this process holds (several workers on Postgres)

    async def subscribe(
        self, source: Source, label: str, target: ChatTarget, created_by: str, filters: Filters | None = None
    ) -> tuple[SubscriptionInfo, bool]:
        """Add (or re-enable) a subscription and route posts by it at once."""
        ...

    async def unsubscribe(self, sub_id: int) -> None:
        """Switch a subscription off and stop routing by it at once."""
        ...

    async def set_filters(self, sub: SubscriptionInfo, filters: Filters) -> None:
        """Store a subscription's filters and route by them at once."""
        ...

    async def set_format(self, target: ChatTarget, fmt: str) -> None:
        """Store a room's format ("full" or "compact") and relay in it at once."""
        ...

    async def set_quiet(self, target: ChatTarget, quiet: QuietHours | None) -> None:
        """Store a room's quiet hours (None: none) and hold by them at once."""
        ...

    async def pause(self, target: ChatTarget, reason: str) -> int:
        """Stop relaying into ``target``; returns how many waiting deliveries were failed."""
        ...

    async def refresh_routes(self) -> None:
        """Reload subscriptions, paused rooms and quiet hours from the database."""
        ...

    def refresh_routes_later(self) -> None:
        """``refresh_routes`` soon, in a task of its own."""
        ...

    def sources(self, network: str) -> frozenset[Source]:
        """What ``network`` must watch: the sources of enabled subscriptions, paused rooms included."""
        ...

    def filters(self, source: Source) -> tuple[Filters, ...]:
        """The filters of every enabled subscription that wants ``source``, paused rooms included."""
        ...

    async def ingest(self, network: str, batch: Batch) -> None:
        """Match a batch, write its deliveries, notices and cursors in one transaction."""
        ...

    async def chat_moved(self, old: ChatTarget, new: ChatTarget) -> None:
        """Move a chat's subscriptions and pending deliveries to its new id."""
        ...

    async def report_health(self, name: str, ok: bool, reason: str = "", *, limited: bool = False) -> None:
        """Record a platform's login health; tell its rooms and the admins when it changes."""
        ...
