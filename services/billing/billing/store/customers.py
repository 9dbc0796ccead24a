"""SQL of customers and their subject keys."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from billing.domain import Address, Customer
from meterlib.errors import AlreadyExists
from meterlib.stores import Executor

_COLUMNS = (
    "c.key, c.name, c.currency, c.email, c.address_country, c.address_postal_code, c.address_state, "
    "c.address_city, c.address_line1, c.address_line2, c.metadata, c.create_time, c.update_time, "
    "c.delete_time, "
    "coalesce((SELECT array_agg(s.subject_key ORDER BY s.position) FROM customer_subjects s "
    "WHERE s.namespace = c.namespace AND s.customer_key = c.key), '{}') AS subject_keys"
)


class SubjectTaken(AlreadyExists):
    """A subject key being written belongs to another customer (found by the unique index)."""


def _customer(row: asyncpg.Record) -> Customer:
    country = row["address_country"]
    return Customer(
        key=row["key"],
        name=row["name"],
        currency=row["currency"],
        subject_keys=tuple(row["subject_keys"]),
        billing_address=None
        if country is None
        else Address(
            country=country,
            postal_code=row["address_postal_code"],
            state=row["address_state"],
            city=row["address_city"],
            line1=row["address_line1"],
            line2=row["address_line2"],
        ),
        email=row["email"],
        metadata=dict(row["metadata"]),
        create_time=row["create_time"],
        update_time=row["update_time"],
        delete_time=row["delete_time"],
    )


class CustomerStore:
    """Customers, by namespace and key."""

    def __init__(self, db: Executor) -> None:
        self._db = db

    async def lock(self, namespace: str, key: str) -> None:
        """Serialise writers of one customer key until the transaction ends (the row may not exist yet)."""
        await self._db.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('billing.customer/' || $1 || '/' || $2, 0))",
            namespace,
            key,
        )

    async def lock_copy(self, namespace: str, key: str) -> None:
        """Serialise the copies of one customer sent to other services until the transaction ends."""
        await self._db.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('billing.customer-copy/' || $1 || '/' || $2, 0))",
            namespace,
            key,
        )

    async def get(self, namespace: str, key: str, *, lock: str = "") -> Customer | None:
        """The customer, deleted or not; None when there is none. ``lock`` is "" or a row lock clause:
        "FOR SHARE" keeps it from changing until the transaction ends."""
        row = await self._db.fetchrow(
            f"SELECT {_COLUMNS} FROM customers c WHERE c.namespace = $1 AND c.key = $2 {lock}",
            namespace,
            key,
        )
        return None if row is None else _customer(row)

    async def get_many(self, namespace: str, keys: Sequence[str], *, lock: str = "") -> dict[str, Customer]:
        """The customers with these keys, deleted or not, by key (unknown keys left out); ``lock`` as for
        :meth:`get` (rows locked in key order)."""
        rows = await self._db.fetch(
            f"""
            SELECT {_COLUMNS} FROM customers c WHERE c.namespace = $1 AND c.key = ANY($2::text[])
            ORDER BY c.key {lock}
            """,
            namespace,
            list(keys),
        )
        return {customer.key: customer for customer in map(_customer, rows)}

    async def list_page(
        self,
        namespace: str,
        *,
        subject_key: str,
        name_contains: str,
        include_deleted: bool,
        after_key: str | None,
        limit: int,
    ) -> list[Customer]:
        """Customers by key after ``after_key``. ``subject_key`` ("" for any) matches a current subject
        key, or any the customer ever had when deleted ones are included."""
        rows = await self._db.fetch(
            f"""
            SELECT {_COLUMNS} FROM customers c
            WHERE c.namespace = $1
              AND ($2 = '' OR EXISTS (
                    SELECT 1 FROM customer_subjects s
                    WHERE s.namespace = c.namespace AND s.customer_key = c.key AND s.subject_key = $2))
              AND ($3 = '' OR strpos(lower(c.name), lower($3)) > 0)
              AND ($4 OR c.delete_time IS NULL)
              AND ($5::text IS NULL OR c.key > $5)
            ORDER BY c.key
            LIMIT $6
            """,
            namespace,
            subject_key,
            name_contains,
            include_deleted,
            after_key,
            limit,
        )
        return [_customer(row) for row in rows]

    async def owners(self, namespace: str, subjects: Sequence[str], other_than: str) -> dict[str, str]:
        """Which of ``subjects`` belong to customers not deleted other than ``other_than``: subject ->
        customer key."""
        if not subjects:
            return {}
        rows = await self._db.fetch(
            """
            SELECT subject_key, customer_key FROM customer_subjects
            WHERE namespace = $1 AND live AND subject_key = ANY($2::text[]) AND customer_key <> $3
            ORDER BY subject_key
            """,
            namespace,
            list(subjects),
            other_than,
        )
        return {row["subject_key"]: row["customer_key"] for row in rows}

    async def save(self, namespace: str, c: Customer) -> None:
        """Insert or replace the customer and its subject keys; SubjectTaken when one belongs to another
        customer."""
        address = c.billing_address
        await self._db.execute(
            """
            INSERT INTO customers (namespace, key, name, currency, email, address_country, address_postal_code,
                                   address_state, address_city, address_line1, address_line2, metadata,
                                   create_time, update_time, delete_time)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
            ON CONFLICT (namespace, key) DO UPDATE SET
                name = excluded.name, currency = excluded.currency, email = excluded.email,
                address_country = excluded.address_country, address_postal_code = excluded.address_postal_code,
                address_state = excluded.address_state, address_city = excluded.address_city,
                address_line1 = excluded.address_line1, address_line2 = excluded.address_line2,
                metadata = excluded.metadata, update_time = excluded.update_time,
                delete_time = excluded.delete_time
            """,
            namespace,
            c.key,
            c.name,
            c.currency,
            c.email,
            None if address is None else address.country,
            "" if address is None else address.postal_code,
            "" if address is None else address.state,
            "" if address is None else address.city,
            "" if address is None else address.line1,
            "" if address is None else address.line2,
            dict(c.metadata),
            c.create_time,
            c.update_time,
            c.delete_time,
        )
        await self._db.execute(
            "DELETE FROM customer_subjects WHERE namespace = $1 AND customer_key = $2", namespace, c.key
        )
        try:
            await self._db.execute(
                """
                INSERT INTO customer_subjects (namespace, customer_key, position, subject_key, live)
                SELECT $1, $2, position::integer, subject, $4
                FROM unnest($3::text[]) WITH ORDINALITY AS given(subject, position)
                """,
                namespace,
                c.key,
                list(c.subject_keys),
                c.delete_time is None,
            )
        except asyncpg.UniqueViolationError:
            raise SubjectTaken("a subject key belongs to another customer") from None

    async def mark_deleted(self, namespace: str, key: str, at: datetime) -> None:
        """Delete the customer (softly) at ``at``, releasing its subject keys."""
        await self._db.execute(
            "UPDATE customers SET delete_time = $3, update_time = $3 WHERE namespace = $1 AND key = $2",
            namespace,
            key,
            at,
        )
        await self._db.execute(
            "UPDATE customer_subjects SET live = false WHERE namespace = $1 AND customer_key = $2",
            namespace,
            key,
        )
