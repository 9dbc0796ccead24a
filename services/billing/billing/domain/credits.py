"""Credits: prepaid amounts of a customer, taken from its invoices' totals at issue.

Defaults the proto leaves to the server: ``priority`` 0 is 1, ``effective_at`` unset is the creation time.
Application order, like the burn-down order of entitlement grants: lower priority first, then the
soonest expiry (no expiry last), then the oldest, then the id so that the order is total.

Choices where the contract is silent: the amount must be a whole number of minor units of the currency
(invoice totals are, and a credit that is not would leave an amount due no one can pay); voiding sets
the balance to zero for good, so an invoice voided later gives nothing back to a voided credit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from meterlib.errors import FieldViolation
from meterlib.money import MONEY_CONTEXT, Money, fits_minor_unit
from meterlib.validation import Collector, check_key, check_request_id, check_text

DEFAULT_PRIORITY: Final = 1
MAX_DESCRIPTION: Final = 1024
_ZERO: Final = Decimal(0)
_NEVER: Final = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Credit:
    """A credit as stored: ``amount`` granted, ``balance`` what remains (zero once voided)."""

    id: str
    customer_key: str
    currency: str
    amount: Decimal
    balance: Decimal
    priority: int
    effective_at: datetime
    create_time: datetime
    expires_at: datetime | None = None
    description: str = ""
    void_time: datetime | None = None

    def usable_at(self, at: datetime) -> bool:
        """Whether an invoice issued at ``at`` may take from it: effective, unexpired, not voided, not
        used up."""
        return (
            self.void_time is None
            and self.effective_at <= at
            and (self.expires_at is None or at < self.expires_at)
            and self.balance > 0
        )

    def active_at(self, at: datetime) -> bool:
        """Whether ListCredits shows it without ``include_inactive``: neither used up, expired nor voided
        (a credit that becomes effective later is active)."""
        return (
            self.void_time is None and (self.expires_at is None or at < self.expires_at) and self.balance > 0
        )

    def application_order(self) -> tuple[int, bool, datetime, datetime, str]:
        """Its place in the order credits are applied (and listed) in."""
        return (
            self.priority,
            self.expires_at is None,
            self.expires_at or _NEVER,
            self.create_time,
            self.id,
        )


@dataclass(frozen=True)
class CreditApplication:
    """An amount taken from one credit for one invoice."""

    credit_id: str
    amount: Decimal


def plan_credit_applications(
    credits: Iterable[Credit], total: Decimal, currency: str, at: datetime
) -> list[CreditApplication]:
    """How much an invoice of ``total`` in ``currency`` issued at ``at`` takes from each credit.

    Credits are taken in application order, only those usable at ``at`` and in the invoice's currency,
    each at most its balance, all together at most the total (nothing for a total of zero or less).
    """
    remaining = total
    applications: list[CreditApplication] = []
    usable = (c for c in credits if c.currency == currency and c.usable_at(at))
    for credit in sorted(usable, key=Credit.application_order):
        if remaining <= _ZERO:
            break
        taken = min(credit.balance, remaining)
        applications.append(CreditApplication(credit.id, taken))
        remaining = MONEY_CONTEXT.subtract(remaining, taken)
    return applications


@dataclass(frozen=True)
class CreateCreditInput:
    """A CreateCredit request; None where a field is unset or could not be decoded."""

    request_id: str
    customer_key: str
    amount: Money | None
    priority: int = 0
    effective_at: datetime | None = None
    expires_at: datetime | None = None
    description: str = ""
    given: bool = True
    """False when the request left ``credit`` unset."""
    decode_violations: tuple[FieldViolation, ...] = ()

    def validate(self, now: datetime) -> None:
        """Raise InvalidArgument listing every malformed field (``now`` stands for an unset effective_at)."""
        v = Collector(self.decode_violations)
        check_request_id(v, self.request_id)
        if not self.given:
            v.add("credit", "is required")
            v.raise_if_any("invalid credit")
        check_key(v, self.customer_key, "credit.customer_key")
        amount = self.amount
        if amount is not None:
            if amount.amount <= 0:
                v.add("credit.amount.amount", "must be greater than 0")
            elif not fits_minor_unit(amount.amount, amount.currency):
                v.add("credit.amount.amount", f"must be a whole number of minor units of {amount.currency}")
        if self.priority < 0:
            v.add("credit.priority", f"must not be negative (0 is the default of {DEFAULT_PRIORITY})")
        if self.expires_at is not None and self.expires_at <= (self.effective_at or now):
            v.add("credit.expires_at", "must be after effective_at (unset: now)")
        check_text(v, self.description, "credit.description", MAX_DESCRIPTION)
        v.raise_if_any("invalid credit")

    def request_fields(self) -> dict[str, Any]:
        """The request as sent, for its fingerprint."""
        return {
            "customer_key": self.customer_key,
            "amount": self.amount,
            "priority": self.priority,
            "effective_at": self.effective_at,
            "expires_at": self.expires_at,
            "description": self.description,
        }

    def to_credit(self, credit_id: str, now: datetime) -> Credit:
        """The credit this (validated) input makes at ``now``."""
        assert self.amount is not None
        return Credit(
            id=credit_id,
            customer_key=self.customer_key,
            currency=self.amount.currency,
            amount=self.amount.amount,
            balance=self.amount.amount,
            priority=self.priority or DEFAULT_PRIORITY,
            effective_at=self.effective_at or now,
            create_time=now,
            expires_at=self.expires_at,
            description=self.description,
        )
