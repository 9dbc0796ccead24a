"""The hot path: usage added to a segment's state without a full computation, and consumption checks."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from entitlements.burndown.model import RecomputeRequired, require_amount
from entitlements.burndown.order import burn
from entitlements.burndown.result import SegmentState
from meterlib.money import money_context
from meterlib.periods import as_utc


def add_usage(state: SegmentState, usage: Decimal, at: datetime) -> SegmentState:
    """``state`` after ``usage`` that happened at ``at``, burned in the same order as the full computation.

    Within one segment nothing but usage changes, and burning ``a`` then ``b`` is burning ``a + b``, so
    the order in which usage arrives inside the segment does not matter. Raises
    :class:`RecomputeRequired` when ``at`` is outside ``state.segment``: at or after its end a boundary
    (a reset, a grant activation, expiry, void or recurrence) was crossed, and before its start the
    usage is a late event of an earlier segment. The caller then runs the full computation (from the
    period snapshot for a late event of the current period, from an earlier one otherwise). The caller
    must also drop the hot state when a grant is created, voided or back-dated, or when a manual reset
    happens, since any of these may move the segment's end or its burn order.
    """
    require_amount(usage, "usage")
    if as_utc(at, "at") not in state.segment:
        raise RecomputeRequired(f"usage at {at.isoformat()} is outside the segment {state.segment}")
    balances, _, uncovered = burn(state.balances, usage)
    with money_context():
        return replace(state, balances=balances, overage=state.overage + uncovered, usage=state.usage + usage)


def can_consume(balance: Decimal, amount: Decimal, *, is_soft_limit: bool = False) -> bool:
    """Whether CheckAndConsume may record ``amount``: always under a soft limit (the excess becomes
    overage), else only when the balance covers all of it (``balance >= amount``), so concurrent
    callers serialised on the balance never overshoot a hard limit."""
    require_amount(amount, "amount to consume", positive=True)
    return is_soft_limit or balance >= amount
