"""SQL of invoices and their lines.

An invoice row is read joined with its customer: before issue the invoice shows the customer's current
name and address, after issue the snapshot taken then. Removed lines stay as tombstones (see migration
0004) and are never read back as lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from billing.domain.customers import Address
from billing.domain.invoices import Invoice, InvoiceLine, InvoiceStatus, LineType, Totals
from billing.plans import TaxBehavior, TaxConfig
from billing.store.invoice_json import (
    address_from_json,
    address_to_json,
    discounts_from_json,
    discounts_to_json,
    tiers_from_json,
    tiers_to_json,
)
from meterlib.periods import Period
from meterlib.stores import Executor

_INVOICE_COLUMNS = """
    i.id, i.customer_key, i.currency, i.status, i.period_start, i.period_end, i.progressive, i.number,
    i.description, i.collection_time, i.due_time, i.issue_time, i.paid_time, i.void_time,
    i.payment_reference, i.status_reason, i.metadata, i.amount, i.discount_amount, i.tax_amount, i.total,
    i.credits_applied, i.credit_notes_amount, i.amount_due, i.create_time, i.update_time,
    coalesce(i.customer_name, c.name) AS customer_name,
    CASE WHEN i.issue_time IS NOT NULL THEN i.customer_address
         WHEN c.address_country IS NULL THEN NULL
         ELSE jsonb_build_object(
             'country', c.address_country, 'postal_code', c.address_postal_code,
             'state', c.address_state, 'city', c.address_city,
             'line1', c.address_line1, 'line2', c.address_line2)
    END AS customer_address
"""
_FROM = "FROM invoices i JOIN customers c ON c.namespace = i.namespace AND c.key = i.customer_key"

_LINE_COLUMNS = """
    id, type, name, description, subscription_id, charge_id, item_id, rate_card_key, feature_key,
    period_start, period_end, price, group_values, quantity, previously_billed_quantity,
    proration_factor, unit_amount, tiers, amount, discounts, total, tax_code, tax_behavior, tax_amount,
    metadata, sort_key
"""


def _period(start: datetime | None, end: datetime | None) -> Period | None:
    return None if start is None or end is None else Period(start, end)


def _invoice(row: asyncpg.Record, lines: Sequence[InvoiceLine] = ()) -> Invoice:
    return Invoice(
        id=str(row["id"]),
        customer_key=row["customer_key"],
        currency=row["currency"],
        status=InvoiceStatus(row["status"]),
        create_time=row["create_time"],
        update_time=row["update_time"],
        period=_period(row["period_start"], row["period_end"]),
        progressive=row["progressive"],
        number=row["number"] or "",
        customer_name=row["customer_name"],
        billing_address=address_from_json(row["customer_address"]),
        lines=tuple(lines),
        totals=Totals(
            amount=row["amount"],
            discount_amount=row["discount_amount"],
            tax_amount=row["tax_amount"],
            total=row["total"],
            credits_applied=row["credits_applied"],
            credit_notes_amount=row["credit_notes_amount"],
            amount_due=row["amount_due"],
        ),
        description=row["description"],
        collection_time=row["collection_time"],
        due_time=row["due_time"],
        issue_time=row["issue_time"],
        paid_time=row["paid_time"],
        void_time=row["void_time"],
        payment_reference=row["payment_reference"],
        status_reason=row["status_reason"],
        metadata=dict(row["metadata"]),
    )


def _line(row: asyncpg.Record) -> InvoiceLine:
    tax = None
    if row["tax_code"] is not None:
        tax = TaxConfig(row["tax_code"], TaxBehavior(row["tax_behavior"]))
    return InvoiceLine(
        id=str(row["id"]),
        type=LineType(row["type"]),
        name=row["name"],
        description=row["description"],
        subscription_id="" if row["subscription_id"] is None else str(row["subscription_id"]),
        charge_id=row["charge_id"] or "",
        item_id=row["item_id"] or "",
        rate_card_key=row["rate_card_key"],
        feature_key=row["feature_key"],
        period=_period(row["period_start"], row["period_end"]),
        price=row["price"],
        group_values=dict(row["group_values"]),
        quantity=row["quantity"],
        previously_billed_quantity=row["previously_billed_quantity"],
        proration_factor=row["proration_factor"],
        unit_amount=row["unit_amount"],
        tiers=tiers_from_json(row["tiers"]),
        amount=row["amount"],
        discounts=discounts_from_json(row["discounts"]),
        total=row["total"],
        tax=tax,
        tax_amount=row["tax_amount"],
        metadata=dict(row["metadata"]),
        sort_key=row["sort_key"],
    )


def _line_args(namespace: str, invoice_id: str, line: InvoiceLine, at: datetime) -> tuple[Any, ...]:
    period = line.period
    return (
        namespace,
        invoice_id,
        line.id,
        line.type.value,
        line.name,
        line.description,
        line.subscription_id or None,
        line.charge_id or None,
        line.item_id or None,
        line.rate_card_key,
        line.feature_key,
        None if period is None else period.start,
        None if period is None else period.end,
        line.price,
        dict(line.group_values),
        line.quantity,
        line.previously_billed_quantity,
        line.proration_factor,
        line.unit_amount,
        tiers_to_json(line.tiers),
        line.amount,
        discounts_to_json(line.discounts),
        line.total,
        None if line.tax is None else line.tax.tax_code,
        None if line.tax is None else line.tax.behavior.value,
        line.tax_amount,
        dict(line.metadata),
        line.sort_key,
        at,
    )


_INSERT_LINE = f"""
    INSERT INTO invoice_lines (namespace, invoice_id, {_LINE_COLUMNS}, create_time)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
            $21, $22, $23, $24, $25, $26, $27, $28, $29)
"""


@dataclass(frozen=True)
class InvoicePosition:
    """Where a page of ListInvoices resumes: after this invoice (creation descending, then id)."""

    create_time: datetime
    id: str


@dataclass(frozen=True)
class InvoiceFilter:
    """ListInvoices' filters; empty means all."""

    customer_keys: tuple[str, ...] = ()
    statuses: tuple[InvoiceStatus, ...] = ()
    subscription_id: str | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None


_INSERT_INVOICE = """
    INSERT INTO invoices (namespace, id, customer_key, currency, status, progressive, description,
                          collection_time, metadata, create_time, update_time, period_start, period_end,
                          amount, discount_amount, tax_amount, total, credits_applied, credit_notes_amount,
                          amount_due)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
"""


def _invoice_args(namespace: str, invoice: Invoice) -> tuple[Any, ...]:
    t = invoice.totals
    period = invoice.period
    return (
        namespace,
        invoice.id,
        invoice.customer_key,
        invoice.currency,
        invoice.status.value,
        invoice.progressive,
        invoice.description,
        invoice.collection_time,
        dict(invoice.metadata),
        invoice.create_time,
        invoice.update_time,
        None if period is None else period.start,
        None if period is None else period.end,
        t.amount,
        t.discount_amount,
        t.tax_amount,
        t.total,
        t.credits_applied,
        t.credit_notes_amount,
        t.amount_due,
    )


class InvoiceStore:
    """Invoices and their lines, by namespace."""

    def __init__(self, db: Executor) -> None:
        self._db = db

    async def insert(self, namespace: str, invoices: Sequence[Invoice]) -> None:
        """Store new invoices' headers and totals (their lines go in with :meth:`insert_lines`)."""
        await self._db.executemany(
            _INSERT_INVOICE, [_invoice_args(namespace, invoice) for invoice in invoices]
        )

    async def existing(self, namespace: str, invoice_ids: Sequence[str]) -> set[str]:
        """Which of these invoice ids are taken."""
        rows = await self._db.fetch(
            "SELECT id::text FROM invoices WHERE namespace = $1 AND id = ANY($2::uuid[])",
            namespace,
            list(invoice_ids),
        )
        return {row["id"] for row in rows}

    async def get(
        self, namespace: str, invoice_id: str, *, lines: bool = True, for_update: bool = False
    ) -> Invoice | None:
        """The invoice (with its lines unless told not to); ``for_update`` locks its row until the
        transaction ends, so that one transition at a time applies to it."""
        lock = "FOR UPDATE OF i" if for_update else ""
        row = await self._db.fetchrow(
            f"SELECT {_INVOICE_COLUMNS} {_FROM} WHERE i.namespace = $1 AND i.id = $2 {lock}",
            namespace,
            invoice_id,
        )
        if row is None:
            return None
        return _invoice(row, await self.lines(namespace, invoice_id) if lines else ())

    async def lines(self, namespace: str, invoice_id: str) -> list[InvoiceLine]:
        """The lines not removed, computed lines in draft order, then manual lines as added."""
        rows = await self._db.fetch(
            f"""
            SELECT {_LINE_COLUMNS} FROM invoice_lines
            WHERE namespace = $1 AND invoice_id = $2 AND remove_time IS NULL
            ORDER BY type = 'manual', sort_key, id
            """,
            namespace,
            invoice_id,
        )
        return [_line(row) for row in rows]

    async def line_ids(self, namespace: str, invoice_id: str) -> dict[str, bool]:
        """Every line id of the invoice, removed ones included: id -> whether it was removed."""
        rows = await self._db.fetch(
            "SELECT id, remove_time IS NOT NULL AS removed FROM invoice_lines WHERE namespace = $1 AND invoice_id = $2",
            namespace,
            invoice_id,
        )
        return {str(row["id"]): row["removed"] for row in rows}

    async def next_manual_sort_key(self, namespace: str, invoice_id: str) -> int:
        """The sort key after every manual line of the invoice (removed ones too)."""
        value = await self._db.fetchval(
            """
            SELECT coalesce(max(sort_key) + 1, 0) FROM invoice_lines
            WHERE namespace = $1 AND invoice_id = $2 AND type = 'manual'
            """,
            namespace,
            invoice_id,
        )
        return int(value)

    async def insert_lines(
        self, namespace: str, lines: Sequence[tuple[str, InvoiceLine]], at: datetime
    ) -> None:
        """Add lines, each ``(invoice_id, line)``, to their invoices."""
        if lines:
            await self._db.executemany(
                _INSERT_LINE, [_line_args(namespace, invoice_id, line, at) for invoice_id, line in lines]
            )

    async def replace_computed_lines(
        self, namespace: str, invoice_id: str, lines: Sequence[InvoiceLine], at: datetime
    ) -> None:
        """Replace the computed lines that are not removed with ``lines``, leaving manual lines and
        tombstones as they are; a line whose id is a tombstone's stays removed."""
        await self._db.execute(
            """
            DELETE FROM invoice_lines
            WHERE namespace = $1 AND invoice_id = $2 AND type <> 'manual' AND remove_time IS NULL
            """,
            namespace,
            invoice_id,
        )
        removed = {line_id for line_id, gone in (await self.line_ids(namespace, invoice_id)).items() if gone}
        await self.insert_lines(
            namespace, [(invoice_id, line) for line in lines if line.id not in removed], at
        )

    async def remove_lines(
        self, namespace: str, invoice_id: str, line_ids: Sequence[str], at: datetime
    ) -> None:
        """Make the lines tombstones (those already removed keep their first removal time)."""
        await self._db.execute(
            """
            UPDATE invoice_lines SET remove_time = $4
            WHERE namespace = $1 AND invoice_id = $2 AND id = ANY($3::uuid[]) AND remove_time IS NULL
            """,
            namespace,
            invoice_id,
            list(line_ids),
            at,
        )

    async def update(self, namespace: str, invoice: Invoice, *, snapshot: bool = False) -> None:
        """Write the invoice's mutable header fields and totals. ``snapshot`` also stores its customer
        name and address (at issue)."""
        t = invoice.totals
        period = invoice.period
        address: Address | None = invoice.billing_address
        await self._db.execute(
            """
            UPDATE invoices SET
                status = $3, period_start = $4, period_end = $5, number = $6, description = $7,
                collection_time = $8, due_time = $9, issue_time = $10, paid_time = $11, void_time = $12,
                payment_reference = $13, status_reason = $14, amount = $15, discount_amount = $16,
                tax_amount = $17, total = $18, credits_applied = $19, credit_notes_amount = $20,
                amount_due = $21, update_time = $22,
                customer_name = CASE WHEN $23 THEN $24 ELSE customer_name END,
                customer_address = CASE WHEN $23 THEN $25::jsonb ELSE customer_address END
            WHERE namespace = $1 AND id = $2
            """,
            namespace,
            invoice.id,
            invoice.status.value,
            None if period is None else period.start,
            None if period is None else period.end,
            invoice.number or None,
            invoice.description,
            invoice.collection_time,
            invoice.due_time,
            invoice.issue_time,
            invoice.paid_time,
            invoice.void_time,
            invoice.payment_reference,
            invoice.status_reason,
            t.amount,
            t.discount_amount,
            t.tax_amount,
            t.total,
            t.credits_applied,
            t.credit_notes_amount,
            t.amount_due,
            invoice.update_time,
            snapshot,
            invoice.customer_name,
            address_to_json(address),
        )

    async def list_page(
        self,
        namespace: str,
        filters: InvoiceFilter,
        *,
        after: InvoicePosition | None,
        limit: int,
        lines: bool,
    ) -> list[Invoice]:
        """Invoices matching ``filters`` after ``after`` (creation descending, then id), at most ``limit``.
        The period filter keeps invoices whose period overlaps it (an invoice without one never does)."""
        rows = await self._db.fetch(
            f"""
            SELECT {_INVOICE_COLUMNS} {_FROM}
            WHERE i.namespace = $1
              AND (cardinality($2::text[]) = 0 OR i.customer_key = ANY($2))
              AND (cardinality($3::text[]) = 0 OR i.status = ANY($3))
              AND ($4::uuid IS NULL OR EXISTS (
                  SELECT 1 FROM invoice_lines l
                  WHERE l.namespace = i.namespace AND l.invoice_id = i.id AND l.subscription_id = $4
                    AND l.remove_time IS NULL))
              AND ($5::timestamptz IS NULL OR i.period_end > $5)
              AND ($6::timestamptz IS NULL OR i.period_start < $6)
              AND ($7::timestamptz IS NULL OR i.create_time < $7 OR (i.create_time = $7 AND i.id > $8::uuid))
            ORDER BY i.create_time DESC, i.id
            LIMIT $9
            """,
            namespace,
            list(filters.customer_keys),
            [s.value for s in filters.statuses],
            filters.subscription_id,
            filters.period_start,
            filters.period_end,
            None if after is None else after.create_time,
            None if after is None else after.id,
            limit,
        )
        invoices = []
        for row in rows:
            found = await self.lines(namespace, str(row["id"])) if lines else ()
            invoices.append(_invoice(row, found))
        return invoices
