"""Rules of entitlements' own that several of its resources share: burn-down priorities and references to
entitlements. Keys, ids, request ids and labels follow the rules every service shares
(``meterlib.validation``); requests are told apart by ``meterlib.idempotency.fingerprint``.

Field paths name proto fields exactly as ``metering.entitlements.v1`` spells them, with indices for
repeated fields and ``[key]`` for map entries: ``customer.subject_keys[3]``, ``grant.metadata[team]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from meterlib.errors import Violations
from meterlib.validation import check_id, check_key

MAX_PRIORITY: Final = 255
DEFAULT_PRIORITY: Final = 1


def check_priority(v: Violations, priority: int, path: str) -> None:
    """A burn-down priority on the wire: 0 (the default of 1) to 255."""
    if not 0 <= priority <= MAX_PRIORITY:
        v.add(path, f"must be 0 (the default of {DEFAULT_PRIORITY}) to {MAX_PRIORITY}")


@dataclass(frozen=True)
class EntitlementRef:
    """An entitlement named by id (deleted ones included) or by (customer, feature) for the active one."""

    entitlement_id: str = ""
    customer_key: str = ""
    feature_key: str = ""
    by_id: bool = False
    given: bool = True
    """False when the request left the reference unset."""

    @classmethod
    def of_id(cls, entitlement_id: str) -> EntitlementRef:
        """A reference by id."""
        return cls(entitlement_id=entitlement_id, by_id=True)

    @classmethod
    def of_pair(cls, customer_key: str, feature_key: str) -> EntitlementRef:
        """A reference to the active entitlement of a customer to a feature."""
        return cls(customer_key=customer_key, feature_key=feature_key)

    @classmethod
    def missing(cls) -> EntitlementRef:
        """No reference given."""
        return cls(given=False)

    def check(self, v: Violations, path: str) -> None:
        """Record what is wrong with the reference at ``path`` (e.g. ``entitlement``)."""
        if not self.given:
            v.add(path, "is required: an entitlement_id or a customer_feature")
        elif self.by_id:
            check_id(v, self.entitlement_id, f"{path}.entitlement_id")
        else:
            check_key(v, self.customer_key, f"{path}.customer_feature.customer_key")
            check_key(v, self.feature_key, f"{path}.customer_feature.feature_key")

    def describe(self) -> str:
        """The reference in words, for messages."""
        if self.by_id:
            return f"entitlement {self.entitlement_id!r}"
        return f"the active entitlement of customer {self.customer_key!r} to feature {self.feature_key!r}"
