"""A topic or thread per feed (``/follow alice --topic``): what the topic is called.

The core decides which subscriptions relay into a topic of their own and what it is named; the
chat adapter creates, reuses, reopens or recreates it (Telegram forum topics, Discord forum posts
and threads) and says which one it used; the dispatcher keeps its id in the ``topics`` table, per
room and feed, so the next post, a restart or another worker reuses it.
"""

from __future__ import annotations

from bridge.model import SourceKind
from bridge.storage.store import SubscriptionInfo

# Telegram: a topic name is 1-128 characters; Discord: a thread name 1-100. Adapters clip to
# their own limit; this keeps what is stored short.
MAX_NAME = 128


def topic_name(s: SubscriptionInfo) -> str:
    """The name of the topic a subscription relays into: the account's handle, or the query."""
    if s.source.kind is SourceKind.FOLLOW:
        name = f"@{s.label.lstrip('@')}" if s.label else s.source.value
    else:
        name = s.label or s.source.value or s.source.network
    return name[:MAX_NAME]
