"""The bridge's verbs as Discord application (slash) commands with typed options.

Each command only turns its options back into the verb's argument text and hands it to
``on_command``; the core decides everything else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Literal

import discord
from discord import app_commands

CommandHandler = Callable[[discord.Interaction, str, str], Awaitable[None]]
SubscriptionChoices = Callable[[discord.Interaction, str], Awaitable[list[tuple[str, str]]]]


def build_tree(client: discord.Client, on_command: CommandHandler, choices: SubscriptionChoices) -> app_commands.CommandTree:
    """A CommandTree with every verb; each calls ``on_command(interaction, verb, args)``.
    ``choices(interaction, typed)`` lists (label, id) of the room's subscriptions for autocomplete."""
    tree = app_commands.CommandTree(client)

    async def subscription_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice]:
        found = await choices(interaction, current)
        # Discord: at most 25 choices, name and value ≤ 100 characters.
        return [app_commands.Choice(name=label[:100], value=value[:100]) for label, value in found[:25]]

    @tree.command(name="follow", description="Relay an account's posts to this channel (room admins)")
    @app_commands.describe(
        handle="e.g. alice.bsky.social, @alice@mastodon.social, bluesky:alice",
        thread="relay into a thread of its own (a post in a forum channel)",
    )
    async def follow(interaction: discord.Interaction, handle: str, thread: bool = False) -> None:
        await on_command(interaction, "follow", f"{handle} --topic" if thread else handle)

    @tree.command(name="unfollow", description="Stop relaying an account here (room admins)")
    @app_commands.describe(handle="the account to stop following")
    async def unfollow(interaction: discord.Interaction, handle: str) -> None:
        await on_command(interaction, "unfollow", handle)

    @tree.command(name="watch", description="Relay posts matching a search query (room admins)")
    @app_commands.describe(
        query='e.g. CEO biotech, #nrf2027, "Home Depot"',
        thread="relay into a thread of its own (a post in a forum channel)",
    )
    async def watch(interaction: discord.Interaction, query: str, thread: bool = False) -> None:
        await on_command(interaction, "watch", f"{query} --topic" if thread else query)

    @tree.command(name="unwatch", description="Stop a search (room admins)")
    @app_commands.describe(query_or_id="the query, or the subscription id from /subs")
    @app_commands.autocomplete(query_or_id=subscription_autocomplete)
    async def unwatch(interaction: discord.Interaction, query_or_id: str) -> None:
        await on_command(interaction, "unwatch", query_or_id)

    @tree.command(name="subs", description="List this channel's subscriptions with ids and filters")
    async def subs(interaction: discord.Interaction) -> None:
        await on_command(interaction, "subs", "")

    @tree.command(name="filter", description="Set a subscription's filters (room admins)")
    @app_commands.describe(
        subscription="the subscription id from /subs",
        rules="include:… exclude:… replies:off reposts:off media:only",
    )
    @app_commands.autocomplete(subscription=subscription_autocomplete)
    async def filter_(interaction: discord.Interaction, subscription: str, rules: str) -> None:
        await on_command(interaction, "filter", f"{subscription} {rules}")

    @tree.command(name="digest", description="Batch a subscription hourly or daily (room admins)")
    @app_commands.describe(subscription="the subscription id from /subs", mode="off, hourly or daily")
    @app_commands.autocomplete(subscription=subscription_autocomplete)
    async def digest(interaction: discord.Interaction, subscription: str, mode: Literal["off", "hourly", "daily"]) -> None:
        await on_command(interaction, "digest", f"{subscription} {mode}")

    @tree.command(name="quiet", description="Quiet hours for this channel (room admins)")
    @app_commands.describe(hours="e.g. 22:00-07:00 Europe/Paris, or off")
    async def quiet(interaction: discord.Interaction, hours: str) -> None:
        await on_command(interaction, "quiet", hours)

    @tree.command(name="post", description="Post from the team account (senders)")
    @app_commands.describe(text="the post's text")
    async def post(interaction: discord.Interaction, text: str) -> None:
        await on_command(interaction, "post", text)

    @tree.command(name="dm", description="Send a direct message from the team account (senders)")
    @app_commands.describe(handle="who to write to", text="the message")
    async def dm(interaction: discord.Interaction, handle: str, text: str) -> None:
        await on_command(interaction, "dm", f"{handle} {text}")

    @tree.command(name="inbox", description="Relay the team account's mentions, replies and DMs here (room admins)")
    @app_commands.describe(state="on or off")
    async def inbox(interaction: discord.Interaction, state: Literal["on", "off"]) -> None:
        await on_command(interaction, "inbox", state)

    @tree.command(name="status", description="Health of this channel's feeds")
    async def status(interaction: discord.Interaction) -> None:
        await on_command(interaction, "status", "")

    @tree.command(name="pause", description="Stop relaying into this channel until /resume (room admins)")
    async def pause(interaction: discord.Interaction) -> None:
        await on_command(interaction, "pause", "")

    @tree.command(name="resume", description="Relay into this channel again (room admins)")
    async def resume(interaction: discord.Interaction) -> None:
        await on_command(interaction, "resume", "")

    @tree.command(name="find", description="Find accounts by words in their names and bios")
    @app_commands.describe(words="e.g. CEO biotech (prefix bluesky: to pick the network)")
    async def find(interaction: discord.Interaction, words: str) -> None:
        await on_command(interaction, "find", words)

    @tree.command(name="who", description="An account in brief")
    @app_commands.describe(handle="e.g. alice.bsky.social")
    async def who(interaction: discord.Interaction, handle: str) -> None:
        await on_command(interaction, "who", handle)

    @tree.command(name="recent", description="An account's last posts, without following it")
    @app_commands.describe(handle="e.g. alice.bsky.social", count="how many (1-20, default 5)")
    async def recent(interaction: discord.Interaction, handle: str, count: app_commands.Range[int, 1, 20] = 5) -> None:
        await on_command(interaction, "recent", f"{handle} {count}")

    @tree.command(name="search", description="The newest posts matching a query, once")
    @app_commands.describe(query="e.g. CEO biotech", count="how many (1-20, default 5)")
    async def search(interaction: discord.Interaction, query: str, count: app_commands.Range[int, 1, 20] = 5) -> None:
        await on_command(interaction, "search", f"{query} {count}")

    @tree.command(name="format", description="How posts look here: compact (one line) or full (room admins)")
    @app_commands.describe(style="compact: author, first words and link on one line; full: the whole post")
    async def format_(interaction: discord.Interaction, style: Literal["compact", "full"]) -> None:
        await on_command(interaction, "format", style)

    @tree.command(name="approval", description="Replies, posts and DMs wait for an approver (room admins)")
    @app_commands.describe(mode="on: texts wait; all: likes, reposts and follows too; off")
    async def approval(interaction: discord.Interaction, mode: Literal["on", "all", "off"]) -> None:
        await on_command(interaction, "approval", mode)

    @tree.command(name="audit", description="Who did what as the team account from this channel")
    @app_commands.describe(count="how many records (default 20)")
    async def audit(interaction: discord.Interaction, count: int = 20) -> None:
        await on_command(interaction, "audit", str(count))

    @tree.command(name="help", description="How to use the bridge, this channel's id and yours")
    async def help_(interaction: discord.Interaction) -> None:
        await on_command(interaction, "help", "")

    return tree


def commands_payload(tree: app_commands.CommandTree) -> list[dict]:
    """What a bulk overwrite would PUT for ``tree``."""
    return [command.to_dict(tree) for command in tree.get_commands()]


def commands_hash(tree: app_commands.CommandTree, application_id: int | None) -> str:
    """A digest of the command payload for this application: sync only when it changes."""
    text = json.dumps({"app": application_id, "commands": commands_payload(tree)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()
