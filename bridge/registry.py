"""Finds adapters through entry points, so the core never imports an adapter by name."""

from __future__ import annotations

from importlib.metadata import entry_points

NETWORK_GROUP = "bridge.networks"
CHAT_GROUP = "bridge.chats"


def available() -> dict[str, str]:
    """Registered adapter names mapped to their kind (``"network"`` or ``"chat"``)."""
    found: dict[str, str] = {}
    for group, kind in ((NETWORK_GROUP, "network"), (CHAT_GROUP, "chat")):
        for ep in entry_points(group=group):
            found[ep.name] = kind
    return found


def load(name: str) -> type:
    """Import and return the adapter class registered as ``name``. Raises LookupError."""
    for group in (NETWORK_GROUP, CHAT_GROUP):
        for ep in entry_points(group=group, name=name):
            return ep.load()
    raise LookupError(f"no adapter named {name!r} is installed")


def kind_of(cls: type) -> str:
    """``"network"`` for a network adapter class, ``"chat"`` for a chat adapter class."""
    return "network" if hasattr(cls, "owns_handle") else "chat"
