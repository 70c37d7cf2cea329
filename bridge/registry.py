"""Finds adapters through entry points, so the core never imports an adapter by name.

A network adapter class is registered under ``bridge.networks``, a chat adapter class under
``bridge.chats``; the group says which it is. The name it is registered under is its type
(``bluesky``), which a config section names with ``type = "bluesky"`` (or by being called so).
"""

from __future__ import annotations

from importlib.metadata import entry_points

NETWORK_GROUP = "bridge.networks"
CHAT_GROUP = "bridge.chats"
GROUPS = ((NETWORK_GROUP, "network"), (CHAT_GROUP, "chat"))


def available() -> dict[str, str]:
    """Registered adapter types mapped to their kind (``"network"`` or ``"chat"``)."""
    found: dict[str, str] = {}
    for group, kind in GROUPS:
        for ep in entry_points(group=group):
            found[ep.name] = kind
    return found


def load(name: str) -> type:
    """Import and return the adapter class registered as ``name``. Raises LookupError."""
    return load_with_kind(name)[0]


def load_with_kind(name: str) -> tuple[type, str]:
    """The adapter class registered as ``name`` and its kind, from the group it is registered
    under. Raises LookupError."""
    for group, kind in GROUPS:
        for ep in entry_points(group=group, name=name):
            return ep.load(), kind
    raise LookupError(f"no adapter named {name!r} is installed")


def kind_of(cls: type) -> str:
    """``"network"`` or ``"chat"``: the entry-point group ``cls`` is registered under. A class
    handed to the core directly (tests, an embedding program) and registered nowhere says it
    with a ``kind`` class attribute. Raises LookupError when neither tells."""
    for group, kind in GROUPS:
        for ep in entry_points(group=group):
            # Compare names before importing: only a candidate's module is loaded.
            if ep.attr == cls.__name__ and cls.__module__.startswith(ep.module):
                try:
                    if ep.load() is cls:
                        return kind
                except Exception:  # another install's broken adapter is not this class
                    continue
    declared = getattr(cls, "kind", None)
    if declared in ("network", "chat"):
        return declared
    raise LookupError(f"{cls.__name__} is registered under neither {NETWORK_GROUP} nor {CHAT_GROUP} and has no kind attribute")
