"""The burn-down order and the burn itself: usage taken from grants' balances, the rest is overage."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

from entitlements.burndown.model import Grant, GrantBalance, require_amount
from meterlib.money import money_context

_ZERO: Final = Decimal(0)


@dataclass(frozen=True)
class GrantUsage:
    """The part of some usage one grant covered."""

    grant_id: str
    usage: Decimal


def burn_order_key(grant: Grant) -> tuple[int, bool, datetime, datetime, str]:
    """Sort key of the burn-down order: priority (lower first), then soonest expiry (no expiry last),
    then creation time, then id, so that the order is total and every replay burns alike.

    Only the scheduled expiry counts, not ``voided_at``: a void is decided later and must not reorder
    usage that was burned before it.
    """
    expires = grant.expires_at
    return (grant.priority, expires is None, expires or grant.effective_at, grant.created, grant.id)


def sort_in_burn_order(grants: Iterable[Grant]) -> list[Grant]:
    """The grants in burn-down order (see :func:`burn_order_key`)."""
    return sorted(grants, key=burn_order_key)


def burn(
    balances: Sequence[GrantBalance], amount: Decimal
) -> tuple[tuple[GrantBalance, ...], tuple[GrantUsage, ...], Decimal]:
    """Burn ``amount`` from ``balances``, taken in the order given (the burn-down order).

    Returns the new balances (same grants, same order), what each grant covered (only grants that
    covered something, in order) and what no grant could cover (the overage of this amount).
    """
    require_amount(amount, "usage to burn")
    remaining = amount
    after: list[GrantBalance] = []
    used: list[GrantUsage] = []
    with money_context():
        for entry in balances:
            take = min(entry.balance, remaining)
            if take > 0:
                used.append(GrantUsage(entry.grant_id, take))
                remaining -= take
                entry = GrantBalance(entry.grant_id, entry.balance - take)
            after.append(entry)
    return tuple(after), tuple(used), remaining
