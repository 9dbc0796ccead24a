"""Features: what a customer can be entitled to, optionally measured by an ingest meter."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

from catalog.domain.common import (
    DIMENSION_PATTERN,
    DIMENSION_RULE,
    MAX_DESCRIPTION,
    MAX_GROUP_VALUE,
    MAX_NAME,
    check_metadata,
)
from meterlib.errors import Violations
from meterlib.validation import check_key, check_text

MAX_GROUP_FILTERS: Final = 16
"""A meter has at most 16 dimensions, so a feature filters on at most that many."""


@dataclass(frozen=True)
class Feature:
    """A feature; immutable apart from archiving, its key never reused."""

    key: str
    name: str
    create_time: datetime
    description: str = ""
    meter_key: str | None = None
    """The ingest meter measuring the feature's usage; None for boolean and static features."""
    meter_group_filters: dict[str, str] = field(default_factory=dict)
    """Only usage whose meter dimensions have these values counts: ``{"model": "gpt-4"}``."""
    metadata: dict[str, str] = field(default_factory=dict)
    archive_time: datetime | None = None

    @property
    def is_metered(self) -> bool:
        """Whether usage of the feature is measured (so usage prices and metered limits can apply)."""
        return self.meter_key is not None

    @property
    def is_archived(self) -> bool:
        """Whether the feature was archived: new plan and add-on versions cannot reference it."""
        return self.archive_time is not None


@dataclass(frozen=True)
class CreateFeatureInput:
    """A feature to create."""

    key: str
    name: str = ""
    description: str = ""
    meter_key: str | None = None
    meter_group_filters: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    def validate(self, meter_dimensions: Collection[str] | None = None, *, prefix: str = "feature") -> None:
        """Raise InvalidArgument listing every rule this feature breaks.

        ``meter_dimensions`` are the group-by names of the meter ``meter_key`` names, when known: a filter
        on any other dimension could never match. Whether the meter exists at all is the caller's
        question (NOT_FOUND), as is whether the key is taken (ALREADY_EXISTS).
        """
        v = Violations()
        check_key(v, self.key, f"{prefix}.key")
        check_text(v, self.name, f"{prefix}.name", MAX_NAME)
        check_text(v, self.description, f"{prefix}.description", MAX_DESCRIPTION)
        if self.meter_key is not None:
            check_key(v, self.meter_key, f"{prefix}.meter_key")
        filters_path = f"{prefix}.meter_group_filters"
        if self.meter_group_filters and self.meter_key is None:
            v.add(filters_path, "filters need a meter: meter_key is empty")
        if len(self.meter_group_filters) > MAX_GROUP_FILTERS:
            v.add(filters_path, f"must have at most {MAX_GROUP_FILTERS} entries")
        for dimension, value in sorted(self.meter_group_filters.items()):
            where = f"{filters_path}[{dimension}]"
            if not DIMENSION_PATTERN.match(dimension):
                v.add(where, DIMENSION_RULE)
            elif meter_dimensions is not None and dimension not in meter_dimensions:
                known = ", ".join(sorted(meter_dimensions)) or "none"
                v.add(where, f"meter {self.meter_key!r} has no dimension {dimension!r} (it has: {known})")
            check_text(v, value, where, MAX_GROUP_VALUE)
        check_metadata(v, self.metadata, f"{prefix}.metadata")
        v.raise_if_any("invalid feature")

    def to_feature(self, now: datetime) -> Feature:
        """The feature this input creates at ``now``; the name defaults to the key."""
        return Feature(
            key=self.key,
            name=self.name or self.key,
            create_time=now,
            description=self.description,
            meter_key=self.meter_key,
            meter_group_filters=dict(self.meter_group_filters),
            metadata=dict(self.metadata),
        )

    def same_definition(self, feature: Feature) -> bool:
        """Whether ``feature`` is what creating this input makes (so a retry returns it)."""
        made = self.to_feature(feature.create_time)
        return replace(feature, archive_time=None) == made


def archive_feature(feature: Feature, now: datetime) -> Feature:
    """The feature archived at ``now``; an archived feature is returned unchanged (idempotent)."""
    return feature if feature.is_archived else replace(feature, archive_time=now)
