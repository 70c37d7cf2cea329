"""The small error hierarchy every adapter maps its platform's failures into.

The engine decides what to do from the class alone: retry soon (`Transient`),
wait for that destination only (`RateLimited`), record and move on
(`Permanent`), pause the destination (`DestinationUnavailable`), move it
(`DestinationMoved`) or stop and tell the operator (`AuthFailed`).
"""

from __future__ import annotations

from bridge.model import ChatTarget
from bridge.redaction import redact


class BridgeError(Exception):
    """Base of every error the core understands. Its text never carries a secret of the
    config: a platform's error may quote the refused token, and this text reaches logs,
    chat and the ledger."""

    def __str__(self) -> str:
        return redact(super().__str__())


class Transient(BridgeError):
    """The operation may succeed if retried later (timeouts, 5xx, dropped connections)."""


class RateLimited(Transient):
    """The platform asked us to wait `retry_after` seconds before the next request.

    `scope` names what is limited: a chat/destination id, a route, or ``"global"``.
    """

    def __init__(self, retry_after: float, scope: str = "", message: str = "") -> None:
        self.retry_after = max(0.0, float(retry_after))
        self.scope = scope
        super().__init__(message or f"rate limited for {self.retry_after:.1f}s ({scope or 'unscoped'})")


class Permanent(BridgeError):
    """Retrying the same request will fail the same way (bad request, rejected content)."""


class DestinationUnavailable(Permanent):
    """The destination itself is gone or closed to us: chat deleted, bot removed or blocked,
    missing permissions. The engine pauses deliveries to it and records the reason."""


class DestinationMoved(BridgeError):
    """The chat now lives at another id (Telegram: a group upgraded to a supergroup). Nothing
    was sent. The engine moves the chat's subscriptions and pending deliveries to ``new``
    (the core's ``chat_moved``), where this delivery is sent."""

    def __init__(self, old: ChatTarget, new: ChatTarget) -> None:
        self.old = old
        self.new = new
        super().__init__(f"{old} moved to {new}")


class NotFound(Permanent):
    """The named account, post or conversation does not exist on the network."""


class AuthFailed(BridgeError):
    """Our credentials were refused (revoked password, invalid token). Retrying will not help
    until the operator fixes the config."""
