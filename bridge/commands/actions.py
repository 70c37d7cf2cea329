"""Actions taken as the team account (post, reply, DM, like, repost, follow), made so that
none is lost and none is done twice.

An action is written down as ``pending`` (who asked, the room, the text, the network and a key
the network deduplicates on) before the network call, and marked ``done`` or ``failed`` after
it. When the process dies in between, or the network does not answer, the row stays pending:
at the next start, and every minute while the bridge runs, pending actions are tried again
with the same key. The adapter's contract is that one key never creates twice (Bluesky: the
key is the record key, so a second create names a record that exists and counts as done), so a
retry either finishes the action or finds it finished. The room is told the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from bridge.errors import BridgeError, RateLimited, Transient
from bridge.model import Action, Author, ChatTarget, Post, Posted
from bridge.protocols import NetworkAdapter
from bridge.storage.serialize import post_from_json, post_to_json
from bridge.storage.store import PendingAction, Store, utcnow

log = logging.getLogger("bridge.actions")

# Pending actions are looked at this often while the bridge runs, once they are this old
# (younger ones may still be in their first call in another process).
RETRY_EVERY = 60.0
RETRY_AFTER = timedelta(seconds=30)
# An action the network has not answered for this long is marked failed: the room is told, and
# the person may ask again (with a new key).
GIVE_UP_AFTER = timedelta(hours=1)


def post_request(post: Post) -> dict[str, Any]:
    return {"post": post_to_json(post)}


def author_request(author: Author) -> dict[str, Any]:
    return {"author": {"id": author.id, "handle": author.handle, "display_name": author.display_name, "url": author.url}}


def call_for(net: NetworkAdapter, action: Action, text: str, request: Mapping[str, Any], key: str) -> Awaitable[Posted]:
    """The adapter call that does ``action``, from what was written down for it."""
    post = post_from_json(request["post"]) if isinstance(request.get("post"), dict) else None
    if action is Action.POST:
        return net.post(text, key)
    if action in (Action.REPLY, Action.DM) and post is not None:
        return net.reply(post, text, key)
    if action is Action.DM:
        return net.direct_message(str(request.get("handle", "")), text, key)
    if action is Action.FOLLOW:
        a = request.get("author") or {}
        return net.follow(Author(str(a.get("id", "")), str(a.get("handle", "")), str(a.get("display_name", ""))), key)
    if post is None:
        raise ValueError(f"the {action} has no post to act on")
    return net.like(post, key) if action is Action.LIKE else net.repost(post, key)


class Unfinished(Exception):
    """The network did not answer: the action stays pending and is tried again with its key."""

    def __init__(self, cause: Transient) -> None:
        super().__init__(str(cause))
        self.cause = cause


class ActionLog:
    """Writes actions down before doing them, records their outcome, and finishes the ones a
    crash or an outage left pending."""

    def __init__(
        self,
        store: Store,
        networks: Callable[[], Mapping[str, NetworkAdapter]],
        notify: Callable[[ChatTarget, str], Awaitable[None]],
    ) -> None:
        self.store = store
        self.networks = networks
        self.notify = notify
        self._in_flight: set[int] = set()

    async def run(self, net: NetworkAdapter, action: Action, text: str, request: Mapping[str, Any], **record: Any) -> Posted:
        """Write the action down, do it, record the outcome. Raises Unfinished when the network
        did not answer (the action stays pending), the adapter's error when it refused."""
        key = net.action_key()
        action_id = await self.store.begin_action(
            network=net.name, action=action.value, text=text, key=key, request=request, **record
        )
        self._in_flight.add(action_id)
        try:
            return await self._attempt(action_id, net, action, text, request, key)
        finally:
            self._in_flight.discard(action_id)

    async def _attempt(
        self, action_id: int, net: NetworkAdapter, action: Action, text: str, request: Mapping[str, Any], key: str
    ) -> Posted:
        try:
            posted = await call_for(net, action, text, request, key)
        except RateLimited as exc:
            # A 429 is an answer: the network did not do it. The person may ask again later.
            await self.store.finish_action(action_id, "failed", error=str(exc))
            raise
        except Transient as exc:  # no answer: it may or may not have been done
            log.warning("action unfinished action=%s id=%d network=%s reason=%r", action, action_id, net.name, str(exc))
            raise Unfinished(exc) from exc
        except (BridgeError, ValueError) as exc:
            await self.store.finish_action(action_id, "failed", error=str(exc))
            raise
        await self.store.finish_action(action_id, "done", result_ref=posted.ref.id, result_url=posted.url)
        log.info("action done action=%s id=%d network=%s result=%s", action, action_id, net.name, posted.ref)
        return posted

    async def finish_pending(self, older_than: timedelta = RETRY_AFTER) -> int:
        """Try each pending action again with its key (or give it up when too old); tell its
        room the outcome. The number finished (done or failed)."""
        finished = 0
        now = utcnow()
        for row in await self.store.pending_actions(now - older_than):
            if row.id in self._in_flight:
                continue
            net = self.networks().get(row.network)
            if net is None:
                continue  # its account is not configured now; kept for when it is again
            try:
                action = Action(row.action)
            except ValueError:
                await self.store.finish_action(row.id, "failed", error=f"unknown action {row.action!r}")
                continue
            self._in_flight.add(row.id)
            try:
                posted = await self._attempt(row.id, net, action, row.text, row.request, row.key)
            except Unfinished as exc:
                if now - row.created_at < GIVE_UP_AFTER:
                    continue
                reason = f"{net.name} did not answer for an hour ({exc})"
                await self.store.finish_action(row.id, "failed", error=reason)
                await self._tell(row, f"was not done: {reason}. Ask again if it is still wanted.")
            except (BridgeError, ValueError) as exc:
                await self._tell(row, f"was not done: {exc}")
            except Exception:
                log.exception("pending action crashed id=%d", row.id)
                continue
            else:
                await self._tell(row, "is done" + (f": {posted.url}" if posted.url else "."))
            finally:
                self._in_flight.discard(row.id)
            finished += 1
        return finished

    async def _tell(self, row: PendingAction, outcome: str) -> None:
        what = f"The {row.action} {row.actor} asked for on {row.network}"
        if row.text:
            what += f" ({_brief(row.text)})"
        with contextlib.suppress(Exception):  # the room may be gone; the audit row says it all
            await self.notify(ChatTarget.parse(row.room), f"{what} {outcome}")

    async def run_forever(self) -> None:
        """At start: every pending action (the process that wrote it is gone); then, every
        minute, those that waited long enough."""
        first = True
        while True:
            try:
                n = await self.finish_pending(timedelta(0) if first else RETRY_AFTER)
                if n:
                    log.info("pending actions finished count=%d", n)
                first = False
            except Exception as exc:  # the database may be briefly away; next round
                log.warning("could not finish pending actions reason=%r", str(exc))
            await asyncio.sleep(RETRY_EVERY)


def _brief(text: str, limit: int = 60) -> str:
    one = " ".join(text.split())
    return repr(one if len(one) <= limit else one[: limit - 1] + "…")
