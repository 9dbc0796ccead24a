"""What a subscription must be charged, and on which invoice. Pure: a timeline in, charges out.

A charge is one rate card item over one service period: a flat fee (prorated by exact duration when the
service period is shorter than the rate card's period), a usage charge (rated later on the usage of its
service period) or a proration credit (the unused part of an in-advance fee billed in full before the
item was closed early). Each charge has an ``invoice_at`` instant, and an invoice made at instant T
bills every charge whose ``invoice_at`` lies after the previous invoice and at or before T:

- **usage** is billed in arrears: at the end of its service period (the billing period's end, or the
  instant the item was closed by a change or cancellation);
- **flat fees in arrears** at the end of their service period, for the fraction used;
- **flat fees in advance** at the start of their service period, for the coming period: the fee of
  the next period lands on the invoice made at this period's end, and the first one on an invoice made
  at the subscription's start (as OpenMeter and Lago do). A fee billed before its item's end was known
  is billed up to the end of its period; when the item is then closed early a **proration credit**
  (negative) for the unused fraction is due at the closing instant. A fee whose end was known (a trial
  phase ending mid-period, a change already scheduled) is prorated in the first place;
- **one-time fees** (rate cards without cadence) once, at the item's start (in advance) or end (in
  arrears), never prorated.

So :func:`initial_charges` is the invoice at the start; :func:`charges_for_period` is the invoice made
at a billing period's end (charges invoiced in ``(start, end]``); :func:`progressive_charges` is a
mid-period invoice. Charge ids are stable: a store records the ids an invoice billed and leaves them out
of later invoices, except usage charges, which later invoices of the same period bill again on their
cumulative usage minus what was already billed (progressive billing).

Flat fees with a rate card cadence longer than the plan's (P1Y on a P1M plan) run in periods of their
own cadence from the same billing anchor. Usage is rated per billing period of the plan's cadence.
Commitments are per billing period: a partial service period gets the fraction of the billing period its
item applies (``proration`` of a usage charge), as Lago prorates minimum commitments; free quantity (a
usage discount) is not prorated, as in OpenMeter and Lago.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from billing.rating import FlatPrice, PaymentTerm
from billing.subscriptions.model import Subscription, SubscriptionItem
from meterlib.periods import Cadence, Period, as_utc, period_containing, periods_between, prorate

_INSTANT = timedelta(microseconds=1)


class ChargeKind(StrEnum):
    """What a charge bills (mirrors the LineType values a charge produces)."""

    FLAT_FEE = "flat_fee"
    USAGE = "usage"
    PRORATION_CREDIT = "proration_credit"


_KIND_ORDER = {ChargeKind.FLAT_FEE: 0, ChargeKind.PRORATION_CREDIT: 1, ChargeKind.USAGE: 2}


@dataclass(frozen=True)
class Charge:
    """One item to rate over one service period.

    ``billing_period`` is the full anchored period the charge belongs to (the rate card's cadence for
    flat fees, the plan's for usage), the base of ``proration``: for flat fees and credits the
    fraction of it billed (``meterlib.periods.prorate``); for usage the fraction of it the item applies
    (by which commitments are prorated). None for one-time fees. ``final`` is False only for a usage
    charge cut short by a progressive invoice: a later invoice of the period bills the rest.
    """

    kind: ChargeKind
    item: SubscriptionItem
    service_period: Period
    billing_period: Period
    invoice_at: datetime
    payment_term: PaymentTerm
    proration: Decimal | None
    final: bool = True

    @property
    def id(self) -> str:
        """Stable across recomputations and shared by the invoices of one usage period."""
        return f"{self.item.id}|{self.kind.value}|{self.billing_period.start.isoformat()}"

    @property
    def sort_key(self) -> tuple[tuple[int, int], str, datetime, int]:
        """Line order: phase (in time, add-ons last), rate card key, service period, kind."""
        item = self.item
        return item.order, item.key, self.service_period.start, _KIND_ORDER[self.kind]


def charges_between(sub: Subscription, after: datetime | None, until: datetime) -> list[Charge]:
    """Every charge with ``after < invoice_at <= until`` (no lower bound when ``after`` is None)."""
    until = as_utc(until, "until")
    low = None if after is None else as_utc(after, "after")
    charges = [
        charge
        for item in sub.items
        for charge in _item_charges(sub, item, low, until)
        if (low is None or charge.invoice_at > low) and charge.invoice_at <= until
    ]
    return sorted(charges, key=lambda c: c.sort_key)


def initial_charges(sub: Subscription) -> list[Charge]:
    """The charges due when the subscription starts: the first in-advance (and one-time) fees."""
    return charges_between(sub, sub.start - _INSTANT, sub.start)


def charges_for_period(sub: Subscription, period: Period) -> list[Charge]:
    """The charges of the invoice made at the end of billing ``period`` (one of ``sub.billing_periods``):
    its usage and in-arrears fees, credits of items closed in it, the next period's in-advance fees."""
    return charges_between(sub, period.start, period.end)


def progressive_charges(sub: Subscription, at: datetime) -> list[Charge]:
    """A mid-period invoice at ``at``: what fell due since the period started, and the usage so far of
    the items still running, cut at ``at`` and marked not final."""
    at = as_utc(at, "at")
    period = sub.billing_period(at)
    charges = charges_between(sub, period.start, at)
    anchored = period_containing(sub.billing_anchor, sub.billing_cadence, at)
    for item in sub.items:
        active = item.active_in(anchored)
        if not item.rate_card.is_usage_based or active is None or not active.start < at < active.end:
            continue
        charges.append(
            Charge(
                ChargeKind.USAGE,
                item,
                Period(active.start, at),
                anchored,
                at,
                PaymentTerm.IN_ARREARS,
                prorate(anchored, active),
                final=False,
            )
        )
    return sorted(charges, key=lambda c: c.sort_key)


def _item_charges(
    sub: Subscription, item: SubscriptionItem, after: datetime | None, until: datetime
) -> Iterator[Charge]:
    card = item.rate_card
    if card.price is None:
        return
    if not isinstance(card.price, FlatPrice):
        for period, used in _periods(sub, item, sub.billing_cadence, after, until):
            yield Charge(
                ChargeKind.USAGE, item, used, period, used.end, PaymentTerm.IN_ARREARS, prorate(period, used)
            )
        return
    term = card.price.payment_term
    if card.billing_cadence is None:
        yield from _one_time(sub, item, term)
        return
    for period, used in _periods(sub, item, card.billing_cadence, after, until):
        if term is PaymentTerm.IN_ARREARS:
            yield Charge(ChargeKind.FLAT_FEE, item, used, period, used.end, term, prorate(period, used))
            continue
        end, decided = item.active_to, item.end_decided_at
        billed = used
        if end is not None and end < period.end and decided is not None and decided > used.start:
            # Billed in full at the period's start, before anyone knew the item would end early.
            billed = Period(used.start, period.end)
            unused = Period(end, period.end)
            yield Charge(
                ChargeKind.PRORATION_CREDIT, item, unused, period, end, term, prorate(period, unused)
            )
        yield Charge(ChargeKind.FLAT_FEE, item, billed, period, used.start, term, prorate(period, billed))


def _periods(
    sub: Subscription, item: SubscriptionItem, cadence: Cadence, after: datetime | None, until: datetime
) -> Iterator[tuple[Period, Period]]:
    """The anchored periods of ``cadence`` that may hold a charge invoiced in ``(after, until]``, each
    with the part of it the item applies. Such a period ends after ``after`` and starts by ``until``."""
    low = item.active_from if after is None else max(item.active_from, after)
    high = until + _INSTANT if item.active_to is None else min(item.active_to, until + _INSTANT)
    if low >= high:
        return
    for period in periods_between(sub.billing_anchor, cadence, low, high):
        used = item.active_in(period)
        if used is not None:
            yield period, used


def _one_time(sub: Subscription, item: SubscriptionItem, term: PaymentTerm) -> Iterator[Charge]:
    if term is PaymentTerm.IN_ADVANCE:
        first = period_containing(sub.billing_anchor, sub.billing_cadence, item.active_from)
        used = item.active_in(first)
        if used is not None:
            yield Charge(ChargeKind.FLAT_FEE, item, used, used, used.start, term, None)
    elif item.active_to is not None and item.active_from < item.active_to:
        used = Period(item.active_from, item.active_to)
        yield Charge(ChargeKind.FLAT_FEE, item, used, used, used.end, term, None)
