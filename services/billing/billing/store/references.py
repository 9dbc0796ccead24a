"""SQL of what refers to a customer: what keeps its currency fixed, and what keeps it from deletion.

Each kind of resource that refers to customers adds one query to the lists below when its table
arrives. A query takes ``$1`` the namespace, ``$2`` the customer key and ``$3`` the current time, and
returns ``(kind, id)`` rows of the referring resources:

* ``CURRENCY_REFERRERS``: anything billed or to bill in the customer's currency. Subscriptions and
  invoices of any status belong here (the contract: "the currency only while it has no subscription or
  invoice"); credits with something left are here too, so that no balance is stranded in a currency
  the customer is no longer billed in.
* ``DELETE_REFERRERS``: what a deleted customer would leave dangling: subscriptions SCHEDULED, ACTIVE or
  CANCELING, invoices GATHERING, DRAFT or ISSUED.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from billing.store.executor import Executor

_ACTIVE_CREDITS: Final = """
    SELECT 'credit' AS kind, id::text AS id FROM credits
    WHERE namespace = $1 AND customer_key = $2 AND void_time IS NULL AND balance > 0
      AND (expires_at IS NULL OR expires_at > $3)
"""

CURRENCY_REFERRERS: Final[tuple[str, ...]] = (_ACTIVE_CREDITS,)
DELETE_REFERRERS: Final[tuple[str, ...]] = ()


@dataclass(frozen=True)
class Referrer:
    """A resource that refers to a customer: its kind ("subscription", "invoice", "credit") and id."""

    kind: str
    id: str


class ReferenceStore:
    """Who refers to a customer, by namespace."""

    def __init__(self, db: Executor) -> None:
        self._db = db

    async def _first(
        self, queries: tuple[str, ...], namespace: str, key: str, now: datetime
    ) -> Referrer | None:
        if not queries:
            return None
        union = " UNION ALL ".join(f"({query})" for query in queries)
        # The cast gives $3 its type even when no query uses the time.
        row = await self._db.fetchrow(
            f"""
            SELECT kind, id FROM ({union}) AS referrers
            WHERE $3::timestamptz IS NOT NULL
            ORDER BY kind, id LIMIT 1
            """,
            namespace,
            key,
            now,
        )
        return None if row is None else Referrer(row["kind"], row["id"])

    async def currency_referrer(self, namespace: str, key: str, now: datetime) -> Referrer | None:
        """One resource that keeps the customer's currency fixed; None when nothing does."""
        return await self._first(CURRENCY_REFERRERS, namespace, key, now)

    async def delete_referrer(self, namespace: str, key: str, now: datetime) -> Referrer | None:
        """One resource that keeps the customer from being deleted; None when nothing does."""
        return await self._first(DELETE_REFERRERS, namespace, key, now)
