"""What applying a catalog document does: the state it is judged against, the diff, and the writes.

A :class:`CatalogDiff` is computed once, purely (``diff_catalog``), and serves both a dry run (its
``changes`` are the answer) and a real apply (its ``steps`` are the writes, in an order that satisfies
every reference: features are created before the versions that use them, plans before the add-ons that
name them, and features are archived last, after the versions that used them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TypeAlias

from catalog.domain import (
    AddOn,
    ArchiveVersionInput,
    CreateAddOnInput,
    CreateFeatureInput,
    CreatePlanInput,
    Feature,
    Plan,
    PublishVersionInput,
    References,
    VersionStatus,
    status_of,
)

Version: TypeAlias = Plan | AddOn
"""A plan or add-on version."""
Content: TypeAlias = CreatePlanInput | CreateAddOnInput
"""The content of a plan or add-on version, as the document gives it."""


def latest_published(versions: Sequence[Version]) -> Version | None:
    """The highest-numbered version that is, was or will be effective (a version withdrawn before it
    started, like an abandoned draft, does not count)."""
    effective = [
        v
        for v in versions
        if v.effective_from is not None and (v.effective_to is None or v.effective_to > v.effective_from)
    ]
    return max(effective, key=lambda v: v.version, default=None)


def current_draft(versions: Sequence[Version], now: datetime) -> Version | None:
    """The key's DRAFT at ``now``, if it has one (at most one at a time)."""
    return next((v for v in versions if status_of(v, now) is VersionStatus.DRAFT), None)


class ResourceType(StrEnum):
    """The kind of catalog resource a change is about (``CatalogResourceType``)."""

    FEATURE = "feature"
    PLAN = "plan"
    ADD_ON = "add_on"


class ChangeAction(StrEnum):
    """What applying a document does to one resource (``CatalogChangeAction``)."""

    UNCHANGED = "unchanged"
    CREATE = "create"
    UPDATE_DRAFT = "update_draft"
    NEW_VERSION = "new_version"
    PUBLISH = "publish"
    ARCHIVE = "archive"


@dataclass(frozen=True)
class CatalogState:
    """What the namespace holds, as ``diff_catalog`` and ``export_catalog`` need it.

    ``features``: every feature, archived ones included. ``plans`` and ``add_ons``: every version of every
    key (a store may leave out versions that are archived, unless one is the key's highest version or its
    latest published one). ``meter_dimensions``: the group-by names of at least every meter the document's
    features and the stored features its rate cards use name. ``unknown_meters``: meters the document's
    features name that ingest does not have (a new feature may not name one).
    """

    features: Mapping[str, Feature] = field(default_factory=dict)
    plans: Mapping[str, Sequence[Plan]] = field(default_factory=dict)
    add_ons: Mapping[str, Sequence[AddOn]] = field(default_factory=dict)
    meter_dimensions: Mapping[str, frozenset[str]] = field(default_factory=dict)
    unknown_meters: frozenset[str] = frozenset()

    def references(self) -> References:
        """What validating the document's content needs of the namespace."""
        return References(dict(self.features), self.meter_dimensions, frozenset(self.plans))


@dataclass(frozen=True)
class CreateFeature:
    """Insert ``feature``, made from ``input`` (action CREATE)."""

    input: CreateFeatureInput
    feature: Feature


@dataclass(frozen=True)
class ArchiveFeature:
    """Replace the stored feature with ``feature``, archived (action ARCHIVE, with prune)."""

    feature: Feature


@dataclass(frozen=True)
class CreateVersion:
    """Insert ``version``, a DRAFT made from ``content``: version 1 (CREATE) or the key's highest + 1
    (NEW_VERSION)."""

    content: Content
    version: Version


@dataclass(frozen=True)
class UpdateDraft:
    """Replace the stored DRAFT of the same key and number with ``version``, which has ``content``."""

    content: Content
    version: Version


@dataclass(frozen=True)
class PublishVersion:
    """Publish as ``input`` says; ``versions`` are the rows that change: the published version first, then
    any version its publication ends (``effective_to`` set to the new ``effective_from``)."""

    input: PublishVersionInput
    versions: tuple[Version, ...]


@dataclass(frozen=True)
class ArchiveVersion:
    """Archive as ``input`` says (with prune); ``version`` is the row after it (a DRAFT abandoned now, a
    published version ending now)."""

    input: ArchiveVersionInput
    version: Version


Step: TypeAlias = (
    CreateFeature | ArchiveFeature | CreateVersion | UpdateDraft | PublishVersion | ArchiveVersion
)
"""One write of an apply."""


@dataclass(frozen=True)
class CatalogChange:
    """One entry of the diff (``CatalogChange``), with the writes that make it."""

    resource_type: ResourceType
    key: str
    version: int
    """The resulting version of a plan or add-on (the highest archived one for ARCHIVE); 0 for features."""
    actions: tuple[ChangeAction, ...]
    changed_fields: tuple[str, ...] = ()
    """Paths of the fields that differ from the stored version (``phases[1].rate_cards[0].price``)."""
    steps: tuple[Step, ...] = ()

    @property
    def unchanged(self) -> bool:
        """Whether nothing is written for this resource."""
        return self.actions == (ChangeAction.UNCHANGED,)


@dataclass(frozen=True)
class CatalogDiff:
    """The changes of an apply: features first, then plans, then add-ons, each by key."""

    changes: tuple[CatalogChange, ...] = ()

    @property
    def unchanged(self) -> bool:
        """Whether applying writes nothing (the document matches the catalog)."""
        return all(change.unchanged for change in self.changes)

    @property
    def steps(self) -> tuple[Step, ...]:
        """Every write, in execution order: features created; versions created, updated and published
        (plans, then add-ons); versions archived; features archived."""
        steps = [step for change in self.changes for step in change.steps]
        created = [s for s in steps if isinstance(s, CreateFeature)]
        versions = [s for s in steps if isinstance(s, CreateVersion | UpdateDraft | PublishVersion)]
        archived = [s for s in steps if isinstance(s, ArchiveVersion)]
        retired = [s for s in steps if isinstance(s, ArchiveFeature)]
        return (*created, *versions, *archived, *retired)
