"""What validating a plan or add-on needs beyond the request: its features, and its meters' dimensions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence

from catalog.domain import MatrixPrice, RateCard, References
from catalog.meters import MeterDirectory
from catalog.store import Stores


class ReferenceResolver:
    """Looks up the features rate cards name, and asks ingest about the meters a matrix price needs."""

    def __init__(self, meters: MeterDirectory) -> None:
        self._meters = meters

    async def matrix_dimensions(
        self, namespace: str, stores: Stores, cards: Iterable[RateCard]
    ) -> dict[str, frozenset[str]]:
        """The dimensions of the meters of features priced by a matrix, by meter key.

        Only a matrix price names meter dimensions, so only then is ingest asked (before any transaction
        is opened: a feature's meter never changes). A meter ingest does not know is left out, and so
        not checked; that the feature exists is checked in the transaction.
        """
        keys = {
            card.feature_key for card in cards if isinstance(card.price, MatrixPrice) and card.feature_key
        }
        features = await stores.features.get_many(namespace, keys)
        meter_keys = sorted({f.meter_key for f in features.values() if f.meter_key is not None})
        found = await asyncio.gather(*(self._meters.dimensions(namespace, key) for key in meter_keys))
        return {key: dims for key, dims in zip(meter_keys, found, strict=True) if dims is not None}

    async def resolve(
        self,
        namespace: str,
        tx: Stores,
        cards: Iterable[RateCard],
        meter_dimensions: Mapping[str, frozenset[str]],
        *,
        plan_keys: Sequence[str] | None = None,
    ) -> References:
        """The references of ``cards`` inside a transaction: their features are locked (FOR SHARE) until it
        ends, so none of them can be archived between this check and the commit. ``plan_keys`` are the
        compatible plans of an add-on, checked for existence; None checks none."""
        keys = {card.feature_key for card in cards if card.feature_key}
        features = await tx.features.get_many(namespace, keys, for_share=True)
        known_plans = None if plan_keys is None else await tx.plans.existing_keys(namespace, plan_keys)
        return References(features=features, meter_dimensions=meter_dimensions, plan_keys=known_plans)
