"""Routes a post to the subscriptions that want it, through an index keyed by source.

A post arrives with the source that produced it (an account followed, a query watched,
the inbox); the index maps that source to its subscriptions in one dict lookup, so the
cost per post does not grow with the number of subscriptions.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.matching.filters import Filters
from bridge.model import ChatTarget, Item, Source, SourceKind

# Clocks differ between a network and us, and a post's timestamp is set by its author's
# client: a little slack keeps "start from now" from dropping a post made as we subscribed.
START_SLACK = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Route:
    """An enabled subscription as the matcher needs it."""

    subscription_id: int
    source: Source
    destination: ChatTarget
    filters: Filters
    start_at: datetime
    label: str = ""  # the handle or query the room subscribed with, for notices


class Matcher:
    def __init__(self) -> None:
        self._by_source: dict[Source, dict[int, Route]] = defaultdict(dict)
        self._by_id: dict[int, Route] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def put(self, route: Route) -> None:
        """Add or replace a subscription's route."""
        self.remove(route.subscription_id)
        self._by_id[route.subscription_id] = route
        self._by_source[route.source][route.subscription_id] = route

    def remove(self, subscription_id: int) -> None:
        old = self._by_id.pop(subscription_id, None)
        if old is not None:
            routes = self._by_source[old.source]
            routes.pop(subscription_id, None)
            if not routes:
                del self._by_source[old.source]

    def sources(self, network: str) -> frozenset[Source]:
        return frozenset(s for s in self._by_source if s.network == network)

    def routes(self, source: Source) -> list[Route]:
        return list(self._by_source.get(source, {}).values())

    def match(self, item: Item, *, ignore_start: bool = False) -> list[Route]:
        """The routes whose filters accept ``item``. A subscription never gets posts from
        before it was created (unless ``ignore_start``, for an explicit backfill); inbox items
        skip the word filters, since the team must see every mention and DM."""
        routes = self._by_source.get(item.source)
        if not routes:
            return []
        post = item.post
        out = []
        for route in routes.values():
            if not ignore_start and post.created_at < route.start_at - START_SLACK:
                continue
            if item.source.kind is SourceKind.INBOX or route.filters.accepts(post):
                out.append(route)
        return out
