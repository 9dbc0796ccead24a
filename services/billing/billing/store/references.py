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

from meterlib.stores import Executor

_ACTIVE_CREDITS: Final = """
    SELECT 'credit' AS kind, id::text AS id FROM credits
    WHERE namespace = $1 AND customer_key = $2 AND void_time IS NULL AND balance > 0
      AND (expires_at IS NULL OR expires_at > $3)
"""

# Subscriptions of any status are billed in the customer's currency.
_SUBSCRIPTIONS: Final = """
    SELECT 'subscription' AS kind, id::text AS id FROM subscriptions
    WHERE namespace = $1 AND customer_key = $2
"""

# SCHEDULED, ACTIVE or CANCELING at $3: not ended, and not cancelled before it started (ended at its
# start, so it never runs).
_RUNNING_SUBSCRIPTIONS: Final = """
    SELECT 'subscription' AS kind, id::text AS id FROM subscriptions
    WHERE namespace = $1 AND customer_key = $2
      AND (end_time IS NULL OR (end_time > $3 AND end_time > start_time))
"""

# Invoices of any status are in the customer's currency.
_INVOICES: Final = """
    SELECT 'invoice' AS kind, id::text AS id FROM invoices
    WHERE namespace = $1 AND customer_key = $2
"""

# Invoices still being billed or owed: GATHERING, DRAFT or ISSUED.
_OPEN_INVOICES: Final = """
    SELECT 'invoice' AS kind, id::text AS id FROM invoices
    WHERE namespace = $1 AND customer_key = $2 AND status IN ('gathering', 'draft', 'issued')
"""

CURRENCY_REFERRERS: Final[tuple[str, ...]] = (_ACTIVE_CREDITS, _SUBSCRIPTIONS, _INVOICES)
DELETE_REFERRERS: Final[tuple[str, ...]] = (_RUNNING_SUBSCRIPTIONS, _OPEN_INVOICES)


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
