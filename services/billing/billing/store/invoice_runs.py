"""SQL of the invoice run: its request-id record, the sources of computed invoices, drafts to issue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

from meterlib.stores import Executor


class SourceKind(StrEnum):
    """What part of a subscription's timeline an invoice bills."""

    INITIAL = "initial"
    """The charges due at the subscription's start (in-advance fees of its first period)."""
    PERIOD = "period"
    """The charges due at one billing period's end."""
    PROGRESSIVE = "progressive"
    """The charges due up to an instant within a period (a progressive invoice)."""


@dataclass(frozen=True)
class InvoiceSource:
    """One subscription's part of an invoice: ``[start, end)`` is the billing period (for INITIAL, the
    subscription's start twice; for PROGRESSIVE, the period's start and the cut)."""

    subscription_id: str
    kind: SourceKind
    start: datetime
    end: datetime


@dataclass(frozen=True)
class RunRecord:
    """A RunInvoices request as recorded."""

    as_of: datetime
    customer_keys: tuple[str, ...]
    subscription_count: int
    already_invoiced_count: int
    finished: bool


def _run(row: asyncpg.Record) -> RunRecord:
    return RunRecord(
        as_of=row["as_of"],
        customer_keys=tuple(row["customer_keys"]),
        subscription_count=row["subscription_count"],
        already_invoiced_count=row["already_invoiced_count"],
        finished=row["finish_time"] is not None,
    )


class InvoiceRunStore:
    """Invoice runs and invoice sources, by namespace."""

    def __init__(self, db: Executor) -> None:
        self._db = db

    async def start_run(
        self, namespace: str, request_id: str, as_of: datetime, customer_keys: Sequence[str], at: datetime
    ) -> RunRecord:
        """The run of this request id: recorded now, or as an earlier call recorded it."""
        row = await self._db.fetchrow(
            """
            INSERT INTO invoice_runs (namespace, request_id, as_of, customer_keys, create_time)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (namespace, request_id) DO UPDATE SET request_id = EXCLUDED.request_id
            RETURNING *
            """,
            namespace,
            request_id,
            as_of,
            sorted(customer_keys),
            at,
        )
        assert row is not None
        return _run(row)

    async def add_invoices(self, namespace: str, request_id: str, invoice_ids: Sequence[str]) -> None:
        """Note that the run made (or moved to DRAFT) these invoices."""
        await self._db.executemany(
            """
            INSERT INTO invoice_run_invoices (namespace, request_id, invoice_id) VALUES ($1, $2, $3)
            ON CONFLICT DO NOTHING
            """,
            [(namespace, request_id, invoice_id) for invoice_id in invoice_ids],
        )

    async def invoices(self, namespace: str, request_id: str) -> list[str]:
        """The ids of the invoices the run made, by customer key and id."""
        rows = await self._db.fetch(
            """
            SELECT r.invoice_id FROM invoice_run_invoices r
            JOIN invoices i ON i.namespace = r.namespace AND i.id = r.invoice_id
            WHERE r.namespace = $1 AND r.request_id = $2
            ORDER BY i.customer_key, r.invoice_id
            """,
            namespace,
            request_id,
        )
        return [str(row["invoice_id"]) for row in rows]

    async def finish_run(
        self, namespace: str, request_id: str, subscriptions: int, already_invoiced: int, at: datetime
    ) -> RunRecord:
        """Record the run's counts and that it finished."""
        row = await self._db.fetchrow(
            """
            UPDATE invoice_runs
            SET subscription_count = $3, already_invoiced_count = $4, finish_time = $5
            WHERE namespace = $1 AND request_id = $2
            RETURNING *
            """,
            namespace,
            request_id,
            subscriptions,
            already_invoiced,
            at,
        )
        assert row is not None
        return _run(row)

    async def add_sources(self, namespace: str, sources: Sequence[tuple[str, InvoiceSource]]) -> None:
        """Record what invoices bill, each ``(invoice_id, source)`` (again: a recalculation records
        nothing new)."""
        await self._db.executemany(
            """
            INSERT INTO invoice_sources (namespace, invoice_id, subscription_id, kind, period_start, period_end)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT DO NOTHING
            """,
            [(namespace, i, s.subscription_id, s.kind.value, s.start, s.end) for i, s in sources],
        )

    async def sources(self, namespace: str, invoice_id: str) -> list[InvoiceSource]:
        """What an invoice bills, in order."""
        rows = await self._db.fetch(
            """
            SELECT subscription_id, kind, period_start, period_end FROM invoice_sources
            WHERE namespace = $1 AND invoice_id = $2
            ORDER BY subscription_id, period_end, kind
            """,
            namespace,
            invoice_id,
        )
        return [
            InvoiceSource(
                str(r["subscription_id"]), SourceKind(r["kind"]), r["period_start"], r["period_end"]
            )
            for r in rows
        ]

    async def collectable(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """(namespace, id) of DRAFT invoices whose collection time has passed, oldest first."""
        rows = await self._db.fetch(
            """
            SELECT namespace, id FROM invoices
            WHERE status = 'draft' AND collection_time IS NOT NULL AND collection_time <= $1
            ORDER BY collection_time
            LIMIT $2
            """,
            now,
            limit,
        )
        return [(r["namespace"], str(r["id"])) for r in rows]
