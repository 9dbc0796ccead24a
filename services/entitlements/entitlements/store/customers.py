"""SQL of customer copies and their subject keys."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from entitlements.domain import Customer
from meterlib.errors import AlreadyExists
from meterlib.stores import Executor


class SubjectTaken(AlreadyExists):
    """A subject key being written belongs to another customer (found by the unique index)."""


class CustomerStore:
    """Customer copies, by namespace and key."""

    def __init__(self, db: Executor) -> None:
        self._db = db

    async def lock(self, namespace: str, key: str) -> None:
        """Serialise writers of one customer key until the transaction ends (the row may not exist yet)."""
        await self._db.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('entitlements.customer/' || $1 || '/' || $2, 0))",
            namespace,
            key,
        )

    async def get(self, namespace: str, key: str, *, lock: str = "") -> Customer | None:
        """The customer with its subject keys in order; None when there is none. ``lock`` is "" or a row
        lock: "FOR SHARE" keeps it from being deleted until the transaction ends, "FOR UPDATE" to delete."""
        row = await self._db.fetchrow(
            f"""
            SELECT c.key, c.update_time,
                   coalesce((SELECT array_agg(s.subject_key ORDER BY s.position) FROM customer_subjects s
                             WHERE s.namespace = c.namespace AND s.customer_key = c.key), '{{}}') AS subject_keys
            FROM customers c
            WHERE c.namespace = $1 AND c.key = $2
            {lock}
            """,
            namespace,
            key,
        )
        if row is None:
            return None
        return Customer(row["key"], tuple(row["subject_keys"]), row["update_time"])

    async def all(self, namespace: str | None = None) -> list[tuple[str, Customer]]:
        """Every customer copy (of one namespace, or all), with its namespace: what a replica loads."""
        rows = await self._db.fetch(
            """
            SELECT c.namespace, c.key, c.update_time,
                   coalesce((SELECT array_agg(s.subject_key ORDER BY s.position) FROM customer_subjects s
                             WHERE s.namespace = c.namespace AND s.customer_key = c.key), '{}') AS subject_keys
            FROM customers c
            WHERE $1::text IS NULL OR c.namespace = $1
            ORDER BY c.namespace, c.key
            """,
            namespace,
        )
        return [
            (row["namespace"], Customer(row["key"], tuple(row["subject_keys"]), row["update_time"]))
            for row in rows
        ]

    async def owners(self, namespace: str, subjects: Sequence[str], other_than: str) -> dict[str, str]:
        """Which of ``subjects`` belong to customers other than ``other_than``: subject -> customer key."""
        if not subjects:
            return {}
        rows = await self._db.fetch(
            """
            SELECT subject_key, customer_key FROM customer_subjects
            WHERE namespace = $1 AND subject_key = ANY($2::text[]) AND customer_key <> $3
            ORDER BY subject_key
            """,
            namespace,
            list(subjects),
            other_than,
        )
        return {row["subject_key"]: row["customer_key"] for row in rows}

    async def save(self, namespace: str, customer: Customer) -> None:
        """Write the customer and replace its subject keys; SubjectTaken when one belongs to another."""
        await self._db.execute(
            """
            INSERT INTO customers (namespace, key, update_time) VALUES ($1, $2, $3)
            ON CONFLICT (namespace, key) DO UPDATE SET update_time = excluded.update_time
            """,
            namespace,
            customer.key,
            customer.update_time,
        )
        await self._db.execute(
            "DELETE FROM customer_subjects WHERE namespace = $1 AND customer_key = $2",
            namespace,
            customer.key,
        )
        try:
            await self._db.execute(
                """
                INSERT INTO customer_subjects (namespace, subject_key, customer_key, position)
                SELECT $1, subject, $2, position::integer
                FROM unnest($3::text[]) WITH ORDINALITY AS given(subject, position)
                """,
                namespace,
                customer.key,
                list(customer.subject_keys),
            )
        except asyncpg.UniqueViolationError:
            raise SubjectTaken("a subject key belongs to another customer") from None

    async def delete(self, namespace: str, key: str) -> bool:
        """Remove the customer and its subject keys; whether there was one."""
        status = await self._db.execute(
            "DELETE FROM customers WHERE namespace = $1 AND key = $2", namespace, key
        )
        return status != "DELETE 0"
