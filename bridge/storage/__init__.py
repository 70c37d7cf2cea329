"""Persistence: tortoise-orm models, migrations and the one repository the engine uses.
Only the core imports this package; adapters reach storage through the Host."""
