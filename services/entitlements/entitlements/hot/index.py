"""What a replica knows of the definitions, in memory: who a subject is, which entitlement a
(customer, feature) check is about, and which metered entitlements a usage delta feeds. No I/O.

Kept in step with Postgres by the definitions the service loads at start and the change notices it
reads afterwards (see docs/entitlements.md).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class EntitlementKind(StrEnum):
    """The kinds of entitlement."""

    BOOLEAN = "boolean"
    STATIC = "static"
    METERED = "metered"


@dataclass(frozen=True)
class HotEntitlement:
    """What a Check and the usage consumer need of one (not deleted) entitlement."""

    id: str
    namespace: str
    customer_key: str
    feature_key: str
    kind: EntitlementKind
    active_from: datetime
    active_to: datetime | None = None
    static_config: str = ""
    meter_key: str = ""
    meter_group_filters: dict[str, str] = field(default_factory=dict)

    def active_at(self, at: datetime) -> bool:
        """Whether it grants anything at ``at``."""
        return self.active_from <= at and (self.active_to is None or at < self.active_to)

    def counts(self, meter: str, group_values: dict[str, str]) -> bool:
        """Whether a delta of ``meter`` with these group values is usage of this entitlement."""
        return (
            self.kind is EntitlementKind.METERED
            and meter == self.meter_key
            and all(group_values.get(name) == value for name, value in self.meter_group_filters.items())
        )


class DefinitionIndex:
    """Customers and entitlements of every namespace, indexed for checks and for usage deltas."""

    def __init__(self) -> None:
        self._customer_of_subject: dict[tuple[str, str], str] = {}
        self._subjects: dict[tuple[str, str], tuple[str, ...]] = {}
        self._by_feature: dict[tuple[str, str, str], HotEntitlement] = {}
        self._by_id: dict[str, HotEntitlement] = {}
        self._metered: dict[tuple[str, str, str], list[HotEntitlement]] = defaultdict(list)

    def put_customer(self, namespace: str, key: str, subject_keys: tuple[str, ...]) -> None:
        """Add or replace a customer and its subject keys."""
        self.remove_customer(namespace, key, keep_entitlements=True)
        self._subjects[(namespace, key)] = subject_keys
        for subject in subject_keys:
            self._customer_of_subject[(namespace, subject)] = key

    def remove_customer(self, namespace: str, key: str, *, keep_entitlements: bool = False) -> None:
        """Forget a customer (and, unless told otherwise, its entitlements)."""
        for subject in self._subjects.pop((namespace, key), ()):
            if self._customer_of_subject.get((namespace, subject)) == key:
                del self._customer_of_subject[(namespace, subject)]
        if not keep_entitlements:
            for entitlement in [
                e for e in self._by_id.values() if (e.namespace, e.customer_key) == (namespace, key)
            ]:
                self.remove_entitlement(entitlement.id)

    def customer(self, namespace: str, *, customer_key: str = "", subject_key: str = "") -> str | None:
        """The customer a check names, by key or by one of its subject keys; None when unknown."""
        if customer_key:
            return customer_key if (namespace, customer_key) in self._subjects else None
        return self._customer_of_subject.get((namespace, subject_key))

    def subject_keys(self, namespace: str, customer_key: str) -> tuple[str, ...]:
        """The customer's subject keys."""
        return self._subjects.get((namespace, customer_key), ())

    def put_entitlement(self, entitlement: HotEntitlement) -> None:
        """Add or replace an entitlement (the active one of its customer and feature)."""
        self.remove_entitlement(entitlement.id)
        previous = self._by_feature.get(_feature_key(entitlement))
        if previous is not None:
            self.remove_entitlement(previous.id)
        self._by_id[entitlement.id] = entitlement
        self._by_feature[_feature_key(entitlement)] = entitlement
        if entitlement.kind is EntitlementKind.METERED:
            self._metered[_meter_key(entitlement)].append(entitlement)

    def remove_entitlement(self, entitlement_id: str) -> None:
        """Forget an entitlement (deleted or overridden)."""
        entitlement = self._by_id.pop(entitlement_id, None)
        if entitlement is None:
            return
        if self._by_feature.get(_feature_key(entitlement)) == entitlement:
            del self._by_feature[_feature_key(entitlement)]
        if entitlement.kind is EntitlementKind.METERED:
            metered = self._metered[_meter_key(entitlement)]
            metered[:] = [e for e in metered if e.id != entitlement_id]
            if not metered:
                del self._metered[_meter_key(entitlement)]

    def entitlement(self, namespace: str, customer_key: str, feature_key: str) -> HotEntitlement | None:
        """The customer's entitlement to the feature."""
        return self._by_feature.get((namespace, customer_key, feature_key))

    def by_id(self, entitlement_id: str) -> HotEntitlement | None:
        """An entitlement by id."""
        return self._by_id.get(entitlement_id)

    def fed_by(
        self, namespace: str, subject: str, meter: str, group_values: dict[str, str]
    ) -> list[HotEntitlement]:
        """The metered entitlements a usage delta of ``subject`` on ``meter`` counts for."""
        customer = self._customer_of_subject.get((namespace, subject))
        if customer is None:
            return []
        return [
            e for e in self._metered.get((namespace, customer, meter), ()) if e.counts(meter, group_values)
        ]

    def metered(self) -> list[HotEntitlement]:
        """Every metered entitlement known."""
        return [e for e in self._by_id.values() if e.kind is EntitlementKind.METERED]


def _feature_key(entitlement: HotEntitlement) -> tuple[str, str, str]:
    return (entitlement.namespace, entitlement.customer_key, entitlement.feature_key)


def _meter_key(entitlement: HotEntitlement) -> tuple[str, str, str]:
    return (entitlement.namespace, entitlement.customer_key, entitlement.meter_key)
