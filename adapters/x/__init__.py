"""X (Twitter) API v2: the network adapter (``XAdapter``), its request path, OAuth 1.0a signing,
the cost governor, text and handle rules."""

from adapters.x.adapter import XAdapter

__all__ = ["XAdapter"]
