"""Proto ⇄ domain conversion of invoices and credit notes (the customers' and credits' is ``convert``).

As there, decoding never raises on bad content: problems become ``decode_violations`` of the resulting
input, reported by its ``validate()`` together with the domain's rules.
"""

from __future__ import annotations

from decimal import Decimal

from billing.domain import Address
from billing.domain.credit_notes import (
    CreateCreditNoteInput,
    CreditNote,
    CreditNoteLineInput,
    CreditNoteReason,
    Settlement,
)
from billing.domain.invoice_edits import ManualLineInput, UpdateDraftInput
from billing.domain.invoices import Invoice, InvoiceLine, InvoiceStatus
from billing.invoicing import LineDiscount
from billing.plans import TaxBehavior, TaxConfig
from billing.rating import TierUsage
from billing.store.invoices import InvoiceFilter
from metering.billing.v1 import billing_pb2 as pb
from metering.catalog.v1 import catalog_pb2
from metering.common.v1 import common_pb2
from meterlib.errors import FieldViolation, InvalidArgument, Violations
from meterlib.money import Money, format_decimal, parse_decimal
from meterlib.periods import Period
from meterlib.validation import canonical_id, check_key
from meterlib.wire import from_timestamp, optional_time, to_proto_decimal, to_proto_range, to_timestamp

_TAX_BEHAVIORS = {
    TaxBehavior.UNSPECIFIED: catalog_pb2.TAX_BEHAVIOR_UNSPECIFIED,
    TaxBehavior.INCLUSIVE: catalog_pb2.TAX_BEHAVIOR_INCLUSIVE,
    TaxBehavior.EXCLUSIVE: catalog_pb2.TAX_BEHAVIOR_EXCLUSIVE,
}
_TAX_FROM_PROTO = {v: k for k, v in _TAX_BEHAVIORS.items()}


def _money(amount: Decimal, currency: str) -> common_pb2.Money:
    return common_pb2.Money(amount=format_decimal(amount), currency=currency)


def status_to_proto(status: InvoiceStatus) -> int:
    """The wire enum value of a status."""
    return int(pb.InvoiceStatus.Value(f"INVOICE_STATUS_{status.value.upper()}"))


# --- invoices -------------------------------------------------------------------------------------------


def _tier(t: TierUsage, currency: str) -> pb.TierUsage:
    message = pb.TierUsage(
        tier_index=t.index,
        quantity=to_proto_decimal(t.quantity),
        unit_amount=_money(t.unit_amount, currency),
        flat_amount=_money(t.flat_amount, currency),
        amount=_money(t.amount, currency),
    )
    if t.up_to is not None:
        message.up_to.CopyFrom(to_proto_decimal(t.up_to))
    return message


def _discount(d: LineDiscount, currency: str) -> pb.LineDiscount:
    message = pb.LineDiscount(
        type=pb.DiscountType.Value(f"DISCOUNT_TYPE_{d.type.value.upper()}"),
        amount=_money(d.amount, currency),
        description=d.description,
    )
    if d.quantity is not None:
        message.quantity.CopyFrom(to_proto_decimal(d.quantity))
    return message


def to_proto_line(line: InvoiceLine, currency: str) -> pb.InvoiceLine:
    """The wire form of an invoice line."""
    message = pb.InvoiceLine(
        id=line.id,
        type=pb.LineType.Value(f"LINE_TYPE_{line.type.value.upper()}"),
        name=line.name,
        description=line.description,
        subscription_id=line.subscription_id,
        rate_card_key=line.rate_card_key,
        feature_key=line.feature_key,
        group_values=dict(line.group_values),
        quantity=to_proto_decimal(line.quantity),
        previously_billed_quantity=to_proto_decimal(line.previously_billed_quantity),
        tiers=[_tier(t, currency) for t in line.tiers],
        amount=_money(line.amount, currency),
        discounts=[_discount(d, currency) for d in line.discounts],
        total=_money(line.total, currency),
        tax_amount=_money(line.tax_amount, currency),
        metadata=dict(line.metadata),
    )
    if line.period is not None:
        message.period.CopyFrom(to_proto_range(line.period))
    if line.price is not None:
        message.price.CopyFrom(catalog_pb2.Price.FromString(line.price))
    if line.proration_factor is not None:
        message.proration_factor.CopyFrom(to_proto_decimal(line.proration_factor))
    if line.unit_amount is not None:
        message.unit_amount.CopyFrom(_money(line.unit_amount, currency))
    if line.tax is not None:
        message.tax.CopyFrom(
            catalog_pb2.TaxConfig(tax_code=line.tax.tax_code, behavior=_TAX_BEHAVIORS[line.tax.behavior])
        )
    return message


def _address(a: Address) -> pb.Address:
    return pb.Address(
        country=a.country, postal_code=a.postal_code, state=a.state, city=a.city, line1=a.line1, line2=a.line2
    )


def to_proto_invoice(i: Invoice) -> pb.Invoice:
    """The wire form of an invoice (with the lines it was read with)."""
    c = i.currency
    t = i.totals
    message = pb.Invoice(
        id=i.id,
        number=i.number,
        customer_key=i.customer_key,
        customer_name=i.customer_name,
        currency=c,
        status=status_to_proto(i.status),  # type: ignore[arg-type]
        progressive=i.progressive,
        lines=[to_proto_line(line, c) for line in i.lines],
        totals=pb.InvoiceTotals(
            amount=_money(t.amount, c),
            discount_amount=_money(t.discount_amount, c),
            tax_amount=_money(t.tax_amount, c),
            total=_money(t.total, c),
            credits_applied=_money(t.credits_applied, c),
            credit_notes_amount=_money(t.credit_notes_amount, c),
            amount_due=_money(t.amount_due, c),
        ),
        description=i.description,
        payment_reference=i.payment_reference,
        status_reason=i.status_reason,
        metadata=dict(i.metadata),
        create_time=to_timestamp(i.create_time),
        update_time=to_timestamp(i.update_time),
    )
    if i.billing_address is not None:
        message.billing_address.CopyFrom(_address(i.billing_address))
    if i.period is not None:
        message.period.CopyFrom(to_proto_range(i.period))
    for name in ("collection_time", "due_time", "issue_time", "paid_time", "void_time"):
        at = getattr(i, name)
        if at is not None:
            getattr(message, name).CopyFrom(to_timestamp(at))
    return message


def _range(message: common_pb2.TimeRange, path: str, v: Violations) -> Period | None:
    if not (message.HasField("start_time") and message.HasField("end_time")):
        v.add(path, "needs both start_time and end_time")
        return None
    start, end = from_timestamp(message.start_time), from_timestamp(message.end_time)
    if end <= start:
        v.add(f"{path}.end_time", "must be after start_time")
        return None
    return Period(start, end)


def _manual_line(line: pb.ManualLine, at: str, v: Violations) -> ManualLineInput:
    quantity = None
    if not line.HasField("quantity"):
        v.add(f"{at}.quantity", "is required")
    else:
        try:
            quantity = parse_decimal(line.quantity.value, f"{at}.quantity.value")
        except InvalidArgument as exc:
            v.items.extend(exc.violations)
    unit_amount = None
    if not line.HasField("unit_amount"):
        v.add(f"{at}.unit_amount", "is required")
    else:
        try:
            unit_amount = Money.from_wire(
                line.unit_amount.amount, line.unit_amount.currency, f"{at}.unit_amount"
            )
        except InvalidArgument as exc:
            v.items.extend(exc.violations)
    period = _range(line.period, f"{at}.period", v) if line.HasField("period") else None
    tax = None
    if line.HasField("tax"):
        tax = TaxConfig(line.tax.tax_code, _TAX_FROM_PROTO.get(line.tax.behavior, TaxBehavior.UNSPECIFIED))
    return ManualLineInput(line.name, line.description, quantity, unit_amount, period, tax)


def from_proto_update_draft(request: pb.UpdateDraftInvoiceRequest) -> UpdateDraftInput:
    """What an UpdateDraftInvoice request asks."""
    v = Violations()
    lines = tuple(_manual_line(line, f"add_lines[{i}]", v) for i, line in enumerate(request.add_lines))
    return UpdateDraftInput(
        request_id=request.request_id,
        invoice_id=request.invoice_id,
        description=request.description if request.HasField("description") else None,
        due_time=optional_time(request, "due_time"),
        add_lines=lines,
        remove_line_ids=tuple(request.remove_line_ids),
        decode_violations=tuple(v.items),
    )


def invoice_filter_from_proto(request: pb.ListInvoicesRequest) -> InvoiceFilter:
    """ListInvoices' filters; InvalidArgument naming every malformed one."""
    v = Violations()
    for i, key in enumerate(request.customer_keys):
        check_key(v, key, f"customer_keys[{i}]")
    statuses = []
    for i, status in enumerate(request.statuses):
        if status == pb.INVOICE_STATUS_UNSPECIFIED or status not in pb.InvoiceStatus.values():
            v.add(f"statuses[{i}]", "must be a status other than INVOICE_STATUS_UNSPECIFIED")
        else:
            statuses.append(
                InvoiceStatus(pb.InvoiceStatus.Name(status).removeprefix("INVOICE_STATUS_").lower())
            )
    subscription_id = None
    if request.subscription_id:
        subscription_id = canonical_id(request.subscription_id)
        if subscription_id is None:
            v.add("subscription_id", "must be a UUID, as the server assigned it")
    start = optional_time(request.period, "start_time")
    end = optional_time(request.period, "end_time")
    if start is not None and end is not None and end <= start:
        v.add("period.end_time", "must be after start_time")
    v.raise_if_any()
    return InvoiceFilter(tuple(request.customer_keys), tuple(statuses), subscription_id, start, end)


# --- credit notes ---------------------------------------------------------------------------------------


def from_proto_create_credit_note(request: pb.CreateCreditNoteRequest) -> CreateCreditNoteInput:
    """What a CreateCreditNote request asks."""
    n = request.credit_note
    violations: list[FieldViolation] = []
    lines = []
    for i, line in enumerate(n.lines):
        amount = None
        at = f"credit_note.lines[{i}].amount"
        if not line.HasField("amount"):
            violations.append(FieldViolation(at, "is required"))
        else:
            try:
                amount = Money.from_wire(line.amount.amount, line.amount.currency, at)
            except InvalidArgument as exc:
                violations.extend(exc.violations)
        lines.append(CreditNoteLineInput(line.invoice_line_id, amount, line.description))
    reason = CreditNoteReason.OTHER
    if n.reason != pb.CREDIT_NOTE_REASON_UNSPECIFIED and n.reason in pb.CreditNoteReason.values():
        reason = CreditNoteReason(
            pb.CreditNoteReason.Name(n.reason).removeprefix("CREDIT_NOTE_REASON_").lower()
        )
    settlement = None
    if n.settlement != pb.CREDIT_NOTE_SETTLEMENT_UNSPECIFIED:
        if n.settlement in pb.CreditNoteSettlement.values():
            name = pb.CreditNoteSettlement.Name(n.settlement).removeprefix("CREDIT_NOTE_SETTLEMENT_")
            settlement = Settlement(name.lower())
        else:
            violations.append(FieldViolation("credit_note.settlement", "is not a known settlement"))
    return CreateCreditNoteInput(
        request_id=request.request_id,
        invoice_id=n.invoice_id,
        reason=reason,
        settlement=settlement,
        lines=tuple(lines),
        memo=n.memo,
        given=request.HasField("credit_note"),
        decode_violations=tuple(violations),
    )


def to_proto_credit_note(n: CreditNote) -> pb.CreditNote:
    """The wire form of a credit note."""
    return pb.CreditNote(
        id=n.id,
        number=n.number,
        invoice_id=n.invoice_id,
        customer_key=n.customer_key,
        reason=pb.CreditNoteReason.Value(f"CREDIT_NOTE_REASON_{n.reason.value.upper()}"),
        settlement=pb.CreditNoteSettlement.Value(f"CREDIT_NOTE_SETTLEMENT_{n.settlement.value.upper()}"),
        lines=[
            pb.CreditNoteLine(
                invoice_line_id=line.invoice_line_id,
                amount=_money(line.amount, n.currency),
                description=line.description,
            )
            for line in n.lines
        ],
        total=_money(n.total, n.currency),
        memo=n.memo,
        issue_time=to_timestamp(n.issue_time),
    )
