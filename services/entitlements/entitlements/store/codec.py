"""Entitlements, grants and outcomes as JSON, for the responses request ids keep.

Amounts are decimal strings, instants ISO 8601, cadences ISO 8601 durations: exact round trips.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from entitlements.domain import Entitlement, EntitlementType, Grant, MeteredConfig, Outcome, Recurrence
from meterlib.idempotency import JsonCodec
from meterlib.money import format_decimal
from meterlib.periods import Cadence, Period


def _time(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _required_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _decimal(value: Decimal | None) -> str | None:
    return None if value is None else format_decimal(value)


def _parse_decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def entitlement_to_json(e: Entitlement) -> dict[str, Any]:
    """The entitlement, view fields included."""
    m = e.metered
    period = e.current_usage_period
    return {
        "id": e.id,
        "customer_key": e.customer_key,
        "feature_key": e.feature_key,
        "type": e.type.value,
        "active_from": _time(e.active_from),
        "create_time": _time(e.create_time),
        "static_config": e.static_config,
        "metered": None
        if m is None
        else {
            "usage_period": m.usage_period.to_iso(),
            "anchor": _time(m.anchor),
            "measure_usage_from": _time(m.measure_usage_from),
            "meter_key": m.meter_key,
            "meter_group_filters": dict(m.meter_group_filters),
            "issue_after_reset": _decimal(m.issue_after_reset),
            "issue_after_reset_priority": m.issue_after_reset_priority,
            "is_soft_limit": m.is_soft_limit,
            "preserve_overage_at_reset": m.preserve_overage_at_reset,
        },
        "active_to": _time(e.active_to),
        "metadata": dict(e.metadata),
        "delete_time": _time(e.delete_time),
        "current_usage_period": None if period is None else [_time(period.start), _time(period.end)],
        "last_reset_time": _time(e.last_reset_time),
    }


def entitlement_from_json(d: dict[str, Any]) -> Entitlement:
    """The inverse of :func:`entitlement_to_json`."""
    m = d["metered"]
    period = d["current_usage_period"]
    return Entitlement(
        id=d["id"],
        customer_key=d["customer_key"],
        feature_key=d["feature_key"],
        type=EntitlementType(d["type"]),
        active_from=_required_time(d["active_from"]),
        create_time=_required_time(d["create_time"]),
        static_config=d["static_config"],
        metered=None
        if m is None
        else MeteredConfig(
            usage_period=Cadence.from_iso(m["usage_period"], "usage_period", allow_hours=True),
            anchor=_required_time(m["anchor"]),
            measure_usage_from=_required_time(m["measure_usage_from"]),
            meter_key=m["meter_key"],
            meter_group_filters=dict(m["meter_group_filters"]),
            issue_after_reset=_parse_decimal(m["issue_after_reset"]),
            issue_after_reset_priority=m["issue_after_reset_priority"],
            is_soft_limit=m["is_soft_limit"],
            preserve_overage_at_reset=m["preserve_overage_at_reset"],
        ),
        active_to=_parse_time(d["active_to"]),
        metadata=dict(d["metadata"]),
        delete_time=_parse_time(d["delete_time"]),
        current_usage_period=None
        if period is None
        else Period(_required_time(period[0]), _required_time(period[1])),
        last_reset_time=_parse_time(d["last_reset_time"]),
    )


def grant_to_json(g: Grant) -> dict[str, Any]:
    """The grant, its balance view included."""
    r = g.recurrence
    return {
        "id": g.id,
        "entitlement_id": g.entitlement_id,
        "amount": format_decimal(g.amount),
        "priority": g.priority,
        "effective_at": _time(g.effective_at),
        "create_time": _time(g.create_time),
        "expires_at": _time(g.expires_at),
        "min_rollover": format_decimal(g.min_rollover),
        "max_rollover": format_decimal(g.max_rollover),
        "recurrence": None if r is None else [r.interval.to_iso(), _time(r.anchor)],
        "metadata": dict(g.metadata),
        "void_time": _time(g.void_time),
        "balance": _decimal(g.balance),
    }


def grant_from_json(d: dict[str, Any]) -> Grant:
    """The inverse of :func:`grant_to_json`."""
    r = d["recurrence"]
    return Grant(
        id=d["id"],
        entitlement_id=d["entitlement_id"],
        amount=Decimal(d["amount"]),
        priority=d["priority"],
        effective_at=_required_time(d["effective_at"]),
        create_time=_required_time(d["create_time"]),
        expires_at=_parse_time(d["expires_at"]),
        min_rollover=Decimal(d["min_rollover"]),
        max_rollover=Decimal(d["max_rollover"]),
        recurrence=None
        if r is None
        else Recurrence(Cadence.from_iso(r[0], "recurrence", allow_hours=True), _required_time(r[1])),
        metadata=dict(d["metadata"]),
        void_time=_parse_time(d["void_time"]),
        balance=_parse_decimal(d["balance"]),
    )


def outcome_to_json(o: Outcome) -> dict[str, Any]:
    """An outcome as JSON."""
    return {
        "entitlement": None if o.entitlement is None else entitlement_to_json(o.entitlement),
        "grant": None if o.grant is None else grant_to_json(o.grant),
        "replaced_entitlement_id": o.replaced_entitlement_id,
    }


def outcome_from_json(d: dict[str, Any]) -> Outcome:
    """The inverse of :func:`outcome_to_json`."""
    return Outcome(
        entitlement=None if d["entitlement"] is None else entitlement_from_json(d["entitlement"]),
        grant=None if d["grant"] is None else grant_from_json(d["grant"]),
        replaced_entitlement_id=d["replaced_entitlement_id"],
    )


OUTCOME: JsonCodec[Outcome] = JsonCodec(outcome_to_json, outcome_from_json)
"""The response of every RPC keyed by a request id: an Outcome."""
