"""Logging in as ``bridge check`` will: who the token is, the server's limits, and every
missing scope named in one line with the fix."""

from __future__ import annotations

import pytest

from adapters.mastodon.http import MastodonHttp, MissingScope
from adapters.mastodon.login import NEEDED_SCOPES, log_in, missing_scopes
from bridge.errors import AuthFailed
from tests.adapters.mastodon.conftest import HttpFactory, World
from tests.emulators.mastodon import MastodonEmulator


async def test_login_reads_the_account_and_the_limits(world: World, make_http: HttpFactory) -> None:
    login = await log_in(await make_http())
    assert login.summary() == "@team@team.example (max 500 chars)"
    assert login.account_id == world.team.id and login.display_name == "The Team"
    assert login.rule.characters_reserved_per_url == 23
    assert login.streaming_url == world.server.url.replace("http://", "ws://")


async def test_a_server_with_other_limits() -> None:
    server = MastodonEmulator("big.example", max_characters=5000, characters_reserved_per_url=30)
    await server.start()
    http = MastodonHttp(server.url, server.add_token(server.add_account("crew")))
    try:
        login = await log_in(http)
        assert login.summary() == "@crew@big.example (max 5000 chars)"
        assert login.rule.characters_reserved_per_url == 30
    finally:
        await http.close()
        await server.stop()


@pytest.mark.parametrize("listed", [True, False], ids=["scopes-listed", "probed"])
async def test_missing_scopes_are_named_with_the_fix(world: World, make_http: HttpFactory, listed: bool) -> None:
    world.server.list_scopes = listed
    http = await make_http(token=world.server.add_token(world.team, ("read:accounts", "read:statuses", "write")))
    with pytest.raises(MissingScope) as info:
        await log_in(http)
    message = str(info.value)
    assert "read:notifications" in message and "Preferences → Development" in message and "\n" not in message
    if listed:
        assert info.value.scope == "read:notifications read:search read:lists"


async def test_a_revoked_token_is_refused(make_http: HttpFactory) -> None:
    with pytest.raises(AuthFailed, match="refused the Mastodon access token"):
        await log_in(await make_http(token="revoked"))


@pytest.mark.parametrize(
    ("granted", "missing"),
    [
        (["read", "write", "follow"], []),
        (["read", "write"], []),  # write covers write:follows
        (["read", "write:statuses", "follow"], ["write:favourites", "write:lists"]),
        (["write"], [s for s in NEEDED_SCOPES if s.startswith("read:")]),
        ([], list(NEEDED_SCOPES)),
    ],
)
def test_missing_scopes(granted: list[str], missing: list[str]) -> None:
    assert missing_scopes(granted) == missing
