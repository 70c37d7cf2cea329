"""Discord chat adapter (discord.py): channel feeds, slash commands, buttons and replies."""

from adapters.discord.adapter import DiscordAdapter

__all__ = ["DiscordAdapter"]
