"""Microblog ↔ chat bridge: the core. Adapters live in the ``adapters`` package and are found
through the ``bridge.networks`` and ``bridge.chats`` entry-point groups."""

__version__ = "0.1.0"
