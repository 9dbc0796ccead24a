"""The hot state of a metered entitlement: its current burn-down segment, as kept in Redis.

Within a segment the total balance falls by the usage until zero and the rest is overage, so a handful
of numbers answer a Check (see docs/entitlements.md). Times are stored in a fixed-width UTC form so
that the scripts can compare them as strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from typing import Any

from meterlib.money import format_decimal

_ZERO = Decimal(0)
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def stored_time(at: datetime) -> str:
    """``2024-06-15T12:00:00.000000Z``: fixed width, so string order is time order."""
    return at.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_stored_time(text: str) -> datetime:
    """The inverse of ``stored_time``."""
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)


@dataclass(frozen=True)
class Segment:
    """What the truth says at a segment's start (computed by the burn-down engine)."""

    segment_start: datetime
    segment_end: datetime | None
    period_start: datetime
    period_end: datetime
    start_balance: Decimal
    """The total balance at the segment's start, after burning overage carried in."""
    start_overage: Decimal
    """Overage owed at the segment's start (non-zero only when start_balance is 0)."""
    period_usage_before: Decimal
    """Usage in the usage period before the segment."""
    soft_limit: bool
    granted: Decimal = _ZERO
    """Everything the usage period granted up to the segment's start (what usage percentages are of)."""

    def as_json(self, usage: Decimal, snapshot: str) -> dict[str, Any]:
        """The install script's argument: this segment with the usage counted in it so far."""
        return {
            "seg_start": stored_time(self.segment_start),
            "seg_end": stored_time(self.segment_end) if self.segment_end else "",
            "period_start": stored_time(self.period_start),
            "period_end": stored_time(self.period_end),
            "b0": format_decimal(self.start_balance),
            "ov0": format_decimal(self.start_overage),
            "pu0": format_decimal(self.period_usage_before),
            "u": format_decimal(usage),
            "soft": "1" if self.soft_limit else "0",
            "granted": format_decimal(self.granted),
            "snap": snapshot,
        }


@dataclass(frozen=True)
class HotState:
    """A segment and the usage in it so far, as the replicas share it.

    Immutable: a change makes a new state, so what checks derive from it is computed once per state.
    """

    generation: int
    segment: Segment
    usage: Decimal
    snapshot: str
    rebuilding: bool = False
    recompute: bool = False

    @cached_property
    def balance(self) -> Decimal:
        """The total balance of the active grants now, never negative."""
        return max(self.segment.start_balance - self.usage, _ZERO)

    @cached_property
    def overage(self) -> Decimal:
        """Usage in the period no grant covered."""
        return self.segment.start_overage + max(self.usage - self.segment.start_balance, _ZERO)

    @cached_property
    def period_usage(self) -> Decimal:
        """Usage in the current usage period."""
        return self.segment.period_usage_before + self.usage

    @cached_property
    def has_access(self) -> bool:
        """balance > 0 or soft limit."""
        return self.balance > 0 or self.segment.soft_limit

    def covers(self, at: datetime) -> bool:
        """Whether ``at`` falls in the segment (else the state must be rebuilt first)."""
        end = self.segment.segment_end
        return self.segment.segment_start <= at and (end is None or at < end)

    @classmethod
    def from_hash(cls, fields: dict[str, str]) -> HotState:
        """The state from its Redis hash."""
        return cls(
            generation=int(fields["gen"]),
            segment=Segment(
                segment_start=parse_stored_time(fields["seg_start"]),
                segment_end=parse_stored_time(fields["seg_end"]) if fields["seg_end"] else None,
                period_start=parse_stored_time(fields["period_start"]),
                period_end=parse_stored_time(fields["period_end"]),
                start_balance=Decimal(fields["b0"]),
                start_overage=Decimal(fields["ov0"]),
                period_usage_before=Decimal(fields["pu0"]),
                soft_limit=fields["soft"] == "1",
                granted=Decimal(fields.get("granted", "0")),
            ),
            usage=Decimal(fields["u"]),
            snapshot=fields["snap"],
            rebuilding=fields.get("rebuilding", "0") not in ("", "0"),
            recompute=fields.get("recompute") == "1",
        )
