"""Approval: in a room with ``/approval on`` a sender's reply, post or DM does not go out at
once; it becomes a draft shown in the room (who wrote it, where it would go, its length
checked) with Approve / Edit / Reject buttons. Only an approver's press sends it, once: the
press moves the draft row from ``waiting`` to ``sending`` with a compare-and-set, so of two
approvers pressing together one sends and the other is told it is already decided. With
``/approval all`` likes, reposts and follows wait too.

Drafts live in the database (table ``drafts``), so they survive restarts; a waiting draft
expires after ``[bridge] draft_expiry`` hours and the room is told. Every step is written to
the audit trail (``outbound_actions``) as a new row as it happens: drafted, edited, the
action itself with who approved it, rejected, expired, and each refused press.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from bridge.model import Action, Answer, Button, ButtonAction, ChatEvent, ChatTarget, ChatUser
from bridge.storage.models import Draft
from bridge.storage.store import utcnow

if TYPE_CHECKING:
    from bridge.commands import Commands

log = logging.getLogger("bridge.approval")

MODES = ("off", "on", "all")
TEXT_ACTIONS = (Action.POST, Action.REPLY, Action.DM)
EXPIRE_EVERY = 60.0
# Telegram: callback_data is 64 bytes at most; "approve:d" and an id fit.
TOKEN_VERBS = {ButtonAction.APPROVE: "approve", ButtonAction.EDIT: "edit", ButtonAction.REJECT: "reject"}
NO_REASON = "-"
# Where an Edit/Reject prompt message's draft token is kept (store state namespace).
DRAFT_PROMPTS = "draft-prompts"


def draft_token(verb: ButtonAction, draft_id: int) -> str:
    return f"{verb.value}:d{draft_id}"


def parse_draft_token(token: str) -> tuple[ButtonAction, int] | None:
    """(verb, draft id) of a draft button or prompt token, or None when it is not one."""
    verb, sep, raw = token.partition(":d")
    if not sep or not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        return None
    try:
        action = ButtonAction(verb)
    except ValueError:
        return None
    return (action, int(raw)) if action in TOKEN_VERBS else None


def draft_buttons(draft_id: int) -> tuple[Button, ...]:
    return tuple(Button(v, v.value.capitalize(), token=draft_token(v, draft_id)) for v in TOKEN_VERBS)


def _who(name: str, key: str) -> str:
    return f"{name} ({key})" if name and name != key else key


class Approvals:
    def __init__(self, commands: Commands) -> None:
        self.c = commands
        self.b = commands.b
        self._sending: set[int] = set()  # drafts this process is sending now

    # --- who and when --------------------------------------------------------------------

    def is_approver(self, user: ChatUser) -> bool:
        """``[bridge] approvers``; when it is empty, the bridge's admins."""
        return user.key in (self.b.config.approvers or self.b.config.admins)

    async def needed(self, target: ChatTarget, action: Action) -> bool:
        mode, _ = await self.b.store.room_setting(target)
        return mode == "all" or (mode == "on" and action in TEXT_ACTIONS)

    async def command(self, e: ChatEvent) -> Answer:
        """``/approval [on|off|all]``: room admins switch it; no argument shows it."""
        arg = e.args.strip().lower()
        mode, _ = await self.b.store.room_setting(e.target)
        approvers = ", ".join(sorted(self.b.config.approvers or self.b.config.admins)) or "nobody (set [bridge] approvers)"
        if not arg:
            return Answer(f"Approval is {mode} here. Approvers: {approvers}. Usage: /approval on|off|all")
        if arg not in MODES:
            return Answer(
                "Usage: /approval on (replies, posts and DMs wait for an approver), /approval all (likes, reposts and follows too) or /approval off",
                ok=False,
            )
        if not self.c.is_admin(e.user):
            return self.c._not_admin()
        await self.b.store.set_room_setting(e.target, approval=arg)
        if arg == "off":
            return Answer("Approval off: the senders' replies, posts and DMs go out at once.", public=True)
        what = "Every action" if arg == "all" else "Replies, posts and DMs"
        return Answer(
            f"Approval {arg}: {what} from here wait as drafts until an approver presses Approve ({approvers}).", public=True
        )

    # --- a draft ---------------------------------------------------------------------------

    async def draft(
        self, e: ChatEvent, network: str, action: Action, subject: str, text: str, request: dict[str, Any], where: str
    ) -> Answer:
        """Keep the action as a draft and show it in the room with its buttons."""
        row = await self.b.store.create_draft(
            room=str(e.target),
            author=e.user.key,
            author_name=e.user.name[:255],
            network=network,
            action=action.value,
            subject=subject[:512],
            target_url=where[:1024],
            text=text,
            request=request,
            expires_at=utcnow() + timedelta(hours=self.b.config.draft_expiry),
        )
        await self._audit(row, "drafted", e.user)
        log.info("draft created id=%d action=%s actor=%s room=%s", row.id, action, e.user.key, e.target)
        chat = self.b.chats.get(e.target.platform)
        if chat is not None:
            try:
                mid = await chat.notify(e.target, self.describe(row), draft_buttons(row.id))
            except Exception as exc:
                log.warning("draft not shown id=%d reason=%r", row.id, str(exc))
            else:
                if mid:
                    await self.b.store.set_draft_message(row.id, str(mid))
        return Answer(f"Saved as draft #{row.id}: it waits for an approver; nothing is sent until one presses Approve.")

    def describe(self, d: Draft, outcome: str = "") -> str:
        """The draft message: who, what, where, the length check, then the outcome (if any)."""
        head = f"Draft #{d.id}: {d.action} on {d.network} by {_who(d.author_name, d.author)}"
        lines = [head]
        if d.target_url or d.subject:
            lines.append(f"To: {d.target_url or d.subject}")
        if d.text:
            lines.append(f"Text: {d.text}")
            lines.append(f"Length: {self._length(d)}")
        if outcome:
            lines.append(outcome)
        else:
            lines.append(f"Waiting for an approver until {d.expires_at.strftime('%Y-%m-%d %H:%M UTC')}.")
        return "\n".join(lines)

    def _length(self, d: Draft) -> str:
        net = self.b.networks.get(d.network)
        if net is None:
            return f"{len(d.text)} characters (the {d.network} network is not configured now)"
        problem = net.check_text(d.text)
        if problem:
            return f"too long: {problem}"
        caps = net.capabilities()
        limit = f" of {caps.text_limit}" if caps.text_limit else ""
        return f"{len(d.text)}{limit} {caps.text_unit}, fits"

    # --- presses and prompts ---------------------------------------------------------------

    async def press(self, e: ChatEvent, verb: ButtonAction, draft_id: int) -> Answer:
        d = await self.b.store.draft(draft_id)
        if d is None or ChatTarget.parse(d.room).room != e.target.room:
            await self.c._refuse(e, d.network if d else "", "approve", f"draft {draft_id}", "button from another chat")
            return Answer("That button belongs to a message in another chat.", ok=False)
        if d.status != "waiting":
            return Answer(f"Draft #{d.id} is already {d.status}.", ok=False)
        if verb is ButtonAction.EDIT:
            if e.user.key != d.author and not self.is_approver(e.user):
                await self._refuse(d, e.user, "edit", "not the author or an approver")
                return Answer("Only its author or an approver may edit this draft.", ok=False)
            return Answer(f"New text for draft #{d.id}", ask_text_for=draft_token(ButtonAction.EDIT, d.id))
        if not self.is_approver(e.user):
            await self._refuse(d, e.user, verb.value, "not an approver")
            log.warning("refused draft=%d press=%s actor=%s reason=not-an-approver", d.id, verb, e.user.key)
            return Answer(
                f"Only the bridge's approvers may {verb.value} drafts; ask an admin to add {e.user.key} to [bridge] approvers.",
                ok=False,
            )
        if verb is ButtonAction.REJECT:
            return Answer(
                f"Why is draft #{d.id} rejected? (optional: send {NO_REASON} for no reason)",
                ask_text_for=draft_token(ButtonAction.REJECT, d.id),
            )
        return await self._approve(e, d)

    async def answered(self, e: ChatEvent, verb: ButtonAction, draft_id: int) -> Answer:
        """The text a person typed into an Edit or Reject prompt."""
        d = await self.b.store.draft(draft_id)
        if d is None or ChatTarget.parse(d.room).room != e.target.room:
            return Answer("That draft is not from this chat.", ok=False)
        if d.status != "waiting":
            return Answer(f"Draft #{d.id} is already {d.status}.", ok=False)
        text = e.text.strip()
        if verb is ButtonAction.EDIT:
            if e.user.key != d.author and not self.is_approver(e.user):
                await self._refuse(d, e.user, "edit", "not the author or an approver")
                return Answer("Only its author or an approver may edit this draft.", ok=False)
            net = self.b.networks.get(d.network)
            problem = "the text is empty" if not text else (net.check_text(text) if net else "")
            if problem:
                return Answer(f"Not changed: {problem}.", ok=False)
            if not await self.b.store.edit_draft(d.id, text):
                return Answer(f"Draft #{d.id} was decided meanwhile; not changed.", ok=False)
            d.text = text
            await self._audit(d, "edited", e.user)
            await self._show(d)
            return Answer(f"Draft #{d.id} changed; it still waits for an approver.")
        if verb is ButtonAction.REJECT:
            if not self.is_approver(e.user):
                await self._refuse(d, e.user, "reject", "not an approver")
                return Answer("Only the bridge's approvers may reject drafts.", ok=False)
            reason = "" if text == NO_REASON else text[:500]
            if not await self.b.store.claim_draft(d.id, "rejected", by=e.user.key, by_name=e.user.name, reason=reason):
                return Answer(f"Draft #{d.id} was decided meanwhile.", ok=False)
            await self._audit(d, "rejected", e.user, error=reason)
            why = f": {reason}" if reason else ""
            await self._show(d, f"Rejected by {_who(e.user.name, e.user.key)}{why}. Nothing was sent.")
            return Answer(f"Draft #{d.id} rejected; nothing was sent.")
        return Answer("That prompt does nothing.", ok=False)

    async def _approve(self, e: ChatEvent, d: Draft) -> Answer:
        net = self.b.networks.get(d.network)
        if net is None:
            return Answer(f"The {d.network} network is not configured any more.", ok=False)
        problem = net.check_text(d.text) if Action(d.action) in TEXT_ACTIONS else None
        if problem:
            return Answer(f"Not sent: {problem}. Edit it first.", ok=False)
        # Marked as this process's before the claim, so that recover() never takes a draft
        # being sent here for one a dead process left.
        if d.id in self._sending:
            return Answer(f"Draft #{d.id} was already decided by someone else.", ok=False)
        self._sending.add(d.id)
        try:
            # The compare-and-set: only one press moves the row out of "waiting".
            if not await self.b.store.claim_draft(d.id, "sending", by=e.user.key, by_name=e.user.name):
                return Answer(f"Draft #{d.id} was already decided by someone else.", ok=False)
            answer, posted = await self.c._run_action(
                net,
                Action(d.action),
                d.text,
                d.request,
                actor=d.author,
                actor_name=d.author_name,
                room=d.room,
                subject=d.subject,
                approved_by=e.user.key,
                approved_by_name=e.user.name[:255],
            )
        finally:
            self._sending.discard(d.id)
        by = _who(e.user.name, e.user.key)
        if posted is not None:
            await self.b.store.finish_draft(d.id, "sent", result_url=posted.url)
            await self._show(d, f"Approved by {by}; sent: {posted.url or posted.ref.id}")
            return Answer(f"Sent: {posted.url or posted.ref.id}")
        if answer.ok is False and "tries again by itself" in answer.text:
            await self._show(d, f"Approved by {by}; {answer.text}")
            return answer
        await self.b.store.finish_draft(d.id, "failed", reason=answer.text)
        await self._show(d, f"Approved by {by}, but not sent: {answer.text}")
        return answer

    # --- expiry ------------------------------------------------------------------------------

    async def expire(self) -> int:
        """Expire the waiting drafts whose time is up; tell their rooms. The number expired."""
        n = 0
        for d in await self.b.store.expired_drafts(utcnow()):
            if not await self.b.store.claim_draft(d.id, "expired", reason="no approver pressed Approve in time"):
                continue
            await self._audit(d, "expired", None, error="no approver pressed Approve in time")
            hours = self.b.config.draft_expiry
            await self._show(d, f"Expired after {hours:g} h without an approval. Nothing was sent.")
            n += 1
        return n

    async def recover(self) -> int:
        """Drafts left in *sending* by a process that died between the press and the end of the
        send: when the action was written down, the draft takes its outcome (a pending one is
        finished by the action log, then seen here); when the process died before writing it,
        nothing was sent and the draft waits again for a press. The number changed."""
        n = 0
        for d in await self.b.store.sending_drafts():
            if d.id in self._sending:
                continue
            row = await self.b.store.action_of_draft(d)
            if row is None:
                if await self.b.store.unclaim_draft(d.id):
                    await self._show(d)
                    n += 1
            elif row["status"] in ("done", "failed"):
                by = _who(d.decided_by_name, d.decided_by)
                if row["status"] == "done":
                    await self.b.store.finish_draft(d.id, "sent", result_url=row["result_url"])
                    await self._show(d, f"Approved by {by}; sent: {row['result_url'] or row['result_ref']}")
                else:
                    await self.b.store.finish_draft(d.id, "failed", reason=row["error"])
                    await self._show(d, f"Approved by {by}, but not sent: {row['error']}")
                n += 1
        return n

    async def expire_forever(self) -> None:
        while True:
            try:
                await self.recover()
                n = await self.expire()
                if n:
                    log.info("drafts expired count=%d", n)
            except Exception as exc:  # the database may be briefly away; next round
                log.warning("could not expire drafts reason=%r", str(exc))
            await asyncio.sleep(EXPIRE_EVERY)

    # --- showing and recording ---------------------------------------------------------------

    async def show_unshown(self, target: ChatTarget) -> int:
        """Show the waiting drafts of chat ``target`` that no message shows (a chat that moved:
        a Telegram group upgraded to a supergroup) with their buttons; the number shown."""
        n = 0
        for d in await self.b.store.unshown_drafts(target):
            room = ChatTarget.parse(d.room)
            chat = self.b.chats.get(room.platform)
            if chat is None:
                continue
            try:
                mid = await chat.notify(room, self.describe(d), draft_buttons(d.id))
            except Exception as exc:
                log.warning("draft not shown id=%d room=%s reason=%r", d.id, room, str(exc))
                continue
            if mid:
                await self.b.store.set_draft_message(d.id, str(mid))
            n += 1
        return n

    async def _show(self, d: Draft, outcome: str = "") -> None:
        """Update the draft message in place (buttons only while it waits); when it cannot be
        edited (gone, or the platform failed), tell the room in a new notice."""
        target = ChatTarget.parse(d.room)
        chat = self.b.chats.get(target.platform)
        if chat is None:
            return
        text = self.describe(d, outcome)
        buttons = () if outcome else draft_buttons(d.id)
        if d.message_id:
            try:
                await chat.edit(target, d.message_id, text, buttons)
                return
            except Exception as exc:
                log.warning("draft message not edited id=%d reason=%r", d.id, str(exc))
        with contextlib.suppress(Exception):
            await chat.notify(target, text, buttons)

    async def _audit(self, d: Draft, status: str, user: ChatUser | None, error: str = "") -> None:
        """One new audit row for a step of the draft: the author asked; ``user`` decided."""
        decided = user is not None and user.key != d.author
        await self.b.store.record_action(
            actor=d.author if (user is None or status != "edited") else user.key,
            actor_name=d.author_name if (user is None or status != "edited") else user.name[:255],
            room=d.room,
            network=d.network,
            action=d.action,
            subject=d.subject,
            text=d.text,
            status=status,
            error=error,
            approved_by=user.key if decided and status == "rejected" and user else "",
            approved_by_name=user.name[:255] if decided and status == "rejected" and user else "",
        )

    async def _refuse(self, d: Draft, user: ChatUser, press: str, why: str) -> None:
        await self.b.store.record_action(
            actor=user.key,
            actor_name=user.name[:255],
            room=d.room,
            network=d.network,
            action=d.action,
            subject=f"draft {d.id}: {press}",
            text=d.text,
            status="refused",
            error=why,
        )
