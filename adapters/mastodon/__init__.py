"""Mastodon and Mastodon-compatible servers: the network adapter (entry point
``bridge.networks: mastodon``)."""

from adapters.mastodon.adapter import MastodonAdapter

__all__ = ["MastodonAdapter"]
