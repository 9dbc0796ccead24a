"""SQL of credit notes and their lines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from billing.domain.credit_notes import CreditNote, CreditNoteLine, CreditNoteReason, Settlement
from meterlib.stores import Executor

_COLUMNS = (
    "id, number, invoice_id, customer_key, currency, reason, settlement, total, memo, credit_id, issue_time"
)


@dataclass(frozen=True)
class CreditNotePosition:
    """Where a page of ListCreditNotes resumes: after this note (issue time descending, then id)."""

    issue_time: datetime
    id: str


class CreditNoteStore:
    """Credit notes, by namespace."""

    def __init__(self, db: Executor) -> None:
        self._db = db

    async def _with_lines(self, namespace: str, rows: Sequence[asyncpg.Record]) -> list[CreditNote]:
        if not rows:
            return []
        line_rows = await self._db.fetch(
            """
            SELECT credit_note_id, invoice_line_id, amount, description FROM credit_note_lines
            WHERE namespace = $1 AND credit_note_id = ANY($2::uuid[])
            ORDER BY credit_note_id, position
            """,
            namespace,
            [row["id"] for row in rows],
        )
        lines: dict[str, list[CreditNoteLine]] = {}
        for line in line_rows:
            lines.setdefault(str(line["credit_note_id"]), []).append(
                CreditNoteLine(str(line["invoice_line_id"]), line["amount"], line["description"])
            )
        return [
            CreditNote(
                id=str(row["id"]),
                number=row["number"],
                invoice_id=str(row["invoice_id"]),
                customer_key=row["customer_key"],
                currency=row["currency"],
                reason=CreditNoteReason(row["reason"]),
                settlement=Settlement(row["settlement"]),
                lines=tuple(lines.get(str(row["id"]), ())),
                total=row["total"],
                issue_time=row["issue_time"],
                memo=row["memo"],
                credit_id=None if row["credit_id"] is None else str(row["credit_id"]),
            )
            for row in rows
        ]

    async def insert(self, namespace: str, note: CreditNote) -> None:
        """Store a new credit note with its lines."""
        await self._db.execute(
            f"""
            INSERT INTO credit_notes (namespace, {_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            """,
            namespace,
            note.id,
            note.number,
            note.invoice_id,
            note.customer_key,
            note.currency,
            note.reason.value,
            note.settlement.value,
            note.total,
            note.memo,
            note.credit_id,
            note.issue_time,
        )
        await self._db.executemany(
            """
            INSERT INTO credit_note_lines (namespace, credit_note_id, position, invoice_line_id, amount,
                                           description)
            VALUES ($1, $2, $3, $4, $5, $6)
            """,
            [
                (namespace, note.id, i, line.invoice_line_id, line.amount, line.description)
                for i, line in enumerate(note.lines)
            ],
        )

    async def get(self, namespace: str, note_id: str) -> CreditNote | None:
        """The credit note; None when there is none."""
        row = await self._db.fetchrow(
            f"SELECT {_COLUMNS} FROM credit_notes WHERE namespace = $1 AND id = $2", namespace, note_id
        )
        return None if row is None else (await self._with_lines(namespace, [row]))[0]

    async def credited_per_line(self, namespace: str, invoice_id: str) -> dict[str, Decimal]:
        """What the invoice's credit notes credited so far, by invoice line id."""
        rows = await self._db.fetch(
            """
            SELECT l.invoice_line_id, sum(l.amount) AS credited
            FROM credit_note_lines l
            JOIN credit_notes n ON n.namespace = l.namespace AND n.id = l.credit_note_id
            WHERE n.namespace = $1 AND n.invoice_id = $2
            GROUP BY l.invoice_line_id
            """,
            namespace,
            invoice_id,
        )
        return {str(row["invoice_line_id"]): row["credited"] for row in rows}

    async def offset_total(self, namespace: str, invoice_id: str) -> Decimal:
        """The sum of the invoice's OFFSET credit notes (what they took off its amount due)."""
        total = await self._db.fetchval(
            """
            SELECT coalesce(sum(total), 0) FROM credit_notes
            WHERE namespace = $1 AND invoice_id = $2 AND settlement = 'offset'
            """,
            namespace,
            invoice_id,
        )
        return Decimal(total)

    async def list_page(
        self,
        namespace: str,
        *,
        customer_keys: Sequence[str],
        invoice_id: str | None,
        after: CreditNotePosition | None,
        limit: int,
    ) -> list[CreditNote]:
        """Credit notes by issue time descending, then id, after ``after``; at most ``limit``."""
        rows = await self._db.fetch(
            f"""
            SELECT {_COLUMNS} FROM credit_notes
            WHERE namespace = $1
              AND (cardinality($2::text[]) = 0 OR customer_key = ANY($2))
              AND ($3::uuid IS NULL OR invoice_id = $3)
              AND ($4::timestamptz IS NULL OR issue_time < $4 OR (issue_time = $4 AND id > $5::uuid))
            ORDER BY issue_time DESC, id
            LIMIT $6
            """,
            namespace,
            list(customer_keys),
            invoice_id,
            None if after is None else after.issue_time,
            None if after is None else after.id,
            limit,
        )
        return await self._with_lines(namespace, rows)
