"""What the burn-down engine takes: grants, a metered entitlement's definition, and snapshots to resume from.

Mirrors ``metering.entitlements.v1`` (Grant, MeteredConfig, ResetUsage) with amounts as bare Decimals in
the feature's meter unit and instants as timezone-aware datetimes, normalised to UTC. Each class checks its
own invariants and raises ValueError (TypeError for a wrong type such as a float or a naive datetime);
user-facing validation with field paths, and wire defaults such as "priority 0 means 1" or "recurrence
anchor unset means effective_at", are the service's job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final, TypeAlias

from meterlib.money import money_context
from meterlib.periods import Cadence, as_utc

_ZERO: Final = Decimal(0)

UsageSource: TypeAlias = Callable[[datetime, datetime], Decimal]
"""Metered usage of the entitlement in ``[start, end)``: a pure function, asked once per segment."""

ISSUE_AFTER_RESET_PREFIX: Final = "issue_after_reset@"
"""Id prefix of the synthetic per-period grants of ``issue_after_reset``; reserved, no real grant uses it."""


class RecomputeRequired(ValueError):
    """A snapshot or hot state cannot answer: recompute from an earlier snapshot or from the beginning.

    Raised when a snapshot disagrees with the grants (a grant was back-dated, voided in the past or is
    unknown), when the target time lies before the snapshot, and when usage lands outside a hot state's
    segment (a boundary was crossed, or a late event arrived before the segment started).
    """


def require_amount(value: object, what: str, *, positive: bool = False) -> Decimal:
    """``value`` if it is a finite Decimal, not negative (positive if asked); TypeError or ValueError."""
    if not isinstance(value, Decimal):
        raise TypeError(f"{what} must be a Decimal, not {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{what} must be finite, not {value}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{what} must be {'positive' if positive else 'at least 0'}, got {value}")
    return value


def _utc(value: datetime | None, what: str) -> datetime | None:
    return None if value is None else as_utc(value, what)


def _priority(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")
    return value


@dataclass(frozen=True)
class UsagePeriod:
    """A recurring period: ``[anchor + k * cadence, anchor + (k + 1) * cadence)`` for every integer k."""

    cadence: Cadence
    anchor: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.cadence, Cadence):
            raise TypeError(f"cadence must be a Cadence, not {type(self.cadence).__name__}")
        object.__setattr__(self, "anchor", as_utc(self.anchor, "anchor"))


@dataclass(frozen=True, kw_only=True)
class Grant:
    """An amount of usage a metered entitlement may consume, active in ``[effective_at, expires_at)``.

    ``priority``: lower burns first. ``min_rollover``/``max_rollover`` bound the balance kept at a usage
    reset (both default to 0, as OpenMeter and the proto do: nothing rolls over unless asked).
    ``recurrence`` restores the balance to ``amount`` at every period boundary of it that falls strictly
    after ``effective_at`` while the grant is active. ``created_at`` (default ``effective_at``) and then
    ``id`` break ties in the burn order. A voided grant stops counting at ``voided_at``: its remaining
    balance disappears, what it already covered stays covered.
    """

    id: str
    amount: Decimal
    effective_at: datetime
    priority: int = 1
    expires_at: datetime | None = None
    min_rollover: Decimal = _ZERO
    max_rollover: Decimal = _ZERO
    recurrence: UsagePeriod | None = None
    created_at: datetime | None = None
    voided_at: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"grant id must be a non-empty string, got {self.id!r}")
        require_amount(self.amount, f"grant {self.id} amount", positive=True)
        _priority(self.priority, f"grant {self.id} priority")
        require_amount(self.min_rollover, f"grant {self.id} min_rollover")
        require_amount(self.max_rollover, f"grant {self.id} max_rollover")
        if self.min_rollover > self.max_rollover:
            raise ValueError(
                f"grant {self.id}: min_rollover {self.min_rollover} is above max_rollover {self.max_rollover}"
            )
        if self.recurrence is not None and not isinstance(self.recurrence, UsagePeriod):
            raise TypeError(f"grant {self.id} recurrence must be a UsagePeriod")
        object.__setattr__(self, "effective_at", as_utc(self.effective_at, "effective_at"))
        object.__setattr__(self, "expires_at", _utc(self.expires_at, "expires_at"))
        object.__setattr__(self, "created_at", _utc(self.created_at, "created_at"))
        object.__setattr__(self, "voided_at", _utc(self.voided_at, "voided_at"))
        if self.expires_at is not None and self.expires_at <= self.effective_at:
            raise ValueError(f"grant {self.id}: expires_at must be after effective_at")

    @property
    def created(self) -> datetime:
        """The creation time used in the burn order: ``created_at``, or ``effective_at`` when unknown."""
        return self.created_at if self.created_at is not None else self.effective_at

    @property
    def inactive_from(self) -> datetime | None:
        """The first instant the grant no longer counts (expiry or void, whichever is first), if any."""
        ends = [t for t in (self.expires_at, self.voided_at) if t is not None]
        return min(ends) if ends else None

    def active_at(self, at: datetime) -> bool:
        """Whether the grant counts at ``at``: ``effective_at <= at < inactive_from``."""
        end = self.inactive_from
        return self.effective_at <= at and (end is None or at < end)

    def rolled_over(self, balance: Decimal) -> Decimal:
        """The balance kept at a usage reset: ``min(max_rollover, max(min_rollover, balance))``."""
        with money_context():
            return min(self.max_rollover, max(self.min_rollover, balance))


@dataclass(frozen=True)
class UsageReset:
    """A manual usage reset (ResetUsage): a usage period boundary at ``at``.

    ``retain_anchor=False`` (the proto's default) re-anchors the usage periods at ``at``; ``True`` keeps
    the anchor, so the next scheduled boundary is unchanged. ``preserve_overage`` overrides the
    entitlement's ``preserve_overage_at_reset`` for this reset only.
    """

    at: datetime
    retain_anchor: bool = False
    preserve_overage: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", as_utc(self.at, "reset at"))


@dataclass(frozen=True, kw_only=True)
class MeteredEntitlement:
    """What the engine needs of a metered entitlement.

    Usage is counted from ``measure_usage_from``. Usage resets at every boundary of ``usage_period`` and
    at every manual reset in ``resets`` (strictly increasing). ``issue_after_reset = N`` gives every
    usage period a synthetic grant of N (see :func:`issue_after_reset_grant`) with priority
    ``issue_after_reset_priority`` (the proto's default is 1, the same as a grant's default).
    """

    usage_period: UsagePeriod
    measure_usage_from: datetime
    issue_after_reset: Decimal | None = None
    issue_after_reset_priority: int = 1
    is_soft_limit: bool = False
    preserve_overage_at_reset: bool = False
    resets: tuple[UsageReset, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.usage_period, UsagePeriod):
            raise TypeError("usage_period must be a UsagePeriod")
        object.__setattr__(self, "measure_usage_from", as_utc(self.measure_usage_from, "measure_usage_from"))
        if self.issue_after_reset is not None:
            require_amount(self.issue_after_reset, "issue_after_reset", positive=True)
        _priority(self.issue_after_reset_priority, "issue_after_reset_priority")
        object.__setattr__(self, "resets", tuple(self.resets))
        for earlier, later in zip(self.resets, self.resets[1:], strict=False):
            if later.at <= earlier.at:
                raise ValueError("manual resets must be in strictly increasing time order")


@dataclass(frozen=True)
class GrantBalance:
    """The remaining balance of one grant."""

    grant_id: str
    balance: Decimal


@dataclass(frozen=True)
class Snapshot:
    """The exact state at instant ``at``, after everything that happens at ``at`` (a reset, a grant
    activation) and after all usage before it.

    ``balances`` lists every grant active at ``at`` (zero balances included) in burn order;
    ``overage`` is the usage of the current period that no grant covered yet (with
    ``preserve_overage_at_reset`` it may include overage carried over a reset); ``usage`` is the usage
    of the current period so far; ``granted`` is everything added to balances in the current period
    (balances rolled over into it, grants activated in it, recurrence top-ups). A computation resumed from
    a snapshot replays only what follows ``at``.
    """

    at: datetime
    balances: tuple[GrantBalance, ...] = ()
    overage: Decimal = _ZERO
    usage: Decimal = _ZERO
    granted: Decimal = _ZERO

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", as_utc(self.at, "snapshot at"))
        object.__setattr__(self, "balances", tuple(self.balances))
        seen: set[str] = set()
        for entry in self.balances:
            require_amount(entry.balance, f"snapshot balance of grant {entry.grant_id}")
            if entry.grant_id in seen:
                raise ValueError(f"snapshot lists grant {entry.grant_id} twice")
            seen.add(entry.grant_id)
        require_amount(self.overage, "snapshot overage")
        require_amount(self.usage, "snapshot usage")
        require_amount(self.granted, "snapshot granted")

    @property
    def balance(self) -> Decimal:
        """The total balance of the active grants."""
        with money_context():
            return sum((b.balance for b in self.balances), _ZERO)

    def balance_of(self, grant_id: str) -> Decimal:
        """One grant's balance; 0 for a grant that is not active at ``at``."""
        return next((b.balance for b in self.balances if b.grant_id == grant_id), _ZERO)
