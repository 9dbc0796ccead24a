"""Persisting computed invoices: what an invoice run calls to store the drafts of
``billing.invoicing.draft_invoice``, and the hook that recalculates an invoice before it is issued.

An invoice is made of parts, one per subscription: the charges billed, their usage, and the draft
computed from them. :func:`save_draft` creates a GATHERING or DRAFT invoice from the parts, or, given
the id of a GATHERING or DRAFT invoice, replaces its computed lines (a recalculation): manual lines and
removed lines stay as they are, and a line keeps its id as long as it bills the same charge and group
values. In the same transaction it records what the invoice billed of each charge
(``tx.billed.record``), which is what later runs read (``tx.billed.billed``) to leave out charges
already billed for good and to give progressive invoices the usage billed before.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final, Protocol

from billing.domain.invoices import (
    EDITABLE,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LineType,
    check_recalculable,
    compute_totals,
    covering_period,
)
from billing.invoicing import ChargeUsage, InvoiceDraft, LineDraft, draft_invoice
from billing.plans import rate_card_proto
from billing.service.customers import customer_not_found
from billing.store import Stores
from billing.store.billed import BilledRecord
from billing.subscriptions import Charge, ChargeKind
from meterlib.errors import FailedPrecondition, InvalidArgument, NotFound
from meterlib.periods import Period

# Line ids are UUIDs derived from what a computed line bills, so a recalculation finds the same ones.
_LINE_IDS: Final = uuid.UUID("6f1d3c0e-5b8a-4e59-9d0c-2a7c1b8e4f10")


@dataclass(frozen=True)
class InvoicePart:
    """One subscription's share of an invoice: ``draft`` is ``draft_invoice(charges, usage, currency)``.

    Every charge in ``charges`` is recorded as billed by the invoice, with ``usage[charge.id].usage``
    for usage charges (what this invoice bills on top of earlier invoices of the period).
    """

    subscription_id: str
    charges: Sequence[Charge]
    usage: Mapping[str, ChargeUsage]
    draft: InvoiceDraft

    @classmethod
    def of(
        cls, subscription_id: str, charges: Sequence[Charge], usage: Mapping[str, ChargeUsage], currency: str
    ) -> InvoicePart:
        """The part with its draft computed here."""
        return cls(subscription_id, tuple(charges), dict(usage), draft_invoice(charges, usage, currency))


@dataclass(frozen=True)
class DraftInput:
    """What :func:`save_draft` stores. ``invoice_id`` None creates an invoice with a new id; the id of an
    existing invoice recalculates it; an unknown id creates the invoice under it (so that a run that
    derives ids from what it bills can retry without duplicates). ``status`` is GATHERING or DRAFT; a
    recalculation may move GATHERING to DRAFT, never back. ``description`` and ``metadata`` apply at
    creation only; ``collection_time`` whenever given."""

    customer_key: str
    parts: Sequence[InvoicePart]
    status: InvoiceStatus = InvoiceStatus.DRAFT
    progressive: bool = False
    collection_time: datetime | None = None
    invoice_id: str | None = None
    description: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


class Recalculator(Protocol):
    """Re-rates an invoice with the latest usage: the invoice run's part of RecalculateInvoice, and of
    IssueInvoice, which calls it on a DRAFT invoice just before issuing ("recalculated a last time").

    ``recalculate`` runs outside any transaction (it may read usage from other services) and stores its
    result with :func:`save_draft` given ``invoice.id``; if the invoice left GATHERING/DRAFT meanwhile,
    save_draft refuses and the caller sees that state.
    """

    async def recalculate(self, namespace: str, invoice: Invoice) -> None:
        """Bring the invoice's computed lines up to date."""
        ...


class NoRecalculation:
    """The default until the invoice run provides its Recalculator: invoices stay as they were stored."""

    async def recalculate(self, namespace: str, invoice: Invoice) -> None:
        """Nothing to do."""


def invoice_not_found(invoice_id: str) -> NotFound:
    """The error of an unknown invoice id."""
    return NotFound(f"invoice {invoice_id!r} not found", resource_type="invoice", resource_name=invoice_id)


def _line_id(invoice_id: str, subscription_id: str, line: LineDraft) -> str:
    values = json.dumps(sorted(line.group_values), separators=(",", ":"))
    key = f"{invoice_id}|{subscription_id}|{line.charge_id}|{line.type.value}|{values}"
    return str(uuid.uuid5(_LINE_IDS, key))


def _price_bytes(charges: Mapping[str, Charge], line: LineDraft) -> bytes | None:
    """The catalog Price message of the line's rate card (None for lines without a price)."""
    charge = charges.get(line.charge_id)
    if line.price is None or charge is None or not charge.item.rate_card.source:
        return None
    card = rate_card_proto(charge.item.rate_card)
    return card.price.SerializeToString(deterministic=True) if card.HasField("price") else None


def computed_lines(invoice_id: str, parts: Sequence[InvoicePart]) -> list[InvoiceLine]:
    """The stored lines of the parts, in the parts' order and each draft's order."""
    lines: list[InvoiceLine] = []
    for part in parts:
        charges = {charge.id: charge for charge in part.charges}
        for line in part.draft.lines:
            lines.append(
                InvoiceLine(
                    id=_line_id(invoice_id, part.subscription_id, line),
                    type=LineType(line.type.value),
                    name=line.name,
                    description=line.description,
                    subscription_id=part.subscription_id,
                    charge_id=line.charge_id,
                    item_id=line.item_id,
                    rate_card_key=line.rate_card_key,
                    feature_key=line.feature_key,
                    period=line.service_period,
                    price=_price_bytes(charges, line),
                    group_values=dict(line.group_values),
                    quantity=line.quantity,
                    previously_billed_quantity=line.previously_billed_quantity,
                    proration_factor=line.proration_factor,
                    tiers=line.tiers,
                    amount=line.amount,
                    discounts=line.discounts,
                    total=line.total,
                    tax=line.tax,
                    tax_amount=line.tax_amount,
                    sort_key=len(lines),
                )
            )
    return lines


def _billed_records(part: InvoicePart) -> list[BilledRecord]:
    records = []
    for charge in part.charges:
        usage = None
        final = charge.final
        if charge.kind is ChargeKind.USAGE:
            if charge.id not in part.usage:
                raise InvalidArgument(f"no usage given for usage charge {charge.id}")
            usage = part.usage[charge.id].usage
            final = final and not part.usage[charge.id].late  # another invoice billed it for good
        records.append(BilledRecord(charge.id, final, usage, charge.service_period.end))
    return records


async def refreshed(tx: Stores, namespace: str, invoice: Invoice, at: datetime) -> Invoice:
    """The invoice with its lines, period and totals read again and written back at ``at``."""
    lines = tuple(await tx.invoices.lines(namespace, invoice.id))
    totals = compute_totals(
        lines,
        invoice.currency,
        credits_applied=await tx.credits.total_applied(namespace, invoice.id),
        credit_notes_amount=await tx.credit_notes.offset_total(namespace, invoice.id),
        void=invoice.status is InvoiceStatus.VOID,
    )
    updated = replace(
        invoice, lines=lines, totals=totals, period=covering_period(lines, invoice.period), update_time=at
    )
    await tx.invoices.update(namespace, updated)
    return updated


async def save_draft(tx: Stores, namespace: str, new: DraftInput, at: datetime) -> Invoice:
    """Create or recalculate an invoice from computed parts, in the caller's transaction (see the
    module's docstring). Raises NotFound (customer), FailedPrecondition (deleted customer; an invoice
    no longer GATHERING/DRAFT, ERROR_REASON_IMMUTABLE; a status moved back), and
    ``billing.store.ChargeBilledElsewhere`` when another invoice billed a charge for good."""
    invoice_id = new.invoice_id or str(uuid.uuid4())
    existing = await tx.invoices.get(namespace, invoice_id, lines=False, for_update=True)
    if existing is None:
        [invoice] = await insert_drafts(tx, namespace, [replace(new, invoice_id=invoice_id)], at)
        return invoice
    _check_status(new)
    if existing.customer_key != new.customer_key:
        raise FailedPrecondition(f"invoice {invoice_id!r} belongs to customer {existing.customer_key!r}")
    check_recalculable(existing)
    if existing.status is InvoiceStatus.DRAFT and new.status is InvoiceStatus.GATHERING:
        raise FailedPrecondition(
            f"invoice {invoice_id!r} is DRAFT and cannot go back to GATHERING",
            reason="ERROR_REASON_INVALID_STATE_TRANSITION",
        )
    invoice = replace(
        existing, status=new.status, collection_time=new.collection_time or existing.collection_time
    )
    await tx.invoices.replace_computed_lines(namespace, invoice_id, computed_lines(invoice_id, new.parts), at)
    await tx.billed.forget_invoice(namespace, invoice_id)
    await tx.billed.record(namespace, _bills(invoice_id, new.parts), at)
    # The draft's own period counts even when it has no lines left (every line removed).
    if invoice.period is None:
        invoice = replace(invoice, period=_drafted_period(new.parts))
    return await refreshed(tx, namespace, invoice, at)


async def insert_drafts(
    tx: Stores, namespace: str, drafts: Sequence[DraftInput], at: datetime
) -> list[Invoice]:
    """Create new invoices from computed parts, in the caller's transaction, with a few statements
    for all of them (an invoice run stores many at once). Each draft's ``invoice_id`` is its id (a new
    one when None) and must not be taken. Raises as :func:`save_draft` does for a new invoice."""
    for new in drafts:
        _check_status(new)
    # FOR SHARE: the customers' currencies cannot change, nor the customers be deleted, until the
    # invoices are committed; then UpdateCustomer and DeleteCustomer see them.
    customers = await tx.customers.get_many(
        namespace, sorted({new.customer_key for new in drafts}), lock="FOR SHARE"
    )
    invoices: list[Invoice] = []
    for new in drafts:
        customer = customers.get(new.customer_key)
        if customer is None:
            raise customer_not_found(new.customer_key)
        if customer.deleted:
            raise FailedPrecondition(f"customer {customer.key!r} is deleted", reason="ERROR_REASON_ARCHIVED")
        # A new invoice has no credits, credit notes, manual or removed lines: its totals are its
        # computed lines', stored with it rather than read back.
        invoice_id = new.invoice_id or str(uuid.uuid4())
        lines = tuple(computed_lines(invoice_id, new.parts))
        invoices.append(
            Invoice(
                id=invoice_id,
                customer_key=customer.key,
                currency=customer.currency,
                status=new.status,
                create_time=at,
                update_time=at,
                progressive=new.progressive,
                description=new.description,
                collection_time=new.collection_time,
                metadata=dict(new.metadata),
                lines=lines,
                totals=compute_totals(lines, customer.currency),
                period=covering_period(lines, _drafted_period(new.parts)),
                customer_name=customer.name,
                billing_address=customer.billing_address,
            )
        )
    await tx.invoices.insert(namespace, invoices)
    await tx.invoices.insert_lines(namespace, [(i.id, line) for i in invoices for line in i.lines], at)
    bills = [bill for i, new in zip(invoices, drafts, strict=True) for bill in _bills(i.id, new.parts)]
    await tx.billed.record(namespace, bills, at)
    return invoices


def _check_status(new: DraftInput) -> None:
    if new.status not in EDITABLE:
        raise ValueError(f"a computed invoice is GATHERING or DRAFT, not {new.status}")


def _bills(invoice_id: str, parts: Sequence[InvoicePart]) -> list[tuple[str, str, list[BilledRecord]]]:
    return [(invoice_id, part.subscription_id, _billed_records(part)) for part in parts]


def _drafted_period(parts: Sequence[InvoicePart]) -> Period | None:
    return next((p.draft.period for p in parts if p.draft.period is not None), None)
