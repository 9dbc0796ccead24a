"""The lifecycle every versioned resource (plans, add-ons) shares: read, list, publish, archive, new
drafts. The rules are the domain's (``catalog.domain.status``); this module loads the versions of one
key, applies them inside one transaction, and writes back what changed.

Lifecycle changes of one key are serialized by locking all its version rows (FOR UPDATE): two
publications, or a publication and a new draft, never interleave.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Generic, TypeVar

from catalog.domain import (
    AddOn,
    ArchiveVersionInput,
    NewDraftVersionInput,
    Plan,
    PublishVersionInput,
    RateCard,
    References,
    VersionStatus,
    archive_in_timeline,
    new_draft_version,
    publish_version,
    status_of,
    version_as_of,
)
from catalog.service.references import ReferenceResolver
from catalog.store import (
    CatalogStore,
    RecordedRequest,
    Stores,
    VersionFilter,
    VersionRef,
    VersionStore,
    reused,
)
from meterlib.clock import Clock
from meterlib.errors import AlreadyExists, NotFound, Violations
from meterlib.logs import get_logger
from meterlib.validation import check_key

V = TypeVar("V", Plan, AddOn)

log = get_logger("catalog.versions")

_STATUS_NAMES = "VERSION_STATUS_DRAFT, _SCHEDULED, _ACTIVE or _ARCHIVED"


@dataclass(frozen=True)
class GetVersionInput:
    """A GetPlan or GetAddOn request: one exact version, the version effective at ``as_of``, or (neither)
    the version effective now."""

    key: str
    version: int | None = None
    as_of: datetime | None = None

    def validate(self) -> None:
        """Raise InvalidArgument listing every malformed field."""
        v = Violations()
        check_key(v, self.key, "key")
        v.check(self.version is None or self.version >= 1, "version", "must be 1 or more")
        v.raise_if_any("invalid request")


@dataclass(frozen=True)
class ListVersionsInput:
    """The filters of a ListPlans or ListAddOns request. A status that is None is one the wire carried
    but that names no status (UNSPECIFIED or an unknown number)."""

    keys: tuple[str, ...] = ()
    statuses: tuple[VersionStatus | None, ...] = ()
    currency: str = ""
    compatible_plan_key: str = ""
    latest_only: bool = False

    def validate(self) -> None:
        """Raise InvalidArgument naming every status filter value that is no status."""
        v = Violations()
        for index, status in enumerate(self.statuses):
            v.check(status is not None, f"statuses[{index}]", f"must be {_STATUS_NAMES}")
        v.raise_if_any("invalid filter")

    def selection(self) -> VersionFilter:
        """The store's filter (call after validate())."""
        return VersionFilter(
            keys=self.keys,
            statuses=[s for s in self.statuses if s is not None],
            latest_only=self.latest_only,
            currency=self.currency,
            compatible_plan_key=self.compatible_plan_key,
        )


class VersionService(ABC, Generic[V]):
    """Read, list, publish, archive and copy the versions of one kind."""

    RESOURCE_TYPE: ClassVar[str]
    """The ResourceInfo type of NOT_FOUND errors and the prefix of log events: ``plan`` or ``add_on``."""
    NOUN: ClassVar[str]
    """What messages call it: ``plan`` or ``add-on``."""
    NEW_DRAFT_METHOD: ClassVar[str]
    """The RPC whose request ids this kind records."""

    def __init__(self, store: CatalogStore, references: ReferenceResolver, clock: Clock) -> None:
        self._store = store
        self._references = references
        self._clock = clock

    # --- what differs between plans and add-ons ------------------------------------------------------------

    @abstractmethod
    def _table(self, stores: Stores) -> VersionStore[V]: ...

    @abstractmethod
    def _rate_cards(self, version: V) -> list[RateCard]: ...

    @abstractmethod
    def _validate_stored(self, version: V, refs: References) -> None:
        """Validate a stored DRAFT in full before it is published."""
        ...

    # --- shared --------------------------------------------------------------------------------------

    def _not_found(self, key: str, number: int | None = None, detail: str = "") -> NotFound:
        if number is None:
            return NotFound(
                f"{self.NOUN} {key!r} not found{detail}", resource_type=self.RESOURCE_TYPE, resource_name=key
            )
        return NotFound(
            f"{self.NOUN} {key!r} has no version {number}",
            resource_type=self.RESOURCE_TYPE,
            resource_name=f"{key}@{number}",
        )

    async def get(self, namespace: str, request: GetVersionInput) -> V:
        """One version: the exact one asked for (any status), or the one effective at ``as_of`` (default
        now)."""
        request.validate()
        table = self._table(self._store)
        if request.version is not None:
            found = await table.get(namespace, request.key, request.version)
            if found is None:
                raise self._not_found(request.key, request.version)
            return found
        at = request.as_of or self._clock.now()
        effective = version_as_of(await table.effective_at(namespace, request.key, at), at)
        if effective is not None:
            return effective
        if await table.exists(namespace, request.key):
            raise self._not_found(request.key, detail=f": no version is effective at {at.isoformat()}")
        raise self._not_found(request.key)

    async def list_versions(
        self, namespace: str, request: ListVersionsInput, *, after: VersionRef | None, limit: int
    ) -> list[V]:
        """Versions by key, then version descending; one more than ``limit`` tells the caller a next page
        exists. Statuses are judged at the clock's now."""
        request.validate()
        return await self._table(self._store).list_page(
            namespace, request.selection(), now=self._clock.now(), after=after, limit=limit
        )

    async def _create_first(
        self,
        namespace: str,
        key: str,
        validated: Callable[[Stores], Awaitable[V]],
        same_definition: Callable[[V], bool],
    ) -> V:
        """Insert version 1, as ``validated(tx)`` makes it in the transaction that inserts it (its
        features stay locked until then). When version 1 exists as a DRAFT for which ``same_definition``
        holds, return it (a retried create); ALREADY_EXISTS otherwise."""
        try:
            async with self._store.transaction() as tx:
                version = await validated(tx)
                await self._table(tx).insert(namespace, version)
        except AlreadyExists:
            existing = await self._table(self._store).get(namespace, key, 1)
            now = self._clock.now()
            if (
                existing is not None
                and status_of(existing, now) is VersionStatus.DRAFT
                and same_definition(existing)
            ):
                return existing
            raise AlreadyExists(
                f"{self.NOUN} {key!r} already exists: change it with UpdateDraft or a new version",
                reason="ERROR_REASON_KEY_CONFLICT",
            ) from None
        log.info(f"{self.RESOURCE_TYPE}.created", key=version.key, version=version.version)
        return version

    async def publish(self, namespace: str, request: PublishVersionInput) -> V:
        """Publish a DRAFT from ``effective_from`` (default now), ending the version effective then;
        publishing a published version again with the same or no ``effective_from`` returns it."""
        request.validate()
        async with self._store.transaction() as tx:
            table = self._table(tx)
            versions = await table.all_versions(namespace, request.key, for_update=True)
            if not versions:
                raise self._not_found(request.key)
            target = _find(versions, request.version)
            if target is None:
                raise self._not_found(request.key, request.version)
            now = self._clock.now()
            if status_of(target, now) is VersionStatus.DRAFT:
                # Features may have been archived since the draft was written. Meter dimensions were
                # checked then, and meters only ever gain dimensions.
                refs = await self._references.resolve(namespace, tx, self._rate_cards(target), {})
                self._validate_stored(target, refs)
            updated = publish_version(
                versions, request.version, now, request.effective_from, request.effective_to
            )
            for before, after in zip(versions, updated, strict=True):
                if after != before:
                    await table.save(namespace, after)
        published = _find(updated, request.version)
        assert published is not None
        if published != target:
            log.info(
                f"{self.RESOURCE_TYPE}.published",
                key=published.key,
                version=published.version,
                effective_from=published.effective_from,
                effective_to=published.effective_to,
            )
        return published

    async def archive(self, namespace: str, request: ArchiveVersionInput) -> V:
        """Abandon a DRAFT at once, or end a published version at ``effective_to`` (default now);
        archiving an archived version returns it."""
        request.validate()
        async with self._store.transaction() as tx:
            table = self._table(tx)
            versions = await table.all_versions(namespace, request.key, for_update=True)
            target = _find(versions, request.version)
            if target is None:
                raise self._not_found(request.key, request.version)
            changed = archive_in_timeline(versions, target, self._clock.now(), request.effective_to)
            for version in changed:
                await table.save(namespace, version)
            archived = changed[0] if changed else target
        if archived != target:
            log.info(
                f"{self.RESOURCE_TYPE}.archived",
                key=archived.key,
                version=archived.version,
                effective_to=archived.effective_to,
            )
        return archived

    async def new_draft(self, namespace: str, request: NewDraftVersionInput) -> V:
        """A new DRAFT (highest version + 1) copying ``source_version`` (0: the latest published one).
        Idempotent by ``request_id``: a retry returns the version the first call made."""
        request.validate()
        fingerprint = f"{request.key}@{request.source_version}"
        async with self._store.transaction() as tx:
            table = self._table(tx)
            versions = await table.all_versions(namespace, request.key, for_update=True)
            # Read after the lock: a concurrent first call with this request id on this key has committed.
            seen = await tx.request_ids.get(namespace, request.request_id)
            if seen is not None:
                if (seen.method, seen.fingerprint) != (self.NEW_DRAFT_METHOD, fingerprint):
                    raise reused(request.request_id)
                made = _find(versions, seen.version)
                assert made is not None  # versions are never deleted
                return made
            if not versions:
                raise self._not_found(request.key)
            if request.source_version and _find(versions, request.source_version) is None:
                raise self._not_found(request.key, request.source_version)
            now = self._clock.now()
            draft = new_draft_version(versions, request.source_version, now)
            await table.insert(namespace, draft)
            await tx.request_ids.insert(
                namespace,
                request.request_id,
                RecordedRequest(self.NEW_DRAFT_METHOD, fingerprint, draft.key, draft.version),
                now,
            )
        log.info(f"{self.RESOURCE_TYPE}.draft_created", key=draft.key, version=draft.version)
        return draft


def _find(versions: Sequence[V], number: int) -> V | None:
    return next((v for v in versions if v.version == number), None)
