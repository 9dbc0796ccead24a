"""What the billing service needs from other services, as the service layer sees it (no gRPC here; the
adapters are ``billing.entitlements`` and, later, its siblings)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class CopyConflict(Exception):
    """The entitlements service has ``subject_key`` under another customer, ``owner``, in its copy."""

    def __init__(self, subject_key: str, owner: str) -> None:
        super().__init__(f"subject key {subject_key!r} belongs to customer {owner!r} in the copy")
        self.subject_key = subject_key
        self.owner = owner


class CustomerCopies(Protocol):
    """The copy of each customer (key and subject keys) that the entitlements service checks by.

    Both calls are idempotent: sending the same state again changes nothing. They raise
    ``meterlib.errors.Unavailable`` when the entitlements service cannot be reached.
    """

    async def upsert_customer(self, namespace: str, key: str, subject_keys: Sequence[str]) -> None:
        """Create or replace the copy; CopyConflict when a subject key is another customer's there."""
        ...

    async def delete_customer(self, namespace: str, key: str) -> None:
        """Delete the copy (and, in entitlements, the customer's entitlements); an unknown one is fine."""
        ...
