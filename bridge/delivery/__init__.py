"""Ledger → chat: sending pending deliveries (dispatcher), their buttons, and holding them back
(digests, quiet hours)."""
