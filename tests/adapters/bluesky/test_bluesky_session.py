"""The team account's session on the reference PDS: saved and reused across restarts,
refreshed when expired, and one clear AuthFailed (no retry loop) when the app password is
revoked. createSession calls are counted by the PDS itself (the driver wraps its login)."""

from __future__ import annotations

import json

import pytest
from atproto_client.client.session import SessionEvent

from bridge.errors import AuthFailed
from tests.adapters.bluesky.conftest import AdapterFactory, Team
from tests.atproto.harness import AtprotoStack


def with_access_token(state: dict[str, str], token: str) -> None:
    """Put ``token`` in the saved session in place of its access token."""
    saved = json.loads(state["session"])
    handle, did, _access, refresh, pds = saved["session"].split(":::")
    saved["session"] = ":::".join([handle, did, token, refresh, pds])
    state["session"] = json.dumps(saved)


async def test_session_is_saved_and_reused(atproto: AtprotoStack, make_adapter: AdapterFactory, team: Team) -> None:
    first, host = await make_adapter()
    assert await first.check() == f"ok: @{team.handle} on {atproto.pds}"
    assert "session" in host.state
    assert team.app_password not in host.state["session"], "the password is never stored"
    await first.stop()
    second, _ = await make_adapter(host)
    assert await second.check() == f"ok: @{team.handle} on {atproto.pds}"
    assert await atproto.login_count(team.handle) == 1


async def test_expired_access_token_is_refreshed_without_a_login(
    atproto: AtprotoStack, make_adapter: AdapterFactory, team: Team
) -> None:
    first, host = await make_adapter()
    await first.stop()
    with_access_token(host.state, await atproto.expired_access_token(team.account))
    second, _ = await make_adapter(host)
    posted = await second.post("still here after a long downtime", second.action_key())
    assert posted.ref.id.startswith(f"at://{team.account.did}/app.bsky.feed.post/")
    assert await atproto.login_count(team.handle) == 1, "refreshed, not logged in again"
    assert json.loads(host.state["session"])["session"].split(":::")[2] != await atproto.expired_access_token(team.account)


async def test_token_refused_by_the_server_mid_run_is_refreshed_once(
    atproto: AtprotoStack, make_adapter: AdapterFactory, team: Team
) -> None:
    adapter, _ = await make_adapter()
    session = adapter.client._session
    assert session is not None
    # Looks fresh to us (its expiry is hours away) but the server refuses it (InvalidToken):
    # the adapter must refresh and retry the call, once, without logging in.
    head, payload, signature = session.access_jwt.split(".")
    session.access_jwt = ".".join([head, payload, ("A" if signature[0] != "A" else "B") + signature[1:]])
    refused = session.access_jwt
    posted = await adapter.post("after a refresh", adapter.action_key())
    assert posted.ref.id.startswith("at://")
    assert adapter.client._session is not None and adapter.client._session.access_jwt != refused
    assert await atproto.login_count(team.handle) == 1


async def test_revoked_app_password_fails_once_and_clearly(
    atproto: AtprotoStack, make_adapter: AdapterFactory, team: Team
) -> None:
    first, host = await make_adapter()
    await first.stop()
    await atproto.revoke_app_password(team.account)
    with_access_token(host.state, await atproto.expired_access_token(team.account))

    second, _ = await make_adapter(host, start=False)
    with pytest.raises(AuthFailed, match=rf"Bluesky refused the login of {team.handle}.*app password"):
        await second.start()
    assert await atproto.login_count(team.handle) == 2, "one login attempt after the refresh was refused"
    assert "session" not in host.state, "the dead session is forgotten"
    # no retry loop: later calls fail at once, without asking the server again
    with pytest.raises(AuthFailed):
        await second.post("hello?", second.action_key())
    with pytest.raises(AuthFailed):
        await second.poll_once()
    assert await atproto.login_count(team.handle) == 2
    await atproto.process_all()
    feed = await atproto.query_appview("app.bsky.feed.getAuthorFeed", actor=team.account.did)
    assert feed["feed"] == [], "nothing was sent"


async def test_wrong_password_is_refused_at_start(atproto: AtprotoStack, make_adapter: AdapterFactory, team: Team) -> None:
    adapter, _ = await make_adapter(start=False, password="wrong-wrong-wrong-wrong")
    with pytest.raises(AuthFailed, match="check \\[bluesky\\] identifier and password"):
        await adapter.start()


async def test_two_processes_share_the_session_the_second_takes_the_refresh_of_the_first(
    atproto: AtprotoStack, make_adapter: AdapterFactory, team: Team
) -> None:
    """Several workers on one database share the saved session: the one that refreshes first
    saves it, the other reads it instead of refreshing with a refresh token already spent, and
    a write over a session it has not seen is refused."""
    first, host = await make_adapter()
    await first.stop()
    expired = await atproto.expired_access_token(team.account)
    with_access_token(host.state, expired)
    old = host.state["session"]
    a, _ = await make_adapter(host, start=False)
    b, _ = await make_adapter(host, start=False)
    await a.session._restore()
    await b.session._restore()  # both hold the same expired session, as two workers after a pause

    await a.post("refreshed by the first worker", a.action_key())
    refreshed = host.state["session"]
    assert refreshed != old
    await b.post("and sent by the second with the same session", b.action_key())
    assert host.state["session"] == refreshed, "the second worker did not write a session of its own"
    assert a.client._session is not None and b.client._session is not None
    assert b.client._session.refresh_jwt == a.client._session.refresh_jwt
    assert await atproto.login_count(team.handle) == 1

    # a worker that still believes the old session is saved cannot overwrite the newer one
    b.session._saved = old
    assert b.client._session is not None
    await b.session._on_change(SessionEvent.REFRESH, b.client._session)
    assert host.state["session"] == refreshed
    await b.session._take_theirs()  # and it adopts what is saved
    assert b.session._saved == refreshed
