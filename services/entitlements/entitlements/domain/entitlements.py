"""Entitlements: boolean, static (a JSON configuration) and metered (a usage period and grants).

A metered entitlement copies its feature's meter key and group filters from catalog when it is made, so
that its usage never depends on catalog again. Defaults the proto leaves to the server: ``active_from``
unset is the creation time, ``measure_usage_from`` unset is ``active_from``, the usage period's anchor
unset is the creation time, ``issue_after_reset_priority`` 0 is 1.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from entitlements.burndown import MeteredEntitlement, UsagePeriod, UsageReset, UsageSchedule
from entitlements.domain.common import DEFAULT_PRIORITY, check_priority
from meterlib.errors import FailedPrecondition, FieldViolation, NotFound
from meterlib.periods import Cadence, Period
from meterlib.validation import Collector, check_key, check_metadata, check_request_id

MAX_STATIC_CONFIG_BYTES: Final = 16 * 1024


@dataclass(frozen=True)
class Feature:
    """What an entitlement copies of a catalog feature."""

    key: str
    meter_key: str = ""
    """Empty for a feature without usage."""
    meter_group_filters: Mapping[str, str] = field(default_factory=dict)
    archived: bool = False


class EntitlementType(StrEnum):
    """The kind of an entitlement (the proto's EntitlementType without prefix, lower case)."""

    BOOLEAN = "boolean"
    STATIC = "static"
    METERED = "metered"


@dataclass(frozen=True)
class MeteredConfig:
    """A metered entitlement's usage period, recurring grant, limits and the feature's meter."""

    usage_period: Cadence
    anchor: datetime
    measure_usage_from: datetime
    meter_key: str
    meter_group_filters: Mapping[str, str] = field(default_factory=dict)
    issue_after_reset: Decimal | None = None
    issue_after_reset_priority: int = DEFAULT_PRIORITY
    is_soft_limit: bool = False
    preserve_overage_at_reset: bool = False


@dataclass(frozen=True)
class Reset:
    """A manual usage reset (ResetUsage) of a metered entitlement."""

    at: datetime
    retain_anchor: bool = False
    preserve_overage: bool | None = None
    """None: the entitlement's ``preserve_overage_at_reset``."""
    create_time: datetime | None = None

    def engine(self) -> UsageReset:
        """The burn-down engine's view."""
        return UsageReset(self.at, self.retain_anchor, self.preserve_overage)


@dataclass(frozen=True)
class Entitlement:
    """An entitlement of a customer to a feature.

    ``current_usage_period`` and ``last_reset_time`` are views at the time of a response (see
    :meth:`viewed_at`), not stored.
    """

    id: str
    customer_key: str
    feature_key: str
    type: EntitlementType
    active_from: datetime
    create_time: datetime
    static_config: str | None = None
    """The JSON text as given; static entitlements only."""
    metered: MeteredConfig | None = None
    active_to: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    delete_time: datetime | None = None
    current_usage_period: Period | None = None
    last_reset_time: datetime | None = None

    @property
    def is_deleted(self) -> bool:
        """Whether it was deleted or overridden."""
        return self.delete_time is not None

    def engine(self, resets: Sequence[Reset] = ()) -> MeteredEntitlement:
        """The burn-down engine's view of a metered entitlement with its manual resets (in time order)."""
        config = self.metered
        if config is None:
            raise ValueError(f"entitlement {self.id} is not metered")
        return MeteredEntitlement(
            usage_period=UsagePeriod(config.usage_period, config.anchor),
            measure_usage_from=config.measure_usage_from,
            issue_after_reset=config.issue_after_reset,
            issue_after_reset_priority=config.issue_after_reset_priority,
            is_soft_limit=config.is_soft_limit,
            preserve_overage_at_reset=config.preserve_overage_at_reset,
            resets=tuple(r.engine() for r in resets),
        )

    def schedule(self, resets: Sequence[Reset] = ()) -> UsageSchedule:
        """The usage periods of a metered entitlement."""
        return UsageSchedule(self.engine(resets))

    def viewed_at(self, resets: Sequence[Reset], now: datetime) -> Entitlement:
        """With ``current_usage_period`` and ``last_reset_time`` as of ``now`` (metered, not deleted).

        The last reset is the start of the usage period containing ``now`` when that is a boundary after
        usage started to be measured; before the first such boundary there is none.
        """
        if self.metered is None or self.is_deleted:
            return replace(self, current_usage_period=None, last_reset_time=None)
        period = self.schedule(resets).period_containing(now)
        reset = period.start if self.metered.measure_usage_from < period.start <= now else None
        return replace(self, current_usage_period=period, last_reset_time=reset)


def check_feature(feature: Feature | None, key: str, kind: EntitlementType) -> Feature:
    """The feature an entitlement of ``kind`` may be made on: it exists, is not archived and, for a
    metered entitlement, has a meter."""
    if feature is None:
        raise NotFound(
            f"feature {key!r} not found in the catalog", resource_type="feature", resource_name=key
        )
    if feature.archived:
        raise FailedPrecondition(
            f"feature {key!r} is archived: no new entitlements to it",
            reason="ERROR_REASON_ARCHIVED",
            metadata={"feature_key": key},
        )
    if kind is EntitlementType.METERED and not feature.meter_key:
        raise FailedPrecondition(
            f"feature {key!r} has no meter: a metered entitlement needs one (use boolean or static)",
            reason="ERROR_REASON_FEATURE_NOT_METERED",
            metadata={"fields": "entitlement.feature_key", "feature_key": key},
        )
    return feature


ADDITIVE_AGGREGATIONS = frozenset({"SUM", "COUNT"})
"""What a metered entitlement's meter may aggregate with: the burn-down adds usage up segment by segment,
which only a sum or a count allows (a maximum or an average of parts is not the whole's)."""


def check_meter(feature: Feature, aggregation: str | None) -> None:
    """A metered entitlement's meter exists in ingest and aggregates additively."""
    where = {"fields": "entitlement.feature_key", "feature_key": feature.key, "meter_key": feature.meter_key}
    if aggregation is None:
        raise FailedPrecondition(
            f"meter {feature.meter_key!r} of feature {feature.key!r} is not known to the ingest service",
            reason="ERROR_REASON_FEATURE_NOT_METERED",
            metadata=where,
        )
    if aggregation not in ADDITIVE_AGGREGATIONS:
        raise FailedPrecondition(
            f"meter {feature.meter_key!r} of feature {feature.key!r} aggregates with {aggregation}; a metered"
            " entitlement needs a SUM or COUNT meter (use boolean or static)",
            reason="ERROR_REASON_FEATURE_NOT_METERED",
            metadata={**where, "aggregation": aggregation},
        )


def _not_json(name: str) -> None:
    # Python's json module reads NaN and Infinity, which JSON (and so every other reader) refuses.
    raise ValueError(f"{name} is not JSON")


def static_config_problem(config: str) -> str | None:
    """Why ``config`` is not an acceptable static configuration (a JSON object of at most 16 KiB)."""
    if not config:
        return 'is required: a JSON object such as {"seats": 10}'
    if len(config.encode()) > MAX_STATIC_CONFIG_BYTES:
        return f"must be at most {MAX_STATIC_CONFIG_BYTES} bytes"
    try:
        parsed = json.loads(config, parse_float=Decimal, parse_constant=_not_json)
    except (ValueError, RecursionError) as exc:
        return f"must be valid JSON: {exc}"
    if not isinstance(parsed, dict):
        return "must be a JSON object"
    return None


@dataclass(frozen=True)
class MeteredConfigInput:
    """A metered configuration as sent; None where unset or undecodable."""

    usage_period: Cadence | None = None
    anchor: datetime | None = None
    usage_period_given: bool = True
    measure_usage_from: datetime | None = None
    issue_after_reset: Decimal | None = None
    issue_after_reset_priority: int = 0
    is_soft_limit: bool = False
    preserve_overage_at_reset: bool = False


@dataclass(frozen=True)
class EntitlementInput:
    """The entitlement of a CreateEntitlement or OverrideEntitlement request."""

    request_id: str
    customer_key: str
    feature_key: str
    type: EntitlementType | None
    """None when no config is set."""
    static_config: str = ""
    metered: MeteredConfigInput | None = None
    active_from: datetime | None = None
    active_to: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    given: bool = True
    """False when the request left ``entitlement`` unset."""
    decode_violations: tuple[FieldViolation, ...] = ()

    def validate(self, now: datetime) -> None:
        """Raise InvalidArgument listing every malformed field (``now`` stands for unset times)."""
        v = Collector(self.decode_violations)
        check_request_id(v, self.request_id)
        if not self.given:
            v.add("entitlement", "is required")
            v.raise_if_any("invalid entitlement")
        at = "entitlement"
        check_key(v, self.customer_key, f"{at}.customer_key")
        check_key(v, self.feature_key, f"{at}.feature_key")
        if self.type is None:
            v.add(f"{at}.config", "is required: one of boolean, static or metered")
        elif self.type is EntitlementType.STATIC:
            problem = static_config_problem(self.static_config)
            if problem is not None:
                v.add(f"{at}.static.config", problem)
        elif self.type is EntitlementType.METERED and self.metered is not None:
            self._check_metered(v, self.metered, f"{at}.metered")
        start = self.active_from or now
        if self.active_to is not None and self.active_to <= start:
            v.add(f"{at}.active_to", "must be after active_from (unset: now)")
        check_metadata(v, self.metadata, f"{at}.metadata")
        v.raise_if_any("invalid entitlement")

    @staticmethod
    def _check_metered(v: Collector, m: MeteredConfigInput, at: str) -> None:
        if not m.usage_period_given:
            v.add(f"{at}.usage_period", "is required: an interval such as P1M")
        elif m.usage_period is None:
            v.add(f"{at}.usage_period.interval", "is required: an ISO 8601 duration such as P1M")
        if m.issue_after_reset is not None and m.issue_after_reset <= 0:
            v.add(f"{at}.issue_after_reset", "must be greater than 0 (leave it unset for none)")
        check_priority(v, m.issue_after_reset_priority, f"{at}.issue_after_reset_priority")

    def request_fields(self) -> dict[str, Any]:
        """The request as sent, for its fingerprint."""
        metered = self.metered
        return {
            "customer_key": self.customer_key,
            "feature_key": self.feature_key,
            "type": self.type,
            "static_config": self.static_config,
            "metered": None
            if metered is None
            else {
                "usage_period": metered.usage_period,
                "anchor": metered.anchor,
                "measure_usage_from": metered.measure_usage_from,
                "issue_after_reset": metered.issue_after_reset,
                "issue_after_reset_priority": metered.issue_after_reset_priority,
                "is_soft_limit": metered.is_soft_limit,
                "preserve_overage_at_reset": metered.preserve_overage_at_reset,
            },
            "active_from": self.active_from,
            "active_to": self.active_to,
            "metadata": dict(self.metadata),
        }

    def to_entitlement(self, entitlement_id: str, feature: Feature, now: datetime) -> Entitlement:
        """The entitlement this (validated) input makes at ``now`` on ``feature``."""
        assert self.type is not None
        active_from = self.active_from or now
        metered = None
        if self.type is EntitlementType.METERED:
            m = self.metered
            assert m is not None and m.usage_period is not None
            metered = MeteredConfig(
                usage_period=m.usage_period,
                anchor=m.anchor or now,
                measure_usage_from=m.measure_usage_from or active_from,
                meter_key=feature.meter_key,
                meter_group_filters=dict(feature.meter_group_filters),
                issue_after_reset=m.issue_after_reset,
                issue_after_reset_priority=m.issue_after_reset_priority or DEFAULT_PRIORITY,
                is_soft_limit=m.is_soft_limit,
                preserve_overage_at_reset=m.preserve_overage_at_reset,
            )
        return Entitlement(
            id=entitlement_id,
            customer_key=self.customer_key,
            feature_key=self.feature_key,
            type=self.type,
            active_from=active_from,
            create_time=now,
            static_config=self.static_config if self.type is EntitlementType.STATIC else None,
            metered=metered,
            active_to=self.active_to,
            metadata=dict(self.metadata),
        )
