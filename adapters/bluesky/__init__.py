"""Bluesky: the network adapter (entry point ``bridge.networks: bluesky``)."""

from adapters.bluesky.adapter import BlueskyAdapter

__all__ = ["BlueskyAdapter"]
