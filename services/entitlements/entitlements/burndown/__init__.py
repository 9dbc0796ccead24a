"""The burn-down engine of metered entitlements: grants + usage → balances, overage and access. Pure: no
I/O; usage comes from a callable the caller supplies.

Rules (the design's SEMANTICS.md, "Entitlements"; choices where it is silent marked *, following OpenMeter's
credit engine unless said otherwise):

- Amounts are Decimals in the meter's unit, computed in ``meterlib.money.MONEY_CONTEXT``; floats are
  rejected with TypeError. Usage must not be negative*: a negative segment raises ValueError.
- A grant counts in ``[effective_at, min(expires_at, voided_at))``; a voided grant's remaining balance
  disappears at ``voided_at`` while what it covered stays covered.
- Burn order: priority (lower first), soonest expiry (no expiry last), creation time, then id* (so that
  replays are deterministic); ``voided_at`` never reorders*.
- What no grant covers is overage. Overage stays outstanding within the period and is paid off by the
  next balance that appears* (a new grant, a recurrence), as in OpenMeter: ``overage`` is the usage of the
  period no grant has covered so far.
- Rollover defaults: ``min_rollover = max_rollover = 0``* (proto and OpenMeter): nothing rolls over unless
  asked. At a reset each grant still active keeps ``min(max_rollover, max(min_rollover, balance))``; with
  ``preserve_overage_at_reset`` the old overage is burned from the new balances in burn order, otherwise
  dropped.
- A recurring grant is restored to its amount at each recurrence* after ``effective_at`` (no rollover
  bounds apply, as in OpenMeter); at a reset that is also a recurrence, it is restored before preserved
  overage is burned from it*.
- ``issue_after_reset = N``: a synthetic grant of N per usage period* (effective at the period start,
  expiring at its end, priority ``issue_after_reset_priority``, id ``issue_after_reset@<start>``).
- Manual resets* cut the current period and, unless they retain the anchor, re-anchor later periods.
- ``has_access = balance > 0 or is_soft_limit``; CheckAndConsume under a hard limit needs ``balance >=
  amount`` (:func:`can_consume`).
- Thresholds fire once per period when crossed upward (:func:`crossed_thresholds`).
"""

from entitlements.burndown.engine import compute
from entitlements.burndown.hot import add_usage, can_consume
from entitlements.burndown.model import (
    ISSUE_AFTER_RESET_PREFIX,
    Grant,
    GrantBalance,
    MeteredEntitlement,
    RecomputeRequired,
    Snapshot,
    UsagePeriod,
    UsageReset,
    UsageSource,
)
from entitlements.burndown.order import GrantUsage, burn, burn_order_key, sort_in_burn_order
from entitlements.burndown.result import BurnDown, Segment, SegmentState, has_access
from entitlements.burndown.thresholds import (
    ZERO_BALANCE,
    Threshold,
    ThresholdKind,
    UsageLevel,
    crossed_thresholds,
    reached,
)
from entitlements.burndown.timeline import UsageSchedule, issue_after_reset_grant

__all__ = [
    "ISSUE_AFTER_RESET_PREFIX",
    "ZERO_BALANCE",
    "BurnDown",
    "Grant",
    "GrantBalance",
    "GrantUsage",
    "MeteredEntitlement",
    "RecomputeRequired",
    "Segment",
    "SegmentState",
    "Snapshot",
    "Threshold",
    "ThresholdKind",
    "UsageLevel",
    "UsagePeriod",
    "UsageReset",
    "UsageSchedule",
    "UsageSource",
    "add_usage",
    "burn",
    "burn_order_key",
    "can_consume",
    "compute",
    "crossed_thresholds",
    "has_access",
    "issue_after_reset_grant",
    "reached",
    "sort_in_burn_order",
]
