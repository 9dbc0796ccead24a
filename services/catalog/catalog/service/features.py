"""Features: create (its meter asked of ingest), read, list, archive (refused while in use)."""

from __future__ import annotations

from collections.abc import Sequence

from catalog.domain import CreateFeatureInput, Feature
from catalog.meters import MeterDirectory
from catalog.store import CatalogStore, VersionRef
from meterlib.clock import Clock
from meterlib.errors import AlreadyExists, FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from meterlib.logs import get_logger
from meterlib.validation import KEY_PATTERN

log = get_logger("catalog.features")

_REFERRERS_SHOWN = 5


def _not_found(key: str) -> NotFound:
    return NotFound(f"feature {key!r} not found", resource_type="feature", resource_name=key)


def _conflict(key: str) -> AlreadyExists:
    return AlreadyExists(
        f"feature {key!r} already exists with another definition", reason="ERROR_REASON_KEY_CONFLICT"
    )


def _require_key(key: str) -> None:
    if not key:
        raise InvalidArgument.fields([FieldViolation("key", "is required")])


class FeatureService:
    """Create, read, list and archive features."""

    def __init__(self, store: CatalogStore, meters: MeterDirectory, clock: Clock) -> None:
        self._store = store
        self._meters = meters
        self._clock = clock

    async def create(self, namespace: str, new: CreateFeatureInput) -> Feature:
        """Create a feature; an identical existing one is returned (a retry is harmless, and needs no
        answer from ingest). The meter must exist in ingest, and filters must name its dimensions."""
        existing = await self._store.features.get(namespace, new.key) if new.key else None
        if existing is not None and new.same_definition(existing):
            return existing
        dimensions = None
        if new.meter_key is not None and KEY_PATTERN.match(new.meter_key):
            dimensions = await self._meters.dimensions(namespace, new.meter_key)
        new.validate(dimensions)
        if new.meter_key is not None and dimensions is None:
            raise NotFound(
                f"meter {new.meter_key!r} not found in the ingest service",
                resource_type="meter",
                resource_name=new.meter_key,
            )
        if existing is not None:
            raise _conflict(new.key)
        feature = new.to_feature(self._clock.now())
        try:
            await self._store.features.insert(namespace, feature)
        except AlreadyExists:
            # A concurrent create of the same key won: identical is success, anything else a conflict.
            found = await self._store.features.get(namespace, new.key)
            if found is not None and new.same_definition(found):
                return found
            raise
        log.info("feature.created", feature=feature.key, meter=feature.meter_key)
        return feature

    async def get(self, namespace: str, key: str) -> Feature:
        """The feature, archived or not."""
        _require_key(key)
        feature = await self._store.features.get(namespace, key)
        if feature is None:
            raise _not_found(key)
        return feature

    async def list_features(
        self,
        namespace: str,
        *,
        meter_keys: Sequence[str],
        include_archived: bool,
        after_key: str | None,
        limit: int,
    ) -> list[Feature]:
        """Features by key; one more than ``limit`` tells the caller a next page exists."""
        return await self._store.features.list_page(
            namespace,
            meter_keys=meter_keys,
            include_archived=include_archived,
            after_key=after_key,
            limit=limit,
        )

    async def archive(self, namespace: str, key: str) -> Feature:
        """Archive a feature no DRAFT, SCHEDULED or ACTIVE plan or add-on version references; archiving an
        archived feature returns it unchanged."""
        _require_key(key)
        now = self._clock.now()
        async with self._store.transaction() as tx:
            # The row lock makes a concurrent plan write that references the feature (it holds the row
            # FOR SHARE) either finish first, and be seen below, or wait and then see it archived.
            feature = await tx.features.get(namespace, key, for_update=True)
            if feature is None:
                raise _not_found(key)
            if feature.is_archived:
                return feature
            plans = await tx.plans.referencing(namespace, key, now, _REFERRERS_SHOWN)
            add_ons = await tx.add_ons.referencing(namespace, key, now, _REFERRERS_SHOWN)
            if plans or add_ons:
                raise _in_use(key, plans, add_ons)
            archived = await tx.features.archive(namespace, key, now)
        assert archived is not None  # the row is locked
        log.info("feature.archived", feature=key)
        return archived


def _in_use(key: str, plans: list[VersionRef], add_ons: list[VersionRef]) -> FailedPrecondition:
    users = [("plan", ref) for ref in plans] + [("add_on", ref) for ref in add_ons]
    names = ", ".join(f"{kind.replace('_', '-')} {ref.key!r} version {ref.version}" for kind, ref in users)
    kind, first = users[0]
    return FailedPrecondition(
        f"feature {key!r} is used by {names}: archive those versions first",
        reason="ERROR_REASON_IN_USE",
        metadata={"resource_type": kind, "resource_key": first.key, "version": str(first.version)},
    )
