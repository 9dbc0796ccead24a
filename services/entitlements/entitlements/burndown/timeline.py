"""When things change: usage resets (scheduled and manual), grant activations, expiries, voids, recurrences.

Usage periods are anchored on the UTC calendar (``meterlib.periods``: month ends clamp, bounds are
computed from the anchor). A manual reset is a boundary of its own; unless it retains the anchor, later
scheduled boundaries are counted from it. A scheduled boundary and a manual reset at the same instant are
one reset, with the manual reset's overage setting.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from entitlements.burndown.model import (
    ISSUE_AFTER_RESET_PREFIX,
    Grant,
    MeteredEntitlement,
    UsagePeriod,
    UsageReset,
)
from meterlib.periods import Period, period_containing


@dataclass(frozen=True)
class ResetPoint:
    """A usage reset: the end of one usage period and the start of the next."""

    at: datetime
    preserve_overage: bool
    manual: bool


class UsageSchedule:
    """The usage periods of one metered entitlement: its anchored periods cut by its manual resets."""

    def __init__(self, entitlement: MeteredEntitlement) -> None:
        self._entitlement = entitlement
        self._manual: tuple[UsageReset, ...] = entitlement.resets
        self._manual_times = [r.at for r in self._manual]

    def _anchor_at(self, at: datetime) -> datetime:
        """The anchor in force at ``at``: the last re-anchoring manual reset at or before it, if any."""
        for reset in reversed(self._manual[: bisect_right(self._manual_times, at)]):
            if not reset.retain_anchor:
                return reset.at
        return self._entitlement.usage_period.anchor

    def _scheduled_period(self, at: datetime) -> Period:
        return period_containing(self._anchor_at(at), self._entitlement.usage_period.cadence, at)

    def next_reset_after(self, at: datetime) -> datetime:
        """The first reset strictly after ``at`` (there always is one: periods recur forever)."""
        scheduled = self._scheduled_period(at).end
        index = bisect_right(self._manual_times, at)
        if index < len(self._manual_times):
            return min(scheduled, self._manual_times[index])
        return scheduled

    def last_reset_at_or_before(self, at: datetime) -> datetime:
        """The start of the usage period containing ``at``."""
        scheduled = self._scheduled_period(at).start
        index = bisect_right(self._manual_times, at)
        return max(scheduled, self._manual_times[index - 1]) if index else scheduled

    def period_containing(self, at: datetime) -> Period:
        """The usage period ``[last reset <= at, next reset > at)``."""
        return Period(self.last_reset_at_or_before(at), self.next_reset_after(at))

    def reset_at(self, at: datetime) -> ResetPoint | None:
        """The reset happening exactly at ``at``, if one does."""
        index = bisect_left(self._manual_times, at)
        if index < len(self._manual_times) and self._manual_times[index] == at:
            manual = self._manual[index]
            preserve = manual.preserve_overage
            if preserve is None:
                preserve = self._entitlement.preserve_overage_at_reset
            return ResetPoint(at, preserve, manual=True)
        if self._scheduled_period(at).start == at:
            return ResetPoint(at, self._entitlement.preserve_overage_at_reset, manual=False)
        return None


def issue_after_reset_grant(entitlement: MeteredEntitlement, period: Period) -> Grant | None:
    """The synthetic grant ``issue_after_reset`` gives one usage period, or None without the setting.

    It grants N at the period's start and expires at its end (the next reset), with the entitlement's
    ``issue_after_reset_priority``. Its expiry is real, so among grants of equal priority it burns
    before grants that expire later or never (OpenMeter's default grant expires far in the future
    instead; burning first what is lost first at the reset is the customer-friendlier reading). Its id
    is ``ISSUE_AFTER_RESET_PREFIX`` + the period start in ISO 8601 UTC, stable across recomputations.
    Nothing of it rolls over; the next period's own grant takes its place, which gives the same balances
    as OpenMeter's single grant with ``min_rollover = max_rollover = N``.
    """
    amount = entitlement.issue_after_reset
    if amount is None:
        return None
    return Grant(
        id=ISSUE_AFTER_RESET_PREFIX + period.start.isoformat(),
        amount=amount,
        priority=entitlement.issue_after_reset_priority,
        effective_at=period.start,
        expires_at=period.end,
        created_at=period.start,
    )


def _next_recurrence_after(grant: Grant, recurrence: UsagePeriod, at: datetime) -> datetime:
    """The first recurrence strictly after both ``at`` and the grant's ``effective_at``."""
    base = max(at, grant.effective_at)
    return period_containing(recurrence.anchor, recurrence.cadence, base).end


def next_grant_change_after(grant: Grant, at: datetime) -> datetime | None:
    """The first instant strictly after ``at`` at which the grant activates, recurs, expires or is voided."""
    end = grant.inactive_from
    if end is not None and end <= at:
        return None
    if grant.effective_at > at:
        return grant.effective_at if end is None or grant.effective_at < end else None
    candidates = [end] if end is not None else []
    if grant.recurrence is not None:
        recurs = _next_recurrence_after(grant, grant.recurrence, at)
        if end is None or recurs < end:
            candidates.append(recurs)
    return min(candidates) if candidates else None


def recurs_at(grant: Grant, at: datetime) -> bool:
    """Whether the grant's balance is restored to its amount at ``at`` (a recurrence while active)."""
    if grant.recurrence is None or at <= grant.effective_at or not grant.active_at(at):
        return False
    return period_containing(grant.recurrence.anchor, grant.recurrence.cadence, at).start == at


def next_change_after(schedule: UsageSchedule, grants: Iterable[Grant], at: datetime) -> datetime:
    """The end of the segment containing ``at``: the next reset or grant change strictly after it."""
    following = schedule.next_reset_after(at)
    for grant in grants:
        change = next_grant_change_after(grant, at)
        if change is not None and change < following:
            following = change
    return following
