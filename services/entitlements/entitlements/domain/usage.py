"""Usage resets and usage history of metered entitlements: requests, rules, and the pure windowing of a
burn-down into history windows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from entitlements.burndown import Segment
from entitlements.domain.common import EntitlementRef
from entitlements.domain.entitlements import Entitlement, Reset
from meterlib.errors import FailedPrecondition, FieldViolation, InvalidArgument
from meterlib.money import money_context
from meterlib.periods import Period, WindowSize, parse_time_zone, windows
from meterlib.validation import Collector, check_request_id

MAX_HISTORY_WINDOWS: Final = 1000
_ZERO: Final = Decimal(0)


def not_metered(entitlement: Entitlement) -> FailedPrecondition:
    """The error of an operation that needs a metered entitlement."""
    return FailedPrecondition(
        f"entitlement {entitlement.id} is {entitlement.type.value}, not metered",
        metadata={"entitlement_id": entitlement.id, "type": entitlement.type.value},
    )


@dataclass(frozen=True)
class ResetUsageInput:
    """A ResetUsage request."""

    request_id: str
    entitlement: EntitlementRef
    effective_at: datetime | None = None
    retain_anchor: bool = False
    preserve_overage: bool | None = None
    decode_violations: tuple[FieldViolation, ...] = ()

    def validate(self, now: datetime) -> None:
        """Raise InvalidArgument listing every malformed field."""
        v = Collector(self.decode_violations)
        check_request_id(v, self.request_id)
        self.entitlement.check(v, "entitlement")
        if self.effective_at is not None and self.effective_at > now:
            v.add("effective_at", "must not be in the future")
        v.raise_if_any("invalid usage reset")

    def request_fields(self) -> dict[str, Any]:
        """The request as sent, for its fingerprint."""
        ref = self.entitlement
        return {
            "entitlement": [ref.entitlement_id, ref.customer_key, ref.feature_key],
            "effective_at": self.effective_at,
            "retain_anchor": self.retain_anchor,
            "preserve_overage": self.preserve_overage,
        }

    def to_reset(self, entitlement: Entitlement, resets: Sequence[Reset], now: datetime) -> Reset:
        """The reset of ``entitlement`` this request makes, after checking it may happen then.

        A reset may not precede the last reset, scheduled or manual (the start of the usage period
        containing now), nor the start of usage measurement, nor coincide with a manual reset.
        """
        if entitlement.metered is None:
            raise not_metered(entitlement)
        at = self.effective_at or now
        measured = entitlement.metered.measure_usage_from
        if at < measured:
            raise FailedPrecondition(
                f"a reset at {at.isoformat()} precedes the start of usage measurement ({measured.isoformat()})",
                reason="ERROR_REASON_INVALID_STATE_TRANSITION",
                metadata={"measure_usage_from": measured.isoformat()},
            )
        last = entitlement.schedule(resets).last_reset_at_or_before(now)
        if at < last or any(r.at == at for r in resets):
            raise FailedPrecondition(
                f"a reset at {at.isoformat()} would not follow the last reset ({last.isoformat()})",
                reason="ERROR_REASON_INVALID_STATE_TRANSITION",
                metadata={"last_reset_time": last.isoformat()},
            )
        return Reset(at, self.retain_anchor, self.preserve_overage, now)


@dataclass(frozen=True)
class HistoryInput:
    """A GetEntitlementHistory request."""

    entitlement: EntitlementRef
    start: datetime | None = None
    end: datetime | None = None
    window_size: WindowSize | None = None
    time_zone: str = ""
    decode_violations: tuple[FieldViolation, ...] = ()

    def validate(self) -> None:
        """Raise InvalidArgument listing every malformed field."""
        v = Collector(self.decode_violations)
        self.entitlement.check(v, "entitlement")
        if self.start is not None and self.end is not None and self.end <= self.start:
            v.add("time_range.end_time", "must be after start_time")
        try:
            parse_time_zone(self.time_zone, "time_zone")
        except InvalidArgument as exc:
            v.items.extend(exc.violations)
        v.raise_if_any("invalid history request")

    def windows(self, start: datetime, end: datetime) -> list[Period]:
        """The windows of ``[start, end)``, clipped to it; InvalidArgument beyond 1000 of them."""
        if end <= start:
            return []
        if self.window_size is None:
            return [Period(start, end)]
        found: list[Period] = []
        wanted = Period(start, end)
        for window in windows(start, end, self.window_size, self.time_zone or "UTC"):
            if len(found) == MAX_HISTORY_WINDOWS:
                raise InvalidArgument.fields(
                    [
                        FieldViolation(
                            "window_size",
                            f"the range has more than {MAX_HISTORY_WINDOWS} windows of this size; "
                            "use a larger window or a shorter range",
                        )
                    ]
                )
            clipped = window.intersect(wanted)
            if clipped is not None:
                found.append(clipped)
        return found


@dataclass(frozen=True)
class HistoryWindow:
    """Usage and balances in one window."""

    window: Period
    usage: Decimal
    balance_at_start: Decimal
    balance_at_end: Decimal
    overage_at_end: Decimal


@dataclass(frozen=True)
class History:
    """A metered entitlement's history over a range: windows, and the burn-down segments overlapping it."""

    windows: tuple[HistoryWindow, ...]
    segments: tuple[Segment, ...]


def balance_after_opening(segment: Segment) -> Decimal:
    """The total balance at the segment's start once outstanding overage was paid off from it: the state
    at that instant. (``Segment.balance_at_start`` is before the payment, as the segment accounting has it.)"""
    with money_context():
        return max(segment.balance_at_start - segment.overage_at_start, _ZERO)


def segment_overage(segment: Segment) -> Decimal:
    """Usage of the segment no grant could cover (overage paid off at its start excluded)."""
    with money_context():
        carried = max(segment.overage_at_start - segment.balance_at_start, _ZERO)
        return segment.overage_at_end - carried


def history_windows(pieces: Sequence[Segment], wanted: Sequence[Period]) -> tuple[HistoryWindow, ...]:
    """The windows of a burn-down whose segments were split at every window bound (so each segment lies in
    one window). Segments outside every window are ignored."""
    result: list[HistoryWindow] = []
    index = 0
    with money_context():
        for window in wanted:
            while index < len(pieces) and pieces[index].period.end <= window.start:
                index += 1
            inside: list[Segment] = []
            while index < len(pieces) and pieces[index].period.end <= window.end:
                inside.append(pieces[index])
                index += 1
            if not inside:
                raise ValueError(f"no burn-down segment covers the window {window}")
            result.append(
                HistoryWindow(
                    window=window,
                    usage=sum((p.usage for p in inside), _ZERO),
                    balance_at_start=balance_after_opening(inside[0]),
                    balance_at_end=inside[-1].balance_at_end,
                    overage_at_end=inside[-1].overage_at_end,
                )
            )
    return tuple(result)
