"""A subscription timeline as a JSON-compatible dict (what the store persists), and back.

Instants are ISO 8601 strings in UTC with microseconds; plan and add-on versions are their catalog
snapshots (``billing.plans.plan_to_json``), so a stored subscription keeps the versions it was created
on even after the catalog archives them. ``subscription_from_dict(subscription_to_dict(s)) == s``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from billing.plans import add_on_from_json, add_on_to_json, plan_from_json, plan_to_json
from billing.subscriptions.model import (
    AddOnInstance,
    CancelTiming,
    ChangeKind,
    PlanSegment,
    Subscription,
)
from meterlib.periods import Cadence, as_utc

FORMAT_VERSION = 1
"""Bumped when the stored form changes incompatibly; readers refuse versions they do not know."""


def subscription_to_dict(sub: Subscription) -> dict[str, Any]:
    """The timeline as plain JSON values."""
    return {
        "format": FORMAT_VERSION,
        "currency": sub.currency,
        "billing_cadence": sub.billing_cadence.to_iso(),
        "billing_anchor": _time(sub.billing_anchor),
        "start": _time(sub.start),
        "created_at": _time(sub.created_at),
        "end": _opt_time(sub.end),
        "canceled_at": _opt_time(sub.canceled_at),
        "cancel_timing": None if sub.cancel_timing is None else sub.cancel_timing.value,
        "segments": [
            {
                "plan": plan_to_json(segment.plan),
                "start": _time(segment.start),
                "end": _opt_time(segment.end),
                "decided_at": _time(segment.decided_at),
                "end_decided_at": _opt_time(segment.end_decided_at),
                "kind": segment.kind.value,
            }
            for segment in sub.segments
        ],
        "add_ons": [
            {
                "add_on": add_on_to_json(instance.add_on),
                "quantity": instance.quantity,
                "active_from": _time(instance.active_from),
                "active_to": _opt_time(instance.active_to),
                "decided_at": _time(instance.decided_at),
                "end_decided_at": _opt_time(instance.end_decided_at),
            }
            for instance in sub.add_ons
        ],
    }


def subscription_from_dict(data: dict[str, Any]) -> Subscription:
    """The timeline :func:`subscription_to_dict` wrote; ValueError for an unknown format."""
    if data.get("format") != FORMAT_VERSION:
        raise ValueError(f"unknown subscription format {data.get('format')!r}")
    timing = data["cancel_timing"]
    return Subscription(
        currency=data["currency"],
        billing_cadence=Cadence.from_iso(data["billing_cadence"], "billing_cadence"),
        billing_anchor=_parse(data["billing_anchor"]),
        start=_parse(data["start"]),
        created_at=_parse(data["created_at"]),
        end=_opt_parse(data["end"]),
        canceled_at=_opt_parse(data["canceled_at"]),
        cancel_timing=None if timing is None else CancelTiming(timing),
        segments=tuple(
            PlanSegment(
                plan=plan_from_json(row["plan"]),
                start=_parse(row["start"]),
                end=_opt_parse(row["end"]),
                decided_at=_parse(row["decided_at"]),
                end_decided_at=_opt_parse(row["end_decided_at"]),
                kind=ChangeKind(row["kind"]),
            )
            for row in data["segments"]
        ),
        add_ons=tuple(
            AddOnInstance(
                add_on=add_on_from_json(row["add_on"]),
                quantity=int(row["quantity"]),
                active_from=_parse(row["active_from"]),
                active_to=_opt_parse(row["active_to"]),
                decided_at=_parse(row["decided_at"]),
                end_decided_at=_opt_parse(row["end_decided_at"]),
            )
            for row in data["add_ons"]
        ),
    )


def _time(at: datetime) -> str:
    return as_utc(at).isoformat(timespec="microseconds")


def _opt_time(at: datetime | None) -> str | None:
    return None if at is None else _time(at)


def _parse(text: str) -> datetime:
    return as_utc(datetime.fromisoformat(text))


def _opt_parse(text: str | None) -> datetime | None:
    return None if text is None else _parse(text)
