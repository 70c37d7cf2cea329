"""Deliveries held back (digests, quiet hours) and room quiet hours: the queries behind them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tortoise.transactions import in_transaction

from bridge.delivery.quiet import QuietHours
from bridge.model import ChatTarget, Post
from bridge.storage.models import DeliveryRow, Destination
from bridge.storage.serialize import post_from_json


@dataclass(frozen=True, slots=True)
class HeldDelivery:
    id: int
    post: Post
    destination: ChatTarget
    subscription_id: int | None


async def quiet_hours() -> dict[str, QuietHours]:
    """Every destination's quiet hours."""
    out = {}
    for row in await Destination.filter(quiet__not_isnull=True):
        q = QuietHours.from_json(row.quiet)
        if q is not None:
            out[row.target] = q
    return out


async def set_quiet(target: ChatTarget, quiet: QuietHours | None) -> None:
    row, _ = await Destination.get_or_create(target=str(target))
    row.quiet = quiet.to_json() if quiet else None
    await row.save()


async def due_held(now: datetime, limit: int = 500) -> list[HeldDelivery]:
    """Held deliveries whose release time has come, oldest first."""
    rows = (
        await DeliveryRow.filter(status="held", next_attempt_at__lte=now)
        .order_by("id")
        .limit(limit)
        .values("id", "destination", "subscription_id", "post__payload")
    )
    return [
        HeldDelivery(r["id"], post_from_json(r["post__payload"]), ChatTarget.parse(r["destination"]), r["subscription_id"])
        for r in rows
    ]


async def release(ids: Sequence[int], when: datetime) -> None:
    """Mark held deliveries as delivered (in a summary message)."""
    async with in_transaction():
        await DeliveryRow.filter(id__in=list(ids), status="held").update(status="sent", sent_at=when)
        # a summary is a delivery too: the room's "last delivery" moves
        for dest in {r for r in await DeliveryRow.filter(id__in=list(ids)).values_list("destination", flat=True)}:
            await Destination.filter(target=dest).update(last_delivery_at=when)


async def postpone(ids: Sequence[int], until: datetime, error: str = "") -> None:
    await DeliveryRow.filter(id__in=list(ids), status="held").update(next_attempt_at=until, last_error=error[:2000])


async def fail_held(target: ChatTarget, reason: str) -> None:
    await DeliveryRow.filter(destination=str(target), status="held").update(status="failed", last_error=reason[:2000])
