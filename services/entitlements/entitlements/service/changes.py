"""Definition changes, announced after they are committed, so that hot copies reload what changed."""

from __future__ import annotations

from typing import Protocol


class DefinitionChanges(Protocol):
    """Told after a commit changed a customer copy or an entitlement (its config, grants or resets)."""

    async def customer_changed(self, namespace: str, customer_key: str) -> None:
        """The customer copy (its subject keys) changed or was deleted."""
        ...

    async def entitlement_changed(self, namespace: str, entitlement_id: str) -> None:
        """The entitlement was created or deleted, or its grants or resets changed."""
        ...


class NoChanges:
    """Nobody listens (until the hot path publishes definition changes on its feed)."""

    async def customer_changed(self, namespace: str, customer_key: str) -> None:
        """Ignored."""

    async def entitlement_changed(self, namespace: str, entitlement_id: str) -> None:
        """Ignored."""
