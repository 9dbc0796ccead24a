"""SQL of what invoices billed of each subscription charge, and of gap-free document numbers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from billing.rating import Usage, add_usage
from billing.store.invoice_json import usage_from_json, usage_to_json
from meterlib.errors import FailedPrecondition
from meterlib.stores import Executor


@dataclass(frozen=True)
class BilledRecord:
    """What one invoice billed of one charge: ``usage`` on top of earlier invoices (None for fees),
    up to ``service_end``; ``final`` when this invoice billed the charge for good."""

    charge_id: str
    final: bool
    usage: Usage | None
    service_end: datetime


_SETTLED = frozenset({"issued", "paid", "uncollectible"})


@dataclass(frozen=True)
class BilledCharge:
    """What invoices billed of one charge so far.

    ``final`` is True once an invoice billed it for good, whatever became of that invoice (a period is
    invoiced once, even when its invoice was voided). ``usage`` is the sum of the usage billed by
    invoices that are not VOID (a voided progressive invoice's usage is billed again by the next
    invoice of the period); None when none billed usage. ``billed_through`` is the latest end billed by
    such an invoice. ``settled`` when the invoice that billed it for good was issued and not voided
    (issued, paid or uncollectible): usage reported after that is late usage, billed by a later invoice.
    """

    charge_id: str
    final: bool
    usage: Usage | None
    billed_through: datetime | None
    invoice_ids: tuple[str, ...]
    settled: bool = False


class ChargeBilledElsewhere(FailedPrecondition):
    """Another invoice already billed one of the charges for good."""

    def __init__(self, subscription_id: str, charge_ids: Sequence[str]) -> None:
        super().__init__(
            f"subscription {subscription_id!r}: charges {', '.join(charge_ids)} were already invoiced",
            metadata={"subscription_id": subscription_id},
        )
        self.subscription_id = subscription_id
        self.charge_ids = tuple(charge_ids)


class BilledChargeStore:
    """What invoices billed of subscription charges, by namespace."""

    def __init__(self, db: Executor) -> None:
        self._db = db

    async def record(
        self,
        namespace: str,
        bills: Sequence[tuple[str, str, Sequence[BilledRecord]]],
        at: datetime,
    ) -> None:
        """Write what invoices bill of subscriptions' charges, each ``(invoice_id, subscription_id,
        records)`` (rewriting an invoice's earlier rows for the same charges).
        ChargeBilledElsewhere when another invoice billed a final one for good; the caller's
        transaction must then roll back."""
        finals = [
            (subscription_id, r.charge_id, invoice_id)
            for invoice_id, subscription_id, records in bills
            for r in records
            if r.final
        ]
        if finals:
            taken = await self._db.fetch(
                """
                SELECT b.subscription_id::text, b.charge_id
                FROM billed_charges b
                JOIN unnest($2::uuid[], $3::text[], $4::uuid[]) AS w (subscription_id, charge_id, invoice_id)
                  ON b.subscription_id = w.subscription_id AND b.charge_id = w.charge_id
                 AND b.invoice_id <> w.invoice_id
                WHERE b.namespace = $1 AND b.final
                ORDER BY 1, 2
                """,
                namespace,
                [f[0] for f in finals],
                [f[1] for f in finals],
                [f[2] for f in finals],
            )
            if taken:
                first = taken[0]["subscription_id"]
                raise ChargeBilledElsewhere(
                    first, [row["charge_id"] for row in taken if row["subscription_id"] == first]
                )
        rows = [
            (
                namespace,
                subscription_id,
                r.charge_id,
                invoice_id,
                r.final,
                None if r.usage is None else usage_to_json(r.usage),
                r.service_end,
                at,
            )
            for invoice_id, subscription_id, records in bills
            for r in records
        ]
        if not rows:
            return
        try:
            await self._db.executemany(
                """
                INSERT INTO billed_charges (namespace, subscription_id, charge_id, invoice_id, final, usage,
                                            service_end, create_time)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                ON CONFLICT (namespace, subscription_id, charge_id, invoice_id)
                DO UPDATE SET final = excluded.final, usage = excluded.usage, service_end = excluded.service_end
                """,
                rows,
            )
        except asyncpg.UniqueViolationError:
            # A concurrent invoice billed one of them between the check and the insert (the
            # transaction is aborted now; which charges it took is for the caller's retry to find).
            first = finals[0][0]
            raise ChargeBilledElsewhere(first, [f[1] for f in finals if f[0] == first]) from None

    async def forget_invoice(self, namespace: str, invoice_id: str) -> None:
        """Drop what ``invoice_id`` billed (before a recalculation writes it again)."""
        await self._db.execute(
            "DELETE FROM billed_charges WHERE namespace = $1 AND invoice_id = $2", namespace, invoice_id
        )

    async def billed(
        self,
        namespace: str,
        subscription_id: str,
        charge_ids: Sequence[str] | None = None,
        *,
        exclude_invoice_id: str | None = None,
    ) -> dict[str, BilledCharge]:
        """What invoices billed of the subscription's charges (only ``charge_ids`` when given), by charge
        id; ``exclude_invoice_id`` leaves out an invoice being recalculated."""
        found = await self.billed_of(namespace, [subscription_id], exclude_invoice_id=exclude_invoice_id)
        billed = found.get(subscription_id, {})
        if charge_ids is None:
            return billed
        return {charge_id: billed[charge_id] for charge_id in charge_ids if charge_id in billed}

    async def billed_of(
        self,
        namespace: str,
        subscription_ids: Sequence[str],
        *,
        since: datetime | None = None,
        exclude_invoice_id: str | None = None,
    ) -> dict[str, dict[str, BilledCharge]]:
        """What invoices billed of the charges of many subscriptions, by subscription and charge id, in
        one query: only charges billed up to ``since`` or later when given; ``exclude_invoice_id``
        leaves out an invoice being recalculated."""
        rows = await self._db.fetch(
            """
            SELECT b.subscription_id, b.charge_id, b.invoice_id, b.final, b.usage, b.service_end, i.status
            FROM billed_charges b
            JOIN invoices i ON i.namespace = b.namespace AND i.id = b.invoice_id
            WHERE b.namespace = $1 AND b.subscription_id = ANY($2::uuid[])
              AND ($3::timestamptz IS NULL OR b.service_end >= $3)
              AND ($4::uuid IS NULL OR b.invoice_id <> $4)
            ORDER BY b.subscription_id, b.charge_id, b.service_end, b.invoice_id
            """,
            namespace,
            list(subscription_ids),
            since,
            exclude_invoice_id,
        )
        result: dict[str, dict[str, BilledCharge]] = {}
        for row in rows:
            charges = result.setdefault(str(row["subscription_id"]), {})
            charge_id = row["charge_id"]
            before = charges.get(charge_id) or BilledCharge(charge_id, False, None, None, ())
            usage, through, settled = before.usage, before.billed_through, before.settled
            if row["status"] != "void":
                through = row["service_end"] if through is None else max(through, row["service_end"])
                if row["usage"] is not None:
                    more = usage_from_json(row["usage"])
                    usage = more if usage is None else add_usage(usage, more)
            if row["final"]:
                settled = row["status"] in _SETTLED
            charges[charge_id] = BilledCharge(
                charge_id,
                before.final or row["final"],
                usage,
                through,
                (*before.invoice_ids, str(row["invoice_id"])),
                settled,
            )
        return result


class DocumentNumbers:
    """Gap-free numbers per namespace and kind of document."""

    def __init__(self, db: Executor) -> None:
        self._db = db

    async def next(self, namespace: str, kind: Literal["invoice", "credit_note"]) -> int:
        """The next number, taken in the caller's transaction: its row stays locked until that commits
        (the next caller waits) or rolls back (the number is given again), so numbers have no gaps."""
        value = await self._db.fetchval(
            """
            INSERT INTO document_numbers (namespace, kind, last_number) VALUES ($1, $2, 1)
            ON CONFLICT (namespace, kind) DO UPDATE SET last_number = document_numbers.last_number + 1
            RETURNING last_number
            """,
            namespace,
            kind,
        )
        return int(value)
