"""The full computation: replay a metered entitlement's grants and usage from a snapshot to an instant."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Final

from entitlements.burndown.model import (
    ISSUE_AFTER_RESET_PREFIX,
    Grant,
    GrantBalance,
    MeteredEntitlement,
    RecomputeRequired,
    Snapshot,
    UsageSource,
    require_amount,
)
from entitlements.burndown.order import GrantUsage, burn, burn_order_key
from entitlements.burndown.result import BurnDown, Segment
from entitlements.burndown.timeline import (
    UsageSchedule,
    issue_after_reset_grant,
    next_change_after,
    recurs_at,
)
from meterlib.money import money_context
from meterlib.periods import Period, as_utc

_ZERO: Final = Decimal(0)


@dataclass
class _Opening:
    """How the next segment opens: the state before overage was paid off at its start, and that payment."""

    balances: tuple[GrantBalance, ...]
    overage: Decimal
    paid: tuple[GrantUsage, ...] = ()
    reset: bool = False


@dataclass
class _Run:
    """The mutable state of one computation."""

    entitlement: MeteredEntitlement
    schedule: UsageSchedule
    grants: dict[str, Grant]
    source: UsageSource
    balances: dict[str, Decimal]
    overage: Decimal
    usage: Decimal
    granted: Decimal
    segments: list[Segment] = field(default_factory=list)

    def ordered(self) -> tuple[GrantBalance, ...]:
        """The active grants' balances in burn order."""
        active = sorted((self.grants[i] for i in self.balances), key=burn_order_key)
        return tuple(GrantBalance(g.id, self.balances[g.id]) for g in active)

    def snapshot(self, at: datetime) -> Snapshot:
        return Snapshot(at, self.ordered(), self.overage, self.usage, self.granted)

    def opening(self, reset: bool = False) -> _Opening:
        return _Opening(self.ordered(), self.overage, reset=reset)

    def add_issue_after_reset(self, period_start: datetime) -> None:
        grant = issue_after_reset_grant(self.entitlement, self.schedule.period_containing(period_start))
        if grant is not None:
            self.grants[grant.id] = grant

    def run_segment(self, start: datetime, end: datetime, opening: _Opening) -> _Opening:
        """Burn the usage of ``[start, end)``; the source is asked exactly once."""
        used = require_amount(self.source(start, end), f"usage in [{start.isoformat()}, {end.isoformat()})")
        balances, burned, uncovered = burn(self.ordered(), used)
        self.balances = {b.grant_id: b.balance for b in balances}
        self.overage += uncovered
        self.usage += used
        self.segments.append(
            Segment(
                period=Period(start, end),
                usage=used,
                grant_usages=_merge(balances, opening.paid, burned),
                balances_at_start=opening.balances,
                balances_at_end=balances,
                overage_at_start=opening.overage,
                overage_at_end=self.overage,
                starts_with_reset=opening.reset,
            )
        )
        return self.opening()

    def cross(self, at: datetime) -> tuple[_Opening, bool]:
        """Apply what happens at boundary ``at``: a reset, expiries and voids, recurrences, activations,
        then the outstanding overage is paid off from the new balances. Returns the next segment's opening
        and whether ``at`` was a reset."""
        reset = self.schedule.reset_at(at)
        # Grants that can never count again leave the book, so that long replays do not slow down.
        self.grants = {
            i: g for i, g in self.grants.items() if g.inactive_from is None or g.inactive_from > at
        }
        if reset is not None:
            # Rollover applies to the grants still active at the reset; the others' balances are gone.
            self.balances = {
                i: self.grants[i].rolled_over(b) for i, b in self.balances.items() if i in self.grants
            }
            self.overage = self.overage if reset.preserve_overage else _ZERO
            self.usage = _ZERO
            self.granted = sum(self.balances.values(), _ZERO)
            self.add_issue_after_reset(at)
        else:
            self.balances = {i: b for i, b in self.balances.items() if i in self.grants}
        for grant_id, balance in list(self.balances.items()):
            grant = self.grants[grant_id]
            if recurs_at(grant, at):
                self.granted += grant.amount - balance
                self.balances[grant_id] = grant.amount
        for grant in self.grants.values():
            if grant.id not in self.balances and grant.active_at(at):
                self.balances[grant.id] = grant.amount
                self.granted += grant.amount
        opening = self.opening(reset=reset is not None)
        balances, paid, self.overage = burn(opening.balances, self.overage)
        self.balances = {b.grant_id: b.balance for b in balances}
        opening.paid = paid
        return opening, reset is not None


def _merge(order: tuple[GrantBalance, ...], *parts: tuple[GrantUsage, ...]) -> tuple[GrantUsage, ...]:
    """Usage per grant summed over ``parts``, in burn order."""
    totals: dict[str, Decimal] = {}
    for part in parts:
        for used in part:
            totals[used.grant_id] = totals.get(used.grant_id, _ZERO) + used.usage
    return tuple(GrantUsage(b.grant_id, totals[b.grant_id]) for b in order if b.grant_id in totals)


def _grant_book(grants: Sequence[Grant]) -> dict[str, Grant]:
    book: dict[str, Grant] = {}
    for grant in grants:
        if not isinstance(grant, Grant):
            raise TypeError(f"grants must be Grant, not {type(grant).__name__}")
        if grant.id in book:
            raise ValueError(f"grant {grant.id} is given twice")
        if grant.id.startswith(ISSUE_AFTER_RESET_PREFIX):
            raise ValueError(f"grant id {grant.id}: the prefix {ISSUE_AFTER_RESET_PREFIX} is reserved")
        book[grant.id] = grant
    return book


def _start(run: _Run, start: datetime, snapshot: Snapshot | None) -> None:
    """Set the state at ``start``: from the snapshot, or fresh (every active grant at its amount)."""
    run.add_issue_after_reset(start)
    active = {g.id for g in run.grants.values() if g.active_at(start)}
    if snapshot is None:
        run.balances = {i: run.grants[i].amount for i in active}
        run.granted = sum(run.balances.values(), _ZERO)
        return
    listed = {b.grant_id for b in snapshot.balances}
    if listed != active:
        missing, unknown = sorted(active - listed), sorted(listed - active)
        raise RecomputeRequired(
            f"the snapshot at {start.isoformat()} does not match the grants active then "
            f"(not in the snapshot: {missing}; not active: {unknown})"
        )
    run.balances = {b.grant_id: b.balance for b in snapshot.balances}
    run.overage, run.usage, run.granted = snapshot.overage, snapshot.usage, snapshot.granted


def compute(
    entitlement: MeteredEntitlement,
    grants: Sequence[Grant],
    at: datetime,
    usage: UsageSource,
    *,
    snapshot: Snapshot | None = None,
    split_at: Iterable[datetime] = (),
) -> BurnDown:
    """The state of a metered entitlement at ``at``, replayed from ``snapshot`` (or, without one, from
    ``measure_usage_from`` with every grant active then at its full amount).

    Time is cut into segments at every reset (scheduled or manual), grant activation, expiry, void and
    recurrence in ``(start, at]``, and at the extra instants of ``split_at`` (e.g. history window
    bounds; they never change the result). ``usage(start, end)`` is asked once per segment and its usage
    is burned in burn order (:func:`burn_order_key`); what no grant covers adds to the overage.

    At a boundary, in this order: a reset rolls each still-active grant over to
    ``min(max_rollover, max(min_rollover, balance))``, keeps the overage when the reset preserves it and
    drops it otherwise, restarts the period's usage and issues the period's ``issue_after_reset`` grant;
    grants that expire or are voided there leave; recurring grants are restored to their amount;
    grants that become effective join at their amount; then the outstanding overage (carried over the
    reset, or left by an earlier segment of the period) is paid off from the new balances in burn order,
    as OpenMeter's engine does. So at a reset that coincides with a grant's recurrence the grant is
    restored to its full amount before any preserved overage is burned from it.

    Raises :class:`RecomputeRequired` when ``at`` is before the snapshot or the snapshot does not list
    exactly the grants active at its instant; ValueError or TypeError when the usage source returns
    something other than a finite, non-negative Decimal.
    """
    at = as_utc(at, "at")
    schedule = UsageSchedule(entitlement)
    if snapshot is None:
        start = min(entitlement.measure_usage_from, at)
    elif at < snapshot.at:
        raise RecomputeRequired(f"at {at.isoformat()} is before the snapshot at {snapshot.at.isoformat()}")
    else:
        start = snapshot.at
    splits = sorted({t for t in (as_utc(s, "split_at") for s in split_at) if start < t < at})
    with money_context():
        run = _Run(entitlement, schedule, _grant_book(grants), usage, {}, _ZERO, _ZERO, _ZERO)
        _start(run, start, snapshot)
        opening = run.opening(reset=schedule.reset_at(start) is not None)
        segment_snapshot = period_snapshot = run.snapshot(start)
        segment_start = cursor = start
        while True:
            boundary = next_change_after(schedule, run.grants.values(), cursor)
            end = min(boundary, at)
            for split in (s for s in splits if cursor < s < end):
                opening = run.run_segment(cursor, split, opening)
                cursor = split
            if cursor < end:
                opening = run.run_segment(cursor, end, opening)
                cursor = end
            if boundary > at:
                break
            opening, was_reset = run.cross(boundary)
            segment_start = cursor = boundary
            segment_snapshot = run.snapshot(boundary)
            if was_reset:
                period_snapshot = segment_snapshot
            if boundary == at:
                break
        following = next_change_after(schedule, run.grants.values(), at)
        return BurnDown(
            at=at,
            period=schedule.period_containing(at),
            segment=Period(segment_start, following),
            balances=run.ordered(),
            usage=run.usage,
            overage=run.overage,
            granted=run.granted,
            is_soft_limit=entitlement.is_soft_limit,
            segments=tuple(run.segments),
            snapshot=run.snapshot(at),
            segment_snapshot=segment_snapshot,
            period_snapshot=period_snapshot,
        )
