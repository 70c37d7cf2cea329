"""The team account's login session, kept across restarts.

Bluesky limits ``com.atproto.server.createSession`` to 30 per 5 minutes and 300 per day per
account: a bridge that logs in on every start or every error locks its owner out. So:

* the session (access and refresh tokens) is saved in the core's adapter state whenever it
  changes and reused on the next start;
* the access token is refreshed with the refresh token (``refreshSession``) shortly before it
  expires, or when the server calls it expired or invalid;
* the password is used only when there is no saved session or the refresh token itself is
  refused (revoked, or expired after months): one ``createSession``;
* when that is refused too, the keeper fails with one AuthFailed and makes no request for
  ``LOGIN_RETRY`` seconds (every call meanwhile gets the same AuthFailed at once); then it
  tries one login again, so a password fixed on the account's side is picked up without a
  restart. No retry loop against a revoked password: 144 attempts a day at most.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

from atproto_client import AsyncClient
from atproto_client import exceptions as sdk
from atproto_client.client.session import Session, SessionEvent

from adapters.bluesky.http import map_error, xrpc_error
from bridge.errors import AuthFailed

log = logging.getLogger("bridge.adapters.bluesky")

STATE_KEY = "session"
# Refresh this long before the access token expires (Bluesky's live for about 2 hours).
REFRESH_MARGIN = 300.0
# After a refused login, wait this long before the next attempt (Bluesky: 300 logins a day).
LOGIN_RETRY = 600.0


class SessionClient(AsyncClient):
    """The SDK client with its own refresh-before-each-call turned off: the SessionKeeper
    decides when to refresh, so that a refused refresh token leads to one login, not to an
    error on every call."""

    def _should_refresh_session(self) -> bool:
        return False


class SessionKeeper:
    def __init__(
        self,
        client: SessionClient,
        identifier: str,
        password: str,
        load: Callable[[], Awaitable[str | None]],
        save: Callable[[str | None], Awaitable[None]],
        replace: Callable[[str | None, str], Awaitable[bool]] | None = None,
    ) -> None:
        self.client = client
        self.identifier = identifier
        self._password = password
        self._load = load
        self._save = save
        # Compare-and-set (Host.replace_state): several processes share the saved session, so
        # a new one is written only over the one this process last read or wrote.
        self._replace = replace
        self._saved: str | None = None  # the saved value as this process last saw it
        self._theirs = False  # a write was refused: another process saved a newer session
        self._lock = asyncio.Lock()
        self._loaded = False
        self.failed: AuthFailed | None = None
        self.failed_at = 0.0  # time.monotonic() of the refusal
        self.login_retry = LOGIN_RETRY
        self.logins = 0  # createSession calls made by this process
        client.on_session_change(self._on_change)

    @property
    def did(self) -> str:
        session = self.client._session
        return session.did if session else ""

    @property
    def handle(self) -> str:
        session = self.client._session
        return session.handle if session else ""

    async def ensure(self) -> None:
        """Have a usable session: the saved one, a refreshed one, or (only when neither works)
        a new login. Raise AuthFailed when the credentials are refused."""
        self._raise_if_failed()
        session = self.client._session
        if session is not None and _expires_in(session) > REFRESH_MARGIN:
            return
        async with self._lock:
            self._raise_if_failed()
            session = self.client._session
            if session is None and not self._loaded:
                self._loaded = True
                await self._restore()
                session = self.client._session
            if session is None:
                await self._login()
            elif _expires_in(session) <= REFRESH_MARGIN and not await self._adopt_newer():
                await self._refresh_or_login()

    async def reauth(self, failed_token: str) -> None:
        """The server refused ``failed_token`` as expired or invalid: refresh (or, if the
        refresh token is refused too, log in once), unless another task already did."""
        async with self._lock:
            self._raise_if_failed()
            session = self.client._session
            if session is not None and session.access_jwt != failed_token:
                return  # someone refreshed meanwhile
            if session is None:  # forgotten after a refused login: only the password can help
                await self._login()
                return
            if await self._adopt_newer(failed_token):
                return
            await self._refresh_or_login()

    def retry_in(self) -> float:
        """Seconds until the next login attempt after a refusal (0 when not failed)."""
        if self.failed is None:
            return 0.0
        return max(0.0, self.failed_at + self.login_retry - time.monotonic())

    def _raise_if_failed(self) -> None:
        if self.failed is None:
            return
        if self.retry_in() > 0:
            raise self.failed
        self.failed = None  # time for one more attempt; without a session, ensure() logs in

    async def _adopt_newer(self, failed_token: str = "") -> bool:
        """Before refreshing: another process sharing the database may have refreshed already
        (the refresh token rotates: ours may be spent). Use its session when it is another one
        and not the refused ``failed_token``; True when one was taken."""
        if self._replace is None:
            return False
        try:
            raw = await self._load()
        except Exception:  # the database is briefly away: refresh as one process would
            return False
        if not raw or raw == self._saved:
            return False
        before = self.client._session.access_jwt if self.client._session else ""
        await self._restore(raw)  # the SDK updates its session object in place
        session = self.client._session
        if session is None or session.access_jwt in (before, failed_token):
            return False
        if _expires_in(session) <= REFRESH_MARGIN:
            return False  # theirs is as old: refresh it (its refresh token is the current one)
        log.info("session refreshed by another process; using it did=%s", self.did)
        return True

    async def _restore(self, raw: str | None = None) -> None:
        if raw is None:
            raw = await self._load()
        self._saved = raw
        if not raw:
            return
        try:
            saved = json.loads(raw)
            if saved.get("identifier") != self.identifier:
                log.info("saved session is for another account; logging in afresh")
                return
            await self.client._import_session_string(saved["session"])
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("saved session unreadable; logging in afresh")
            return
        log.info("session restored did=%s", self.did)

    async def _refresh_or_login(self) -> None:
        try:
            await self.client._refresh_and_set_session()
            log.info("session refreshed did=%s", self.did)
            await self._take_theirs()
            return
        except Exception as exc:  # decide below whether it is the token
            status, name, _ = xrpc_error(exc)
            if status is None or (status >= 500 or status == 429):
                raise map_error(exc, "com.atproto.server.refreshSession") from exc
            log.warning("refresh token refused (%s); logging in with the app password", name or status)
        await self._login()

    async def _login(self) -> None:
        self.logins += 1
        log.info("logging in identifier=%s", self.identifier)
        try:
            await self.client._get_and_set_session(self.identifier, self._password)
        except Exception as exc:
            status, name, message = xrpc_error(exc)
            if isinstance(exc, sdk.UnauthorizedError) or status == 401 or name in ("AuthenticationRequired", "AccountTakedown"):
                self.failed = AuthFailed(
                    f"Bluesky refused the login of {self.identifier} ({message or name or status}); "
                    "check [bluesky] identifier and password (use an app password) and run `bridge check`"
                )
                self.failed_at = time.monotonic()
                await self._forget()
                log.error("login refused identifier=%s error=%s", self.identifier, name or status)
                raise self.failed from None
            raise map_error(exc, "com.atproto.server.createSession") from exc
        log.info("logged in did=%s", self.did)
        await self._take_theirs()

    async def _take_theirs(self) -> None:
        """Our write of a new session was refused (another process saved one meanwhile): use
        the saved one, so that every process holds the newest refresh token."""
        if not self._theirs:
            return
        self._theirs = False
        log.info("another process saved a newer session first; using it")
        await self._restore()

    async def _forget(self) -> None:
        self.client._session_dispatcher._session = None
        self._saved = None
        try:
            await self._save(None)
        except Exception:  # the login failure is the error to report
            log.exception("could not clear the saved session")

    async def _on_change(self, event: SessionEvent, session: Session) -> None:
        # Saved on every login and refresh: the refresh token rotates, so a stale copy would
        # force a password login after the next restart. An imported one is already saved.
        if event == SessionEvent.IMPORT:
            return
        value = json.dumps({"identifier": self.identifier, "session": session.export()})
        if self._replace is None:
            await self._save(value)
            self._saved = value
        elif await self._replace(self._saved, value):
            self._saved = value
        else:
            self._theirs = True


def _expires_in(session: Session) -> float:
    try:
        exp = session.access_jwt_payload.exp
    except Exception:  # an unreadable token is as good as expired
        return 0.0
    return float(exp) - time.time() if exp else 0.0
