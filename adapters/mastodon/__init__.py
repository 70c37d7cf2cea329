"""Mastodon (and Mastodon-compatible servers): the request path, status HTML, conversion to
``bridge.model`` and handles. The network adapter itself is wired in a later step (see
README.md); nothing here registers an entry point yet."""
