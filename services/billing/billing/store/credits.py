"""SQL of credits and of what invoices took from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from billing.domain import Credit, CreditApplication
from meterlib.errors import Aborted
from meterlib.stores import Executor

COLUMNS = (
    "id, customer_key, currency, amount, balance, priority, effective_at, expires_at, description, "
    "create_time, void_time"
)

# The application order (billing.domain.Credit.application_order): priority, soonest expiry with no
# expiry last, creation, id. It matches the index credits_application_order.
_ORDER = "priority, coalesce(expires_at, 'infinity'::timestamptz), create_time, id"


def _credit(row: asyncpg.Record) -> Credit:
    return Credit(
        id=str(row["id"]),
        customer_key=row["customer_key"],
        currency=row["currency"],
        amount=row["amount"],
        balance=row["balance"],
        priority=row["priority"],
        effective_at=row["effective_at"],
        create_time=row["create_time"],
        expires_at=row["expires_at"],
        description=row["description"],
        void_time=row["void_time"],
    )


@dataclass(frozen=True)
class CreditPosition:
    """Where a page of ListCredits resumes: after this credit in application order."""

    priority: int
    expires_at: datetime | None
    create_time: datetime
    id: str

    @classmethod
    def of(cls, credit: Credit) -> CreditPosition:
        """The position of a listed credit."""
        return cls(credit.priority, credit.expires_at, credit.create_time, credit.id)


class StaleCredits(Aborted):
    """A credit changed between reading it and taking from it (the caller did not lock it)."""


class CreditStore:
    """Credits, by namespace."""

    def __init__(self, db: Executor) -> None:
        self._db = db

    async def insert(self, namespace: str, c: Credit) -> None:
        """Store a new credit (its customer exists: the caller holds it)."""
        await self._db.execute(
            f"""
            INSERT INTO credits (namespace, {COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            """,
            namespace,
            c.id,
            c.customer_key,
            c.currency,
            c.amount,
            c.balance,
            c.priority,
            c.effective_at,
            c.expires_at,
            c.description,
            c.create_time,
            c.void_time,
        )

    async def get(self, namespace: str, credit_id: str) -> Credit | None:
        """The credit, voided or not."""
        row = await self._db.fetchrow(
            f"SELECT {COLUMNS} FROM credits WHERE namespace = $1 AND id = $2", namespace, credit_id
        )
        return None if row is None else _credit(row)

    async def list_page(
        self,
        namespace: str,
        customer_key: str,
        *,
        include_inactive: bool,
        now: datetime,
        after: CreditPosition | None,
        limit: int,
    ) -> list[Credit]:
        """The customer's credits in application order after ``after``. Without ``include_inactive`` only
        those neither voided, expired at ``now`` nor used up."""
        rows = await self._db.fetch(
            f"""
            SELECT {COLUMNS} FROM credits
            WHERE namespace = $1 AND customer_key = $2
              AND ($3 OR (void_time IS NULL AND balance > 0 AND (expires_at IS NULL OR expires_at > $4)))
              AND ($5::integer IS NULL
                   OR (priority, coalesce(expires_at, 'infinity'::timestamptz), create_time, id)
                      > ($5, coalesce($6::timestamptz, 'infinity'::timestamptz), $7, $8::uuid))
            ORDER BY {_ORDER}
            LIMIT $9
            """,
            namespace,
            customer_key,
            include_inactive,
            now,
            None if after is None else after.priority,
            None if after is None else after.expires_at,
            None if after is None else after.create_time,
            None if after is None else after.id,
            limit,
        )
        return [_credit(row) for row in rows]

    async def void(self, namespace: str, credit_id: str, at: datetime) -> Credit | None:
        """Void the credit at ``at`` (its balance becomes zero) unless it already is; None when there is
        no such credit."""
        row = await self._db.fetchrow(
            f"""
            UPDATE credits
            SET void_time = coalesce(void_time, $3), balance = CASE WHEN void_time IS NULL THEN 0 ELSE balance END
            WHERE namespace = $1 AND id = $2
            RETURNING {COLUMNS}
            """,
            namespace,
            credit_id,
            at,
        )
        return None if row is None else _credit(row)

    async def of_customer_for_update(self, namespace: str, customer_key: str) -> list[Credit]:
        """The customer's credits that are not voided and have something left, in application order,
        locked until the transaction ends (what an invoice being issued may take from)."""
        rows = await self._db.fetch(
            f"""
            SELECT {COLUMNS} FROM credits
            WHERE namespace = $1 AND customer_key = $2 AND void_time IS NULL AND balance > 0
            ORDER BY {_ORDER}
            FOR UPDATE
            """,
            namespace,
            customer_key,
        )
        return [_credit(row) for row in rows]

    async def apply(
        self, namespace: str, invoice_id: str, applications: Sequence[CreditApplication], at: datetime
    ) -> None:
        """Record what the invoice takes from each credit and lower their balances, in the caller's
        transaction. StaleCredits when a credit no longer has that much (its row was not locked)."""
        for application in applications:
            taken = await self._db.fetchval(
                """
                UPDATE credits SET balance = balance - $3
                WHERE namespace = $1 AND id = $2 AND void_time IS NULL AND balance >= $3
                RETURNING id
                """,
                namespace,
                application.credit_id,
                application.amount,
            )
            if taken is None:
                raise StaleCredits(f"credit {application.credit_id!r} changed while it was being applied")
            await self._db.execute(
                """
                INSERT INTO credit_applications (namespace, invoice_id, credit_id, amount, apply_time)
                VALUES ($1, $2, $3, $4, $5)
                """,
                namespace,
                invoice_id,
                application.credit_id,
                application.amount,
                at,
            )

    async def applied_to(self, namespace: str, invoice_id: str) -> list[CreditApplication]:
        """What the invoice took from credits and still holds (not restored), by credit id."""
        rows = await self._db.fetch(
            """
            SELECT credit_id, amount FROM credit_applications
            WHERE namespace = $1 AND invoice_id = $2 AND restore_time IS NULL
            ORDER BY credit_id
            """,
            namespace,
            invoice_id,
        )
        return [CreditApplication(str(row["credit_id"]), row["amount"]) for row in rows]

    async def restore(self, namespace: str, invoice_id: str, at: datetime) -> list[CreditApplication]:
        """Give back what the invoice took, in the caller's transaction: each application is marked
        restored at ``at`` and its credit's balance raised again, unless the credit was voided since (a
        voided credit stays at zero). Restoring twice gives back nothing the second time. Returns what
        was restored."""
        rows = await self._db.fetch(
            """
            UPDATE credit_applications SET restore_time = $3
            WHERE namespace = $1 AND invoice_id = $2 AND restore_time IS NULL
            RETURNING credit_id, amount
            """,
            namespace,
            invoice_id,
            at,
        )
        restored = sorted(
            (CreditApplication(str(row["credit_id"]), row["amount"]) for row in rows),
            key=lambda a: a.credit_id,
        )
        for application in restored:
            await self._db.execute(
                """
                UPDATE credits SET balance = least(amount, balance + $3)
                WHERE namespace = $1 AND id = $2 AND void_time IS NULL
                """,
                namespace,
                application.credit_id,
                application.amount,
            )
        return restored

    async def total_applied(self, namespace: str, invoice_id: str) -> Decimal:
        """The sum the invoice holds from credits (zero when none, or when restored)."""
        total = await self._db.fetchval(
            """
            SELECT coalesce(sum(amount), 0) FROM credit_applications
            WHERE namespace = $1 AND invoice_id = $2 AND restore_time IS NULL
            """,
            namespace,
            invoice_id,
        )
        return Decimal(total)
