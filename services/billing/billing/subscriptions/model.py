"""The subscription timeline: an immutable value from which phases, items and billing periods derive.

What is stored is the history of decisions: plan segments (the plan version in force from a start to an
end: created, changed, migrated), add-on instances (an add-on with a quantity over a time range) and the
cancellation. Phases and items are laid out from them on demand, so they can never disagree.

A change scheduled for a later instant (NEXT_BILLING_CYCLE, END_OF_PERIOD) is recorded at once as a
segment (or end) starting in the future: queries at an instant before it see it as pending, queries
after it see it applied. Nothing has to "run" at the change instant for charges to be right.

Every end records when it was decided (``end_decided_at``): an in-advance fee billed before its item's
end was known was billed for its whole period and is credited for the unused part; one whose end was
known (a phase end laid out at creation) is billed prorated in the first place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import cached_property

from billing.plans import AddOnVersion, PlanPhase, PlanVersion, RateCard
from meterlib.periods import Cadence, Period, as_utc, nth_period, period_index, period_start


class SubscriptionStatus(StrEnum):
    """Where a subscription is in its lifecycle at an instant."""

    SCHEDULED = "scheduled"
    ACTIVE = "active"
    CANCELING = "canceling"
    CANCELED = "canceled"


class ChangeTiming(StrEnum):
    """When a plan change, migration or add-on change takes effect."""

    IMMEDIATE = "immediate"
    NEXT_BILLING_CYCLE = "next_billing_cycle"


class CancelTiming(StrEnum):
    """When a cancellation takes effect."""

    IMMEDIATE = "immediate"
    END_OF_PERIOD = "end_of_period"


class ChangeKind(StrEnum):
    """How a plan segment came to be."""

    CREATE = "create"
    CHANGE = "change"
    MIGRATE = "migrate"


def _before(a: datetime | None, b: datetime | None) -> datetime | None:
    """The earlier of two optional ends (None is open, i.e. later than any instant)."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


@dataclass(frozen=True)
class PlanSegment:
    """A plan version in force over ``[start, end)``; its phases are laid out from ``start``."""

    plan: PlanVersion
    start: datetime
    end: datetime | None
    decided_at: datetime
    end_decided_at: datetime | None
    kind: ChangeKind

    def __post_init__(self) -> None:
        for name in ("start", "end", "decided_at", "end_decided_at"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, as_utc(value, name))


@dataclass(frozen=True)
class AddOnInstance:
    """An add-on bought with a quantity over ``[active_from, active_to)``."""

    add_on: AddOnVersion
    quantity: int
    active_from: datetime
    active_to: datetime | None
    decided_at: datetime
    end_decided_at: datetime | None

    def __post_init__(self) -> None:
        for name in ("active_from", "active_to", "decided_at", "end_decided_at"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, as_utc(value, name))


@dataclass(frozen=True)
class SubscriptionPhase:
    """A plan phase laid out in time (mirrors billing.v1.SubscriptionPhase)."""

    key: str
    name: str
    start: datetime
    end: datetime | None
    plan_key: str
    plan_version: int


@dataclass(frozen=True)
class SubscriptionItem:
    """One rate card over the time it applies (mirrors billing.v1.SubscriptionItem).

    ``end_decided_at`` is when its end became known; None when it was known from the item's start (a
    phase end, an end decided before the item started) or the item is open-ended.
    """

    key: str
    rate_card: RateCard
    phase_key: str
    add_on_key: str
    version: int
    quantity: int
    active_from: datetime
    active_to: datetime | None
    end_decided_at: datetime | None
    order: tuple[int, int]

    @property
    def id(self) -> str:
        """A stable identifier: what the item belongs to, its key and its start."""
        owner = f"addon:{self.add_on_key}@{self.version}" if self.add_on_key else f"v{self.version}"
        return f"{owner}/{self.phase_key}/{self.key}/{self.active_from.isoformat()}"

    @property
    def period(self) -> Period | None:
        """The item's active range, None while open-ended."""
        return None if self.active_to is None else Period(self.active_from, self.active_to)

    def active_in(self, period: Period) -> Period | None:
        """The part of ``period`` during which the item applies, None if none."""
        start = max(self.active_from, period.start)
        end = period.end if self.active_to is None else min(self.active_to, period.end)
        return Period(start, end) if start < end else None


@dataclass(frozen=True)
class PendingChange:
    """A plan change or migration scheduled for a later instant (mirrors billing.v1.PendingChange)."""

    plan_key: str
    plan_version: int
    effective_time: datetime
    kind: ChangeKind


@dataclass(frozen=True)
class Subscription:
    """A customer's subscription as an immutable timeline. Build it with ``create_subscription``."""

    currency: str
    billing_cadence: Cadence
    billing_anchor: datetime
    start: datetime
    created_at: datetime
    segments: tuple[PlanSegment, ...]
    add_ons: tuple[AddOnInstance, ...] = ()
    end: datetime | None = None
    canceled_at: datetime | None = None
    cancel_timing: CancelTiming | None = None

    def __post_init__(self) -> None:
        for name in ("billing_anchor", "start", "created_at", "end", "canceled_at"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, as_utc(value, name))
        object.__setattr__(self, "segments", tuple(self.segments))
        object.__setattr__(self, "add_ons", tuple(self.add_ons))
        if not self.segments or self.segments[0].start != self.start:
            raise ValueError("a subscription's first plan segment starts with it")

    # -- what is in force --------------------------------------------------------------------------

    def status_at(self, at: datetime) -> SubscriptionStatus:
        """SCHEDULED before the start, CANCELED from the end, CANCELING while an end is scheduled."""
        at = as_utc(at, "at")
        if self.end is not None and at >= self.end:
            return SubscriptionStatus.CANCELED
        if at < self.start:
            return SubscriptionStatus.SCHEDULED
        return SubscriptionStatus.ACTIVE if self.end is None else SubscriptionStatus.CANCELING

    def segment_at(self, at: datetime) -> PlanSegment:
        """The plan segment in force at ``at`` (the first before the start, the last after the end)."""
        at = as_utc(at, "at")
        current = self.segments[0]
        for segment in self.segments:
            if segment.start <= at:
                current = segment
        return current

    def plan_at(self, at: datetime) -> PlanVersion:
        """The plan version in force at ``at``."""
        return self.segment_at(at).plan

    def pending_change(self, at: datetime) -> PendingChange | None:
        """The plan change or migration decided but not yet in force at ``at``, if any."""
        at = as_utc(at, "at")
        for segment in self.segments[1:]:
            if segment.start > at and (self.end is None or segment.start < self.end):
                return PendingChange(segment.plan.key, segment.plan.version, segment.start, segment.kind)
        return None

    def add_ons_at(self, at: datetime) -> tuple[AddOnInstance, ...]:
        """The add-on instances in force at ``at``."""
        at = as_utc(at, "at")
        return tuple(
            a for a in self.add_ons if a.active_from <= at and (a.active_to is None or at < a.active_to)
        )

    # -- billing periods -------------------------------------------------------------------------

    def billing_period(self, at: datetime) -> Period:
        """The billing period containing ``at``: anchored, clipped to the subscription's life."""
        n = period_index(self.billing_anchor, self.billing_cadence, as_utc(at, "at"))
        return self._clipped(nth_period(self.billing_anchor, self.billing_cadence, n))

    def billing_periods(self, until: datetime, *, after: datetime | None = None) -> list[Period]:
        """The billing periods that end at or before ``until`` (and after ``after``): what an invoice
        run up to ``until`` must have invoiced, in order."""
        until = as_utc(until, "until")
        first = self.start if after is None else max(self.start, as_utc(after, "after"))
        n = period_index(self.billing_anchor, self.billing_cadence, first)
        periods: list[Period] = []
        while True:
            start = period_start(self.billing_anchor, self.billing_cadence, n)
            if self.end is not None and start >= self.end:
                break
            period = self._clipped(nth_period(self.billing_anchor, self.billing_cadence, n))
            if period.end > until:
                break
            if after is None or period.end > after:
                periods.append(period)
            n += 1
        return periods

    def _clipped(self, period: Period) -> Period:
        start = max(period.start, self.start)
        end = period.end if self.end is None else min(period.end, self.end)
        return Period(start, max(start, end))

    # -- laid out in time ------------------------------------------------------------------------

    @cached_property
    def _layout(self) -> tuple[tuple[PlanSegment, PlanPhase, SubscriptionPhase, datetime | None], ...]:
        """Each laid-out phase with its segment, plan phase and natural (unclipped) end."""
        result = []
        for segment in self.segments:
            limit = _before(segment.end, self.end)
            start = segment.start
            for phase in segment.plan.phases:
                if limit is not None and start >= limit:
                    break
                natural = None if phase.duration is None else period_start(start, phase.duration, 1)
                laid = SubscriptionPhase(
                    phase.key,
                    phase.name,
                    start,
                    _before(natural, limit),
                    segment.plan.key,
                    segment.plan.version,
                )
                result.append((segment, phase, laid, natural))
                if natural is None:
                    break
                start = natural
        return tuple(result)

    @property
    def phases(self) -> tuple[SubscriptionPhase, ...]:
        """Every segment's phases laid out from its start, clipped to the segment and subscription."""
        return tuple(laid for _, _, laid, _ in self._layout)

    @cached_property
    def items(self) -> tuple[SubscriptionItem, ...]:
        """Plan items (per phase) and add-on items, each with the range it applies, in line order."""
        items: list[SubscriptionItem] = []
        for index, (segment, plan_phase, phase, natural) in enumerate(self._layout):
            decided = self._end_decision(natural, segment.end, segment.end_decided_at, phase.start)
            for card in plan_phase.rate_cards:
                items.append(
                    SubscriptionItem(
                        card.key,
                        card,
                        phase.key,
                        "",
                        segment.plan.version,
                        1,
                        phase.start,
                        phase.end,
                        decided,
                        (0, index),
                    )
                )
        for index, instance in enumerate(self.add_ons):
            if self.end is not None and instance.active_from >= self.end:
                continue
            decided = self._end_decision(
                None, instance.active_to, instance.end_decided_at, instance.active_from
            )
            for card in instance.add_on.rate_cards:
                items.append(
                    SubscriptionItem(
                        card.key,
                        card,
                        "",
                        instance.add_on.key,
                        instance.add_on.version,
                        instance.quantity,
                        instance.active_from,
                        _before(instance.active_to, self.end),
                        decided,
                        (1, index),
                    )
                )
        return tuple(items)

    def _end_decision(
        self, natural: datetime | None, cut: datetime | None, cut_decided: datetime | None, start: datetime
    ) -> datetime | None:
        """When the end of an item ending at min(natural, cut, subscription end) became known.

        None when it was known from the item's start: a natural (phase) end that comes first, or an
        end decided no later than the item started.
        """
        candidates: list[tuple[datetime, datetime | None]] = []
        if natural is not None:
            candidates.append((natural, None))
        if cut is not None:
            candidates.append((cut, cut_decided))
        if self.end is not None:
            candidates.append((self.end, self.canceled_at))
        if not candidates:
            return None
        # The first end wins; on a tie the end known earliest explains it.
        end = min(at for at, _ in candidates)
        decisions = [d for at, d in candidates if at == end]
        if any(d is None or d <= start for d in decisions):
            return None
        return min(d for d in decisions if d is not None)
