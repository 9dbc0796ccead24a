"""Usage thresholds for notifications: which ones a change of usage crossed upward (e.g. 50 %, 80 %, 100 %,
and the balance reaching zero)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Final

from entitlements.burndown.model import require_amount
from entitlements.burndown.result import BurnDown, SegmentState
from meterlib.money import money_context

_HUNDRED: Final = Decimal(100)


class ThresholdKind(StrEnum):
    """What a threshold watches."""

    USAGE_PERCENT = "usage_percent"
    ZERO_BALANCE = "zero_balance"


@dataclass(frozen=True)
class Threshold:
    """Usage reaching ``percent`` of what the period granted, or the balance reaching zero."""

    kind: ThresholdKind
    percent: Decimal | None = None

    def __post_init__(self) -> None:
        if self.kind is ThresholdKind.USAGE_PERCENT:
            require_amount(self.percent, "threshold percent", positive=True)
        elif self.percent is not None:
            raise ValueError("a zero-balance threshold has no percent")

    @classmethod
    def usage_percent(cls, percent: Decimal) -> Threshold:
        """Usage reaching ``percent`` % of the period's granted amount (above 100 % is overage)."""
        return cls(ThresholdKind.USAGE_PERCENT, percent)


ZERO_BALANCE: Final = Threshold(ThresholdKind.ZERO_BALANCE)
"""The balance of all active grants reaching zero."""


@dataclass(frozen=True)
class UsageLevel:
    """Where an entitlement stands in its usage period: usage, everything granted, the balance left."""

    usage: Decimal
    granted: Decimal
    balance: Decimal

    def __post_init__(self) -> None:
        require_amount(self.usage, "usage")
        require_amount(self.granted, "granted")
        require_amount(self.balance, "balance")

    @classmethod
    def of(cls, state: BurnDown | SegmentState) -> UsageLevel:
        """The level of a computation's result or of a hot state."""
        return cls(state.usage, state.granted, state.balance)


def reached(level: UsageLevel, threshold: Threshold) -> bool:
    """Whether ``level`` is at or beyond ``threshold``.

    A percentage is reached when ``usage * 100 >= percent * granted`` and there is some usage (with
    nothing granted, any usage is beyond every percentage). The zero balance is reached when the
    balance is 0 and something was granted or used (an idle entitlement without grants is not
    notified).
    """
    if threshold.kind is ThresholdKind.ZERO_BALANCE:
        return level.balance == 0 and (level.granted > 0 or level.usage > 0)
    assert threshold.percent is not None
    with money_context():
        return level.usage > 0 and level.usage * _HUNDRED >= threshold.percent * level.granted


def crossed_thresholds(
    previous: UsageLevel | None,
    current: UsageLevel,
    percents: Iterable[Decimal],
    *,
    zero_balance: bool = True,
    already_notified: Collection[Threshold] = (),
) -> tuple[Threshold, ...]:
    """The thresholds this change crossed upward: reached at ``current``, not at ``previous``, and not
    in ``already_notified``; percentages in ascending order, then the zero balance.

    ``previous`` and ``current`` must be levels of the same usage period. After a reset, pass
    ``previous=None`` (the start of the new period, where nothing counts as reached) and an emptied
    ``already_notified``: every threshold is armed again and fires once more in the new period, even
    one reached at the period's very start (e.g. a zero balance because preserved overage ate the
    rolled-over balances). Keep ``already_notified`` for the period so that a threshold fires once per
    period even when a new grant lowers the percentage and usage crosses it a second time.
    """
    wanted = [Threshold.usage_percent(p) for p in sorted(set(percents))]
    if zero_balance:
        wanted.append(ZERO_BALANCE)
    return tuple(
        t
        for t in wanted
        if t not in already_notified
        and reached(current, t)
        and (previous is None or not reached(previous, t))
    )
