"""What a burn-down computation returns: the state at the target time, its history, and resume points."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

from entitlements.burndown.model import GrantBalance, Snapshot
from entitlements.burndown.order import GrantUsage
from meterlib.money import money_context
from meterlib.periods import Period

_ZERO: Final = Decimal(0)


def _total(balances: tuple[GrantBalance, ...]) -> Decimal:
    with money_context():
        return sum((b.balance for b in balances), _ZERO)


def has_access(balance: Decimal, is_soft_limit: bool) -> bool:
    """A metered entitlement's access: ``balance > 0 or is_soft_limit``."""
    return is_soft_limit or balance > 0


@dataclass(frozen=True)
class Segment:
    """A stretch of time in which no grant activates, expires, is voided or recurs and no reset happens:
    the unit the burn-down is computed on (the proto's ``BurnDownSegment``); its usage is asked once.

    Accounting: ``overage_at_start + usage == sum(grant usages) + overage_at_end``. ``overage_at_start``
    is the overage outstanding when the segment starts, before grants that appeared at its start (a new
    grant, a recurrence, a reset's balances) paid it off; ``balances_at_start`` are the balances before
    that payment, so ``balance_at_start - sum(grant usages) == balance_at_end``.
    """

    period: Period
    usage: Decimal
    grant_usages: tuple[GrantUsage, ...]
    balances_at_start: tuple[GrantBalance, ...]
    balances_at_end: tuple[GrantBalance, ...]
    overage_at_start: Decimal
    overage_at_end: Decimal
    starts_with_reset: bool

    @property
    def balance_at_start(self) -> Decimal:
        """Total balance at the segment's start."""
        return _total(self.balances_at_start)

    @property
    def balance_at_end(self) -> Decimal:
        """Total balance at the segment's end."""
        return _total(self.balances_at_end)

    @property
    def burned(self) -> Decimal:
        """Everything grants covered in the segment (its usage and overage they paid off)."""
        with money_context():
            return sum((u.usage for u in self.grant_usages), _ZERO)


@dataclass(frozen=True)
class SegmentState:
    """The hot copy: a metered entitlement's state inside one segment, to which usage that happens
    inside ``segment`` can be added without recomputing (see :func:`add_usage`).

    It has no instant of its own: it is the segment's state plus every usage folded into it so far. Do
    not resume a full computation from it; resume from a :class:`Snapshot` the computation returned.
    """

    segment: Period
    balances: tuple[GrantBalance, ...]
    overage: Decimal
    usage: Decimal
    granted: Decimal
    is_soft_limit: bool

    @property
    def balance(self) -> Decimal:
        """Total balance of the active grants."""
        return _total(self.balances)

    @property
    def has_access(self) -> bool:
        """``balance > 0 or is_soft_limit``."""
        return has_access(self.balance, self.is_soft_limit)


@dataclass(frozen=True)
class BurnDown:
    """A metered entitlement at instant ``at``, computed from its grants and usage.

    ``period`` is the usage period containing ``at``; ``usage``, ``overage`` and ``granted`` are of that
    period. ``balances`` lists the grants active at ``at`` in burn order (zero balances included).
    ``segment`` is the segment containing ``at``: it ends at the next grant change or reset.

    Resume points, all exact: ``snapshot`` at ``at`` itself, ``segment_snapshot`` at ``segment.start``
    and ``period_snapshot`` at ``period.start`` (each at the computation's start instead when that is
    later, i.e. when the computation itself began inside the segment or the period). Resuming from the
    period snapshot tolerates late usage anywhere in the current period.

    ``segments`` cover ``[start, at)``. When ``at`` is itself a boundary, what happens at it (a reset, a
    new grant paying off overage) is in the state at ``at`` but opens the next segment, not a listed one.
    """

    at: datetime
    period: Period
    segment: Period
    balances: tuple[GrantBalance, ...]
    usage: Decimal
    overage: Decimal
    granted: Decimal
    is_soft_limit: bool
    segments: tuple[Segment, ...]
    snapshot: Snapshot
    segment_snapshot: Snapshot
    period_snapshot: Snapshot

    @property
    def balance(self) -> Decimal:
        """The sum of the active grants' remaining balances, never negative."""
        return _total(self.balances)

    @property
    def has_access(self) -> bool:
        """``balance > 0 or is_soft_limit``."""
        return has_access(self.balance, self.is_soft_limit)

    def balance_of(self, grant_id: str) -> Decimal:
        """One grant's remaining balance; 0 for a grant not active at ``at`` (expired, voided, future)."""
        return self.snapshot.balance_of(grant_id)

    @property
    def hot_state(self) -> SegmentState:
        """The hot copy to keep: this state, open to usage anywhere in ``segment``."""
        return SegmentState(
            self.segment, self.balances, self.overage, self.usage, self.granted, self.is_soft_limit
        )
