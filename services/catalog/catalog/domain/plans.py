"""Plans: versioned, phase by phase, each phase a set of rate cards."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

from catalog.domain.common import (
    MAX_DESCRIPTION,
    MAX_NAME,
    Collector,
    check_currency,
    check_metadata,
    check_unique_keys,
)
from catalog.domain.ratecards import RateCard, References, check_feature_references, check_rate_cards
from catalog.domain.status import VersionStatus, ensure_draft, status_of
from meterlib.errors import FieldViolation
from meterlib.money import is_currency
from meterlib.periods import Cadence
from meterlib.validation import check_key, check_text

MAX_PHASES: Final = 10
_DAY_SECONDS: Final = 86_400


@dataclass(frozen=True)
class PlanPhase:
    """One phase of a plan, e.g. a 14-day trial; ``duration`` None means until the subscription ends."""

    key: str
    name: str = ""
    description: str = ""
    duration: Cadence | None = None
    rate_cards: tuple[RateCard, ...] = ()


@dataclass(frozen=True)
class Plan:
    """One version of a plan. Only a DRAFT changes; published versions are immutable."""

    key: str
    version: int
    name: str
    currency: str
    billing_cadence: Cadence
    phases: tuple[PlanPhase, ...]
    create_time: datetime
    update_time: datetime
    description: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    effective_from: datetime | None = None
    effective_to: datetime | None = None
    archive_time: datetime | None = None
    """When the version was abandoned as a DRAFT; published versions end through ``effective_to``."""

    def status(self, now: datetime) -> VersionStatus:
        """The lifecycle status at ``now``."""
        return status_of(self, now)


def _named(card: RateCard) -> RateCard:
    return card if card.name else replace(card, name=card.key)


def _named_phase(phase: PlanPhase) -> PlanPhase:
    return replace(
        phase, name=phase.name or phase.key, rate_cards=tuple(_named(card) for card in phase.rate_cards)
    )


@dataclass(frozen=True)
class CreatePlanInput:
    """The content of a plan version: what CreatePlan makes version 1 of and UpdateDraftPlan replaces."""

    key: str
    currency: str = ""
    billing_cadence: Cadence | None = None
    phases: tuple[PlanPhase, ...] = ()
    name: str = ""
    description: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    decode_violations: tuple[FieldViolation, ...] = field(default=(), compare=False, repr=False)
    """What could not be decoded from the wire (bad decimal text, an unset oneof); reported by validate."""

    def validate(self, refs: References, *, prefix: str = "plan") -> None:
        """Raise InvalidArgument listing every violation, with paths under ``prefix``; then NotFound or
        FailedPrecondition for unknown, archived or meterless features (see check_feature_references)."""
        self.violations(refs, prefix=prefix).raise_if_any("invalid plan")
        check_feature_references(self.rate_cards_with_paths(prefix), refs)

    def violations(self, refs: References, *, prefix: str = "plan") -> Collector:
        """Every argument violation of this content, collected (decode violations first)."""
        v = Collector(self.decode_violations)
        check_key(v, self.key, f"{prefix}.key")
        check_text(v, self.name, f"{prefix}.name", MAX_NAME)
        check_text(v, self.description, f"{prefix}.description", MAX_DESCRIPTION)
        check_metadata(v, self.metadata, f"{prefix}.metadata")
        check_currency(v, self.currency, f"{prefix}.currency")
        cadence = self.billing_cadence
        if cadence is None:
            v.add(f"{prefix}.billing_cadence", "is required, e.g. P1M")
        elif cadence.seconds % _DAY_SECONDS:
            v.add(f"{prefix}.billing_cadence", "must be whole days, weeks, months or years")
        phases_path = f"{prefix}.phases"
        if not 1 <= len(self.phases) <= MAX_PHASES:
            v.add(phases_path, f"must have 1 to {MAX_PHASES} phases")
        check_unique_keys(v, (phase.key for phase in self.phases), phases_path)
        currency = self.currency if is_currency(self.currency) else None
        for index, phase in enumerate(self.phases):
            at = f"{phases_path}[{index}]"
            check_key(v, phase.key, f"{at}.key")
            check_text(v, phase.name, f"{at}.name", MAX_NAME)
            check_text(v, phase.description, f"{at}.description", MAX_DESCRIPTION)
            if phase.duration is None and index < len(self.phases) - 1:
                v.add(f"{at}.duration", "is required for every phase but the last")
            check_rate_cards(
                v, phase.rate_cards, f"{at}.rate_cards", currency=currency, plan_cadence=cadence, refs=refs
            )
        return v

    def rate_cards_with_paths(self, prefix: str = "plan") -> Iterator[tuple[str, RateCard]]:
        """Every rate card with its field path."""
        for p, phase in enumerate(self.phases):
            for r, card in enumerate(phase.rate_cards):
                yield f"{prefix}.phases[{p}].rate_cards[{r}]", card

    def to_plan(self, version: int, now: datetime) -> Plan:
        """The DRAFT version this content makes; names default to keys. Call after validate()."""
        if self.billing_cadence is None:
            raise ValueError("a plan without billing cadence cannot be built: validate the input first")
        return Plan(
            key=self.key,
            version=version,
            name=self.name or self.key,
            currency=self.currency,
            billing_cadence=self.billing_cadence,
            phases=tuple(_named_phase(phase) for phase in self.phases),
            create_time=now,
            update_time=now,
            description=self.description,
            metadata=dict(self.metadata),
        )

    def apply_to(self, draft: Plan, now: datetime) -> Plan:
        """``draft`` with this content (UpdateDraftPlan); FailedPrecondition unless it is a DRAFT."""
        ensure_draft(draft, now)
        made = self.to_plan(draft.version, draft.create_time)
        return replace(made, update_time=now)

    def same_definition(self, plan: Plan) -> bool:
        """Whether ``plan`` has exactly this content (so a retried CreatePlan returns it)."""
        made = self.to_plan(plan.version, plan.create_time)
        return made == replace(
            plan, update_time=plan.create_time, effective_from=None, effective_to=None, archive_time=None
        )

    @classmethod
    def from_plan(cls, plan: Plan) -> CreatePlanInput:
        """The content of a stored version, e.g. to validate a DRAFT in full before publishing it."""
        return cls(
            key=plan.key,
            currency=plan.currency,
            billing_cadence=plan.billing_cadence,
            phases=plan.phases,
            name=plan.name,
            description=plan.description,
            metadata=dict(plan.metadata),
        )


@dataclass(frozen=True)
class UpdateDraftPlanInput:
    """An UpdateDraftPlan request: the DRAFT ``version`` of ``plan.key`` gets the content ``plan``."""

    version: int
    plan: CreatePlanInput

    def validate(self, refs: References) -> None:
        """Raise InvalidArgument listing every violation (``version`` and ``plan.…``), then the
        reference errors of CreatePlanInput.validate."""
        v = self.plan.violations(refs, prefix="plan")
        v.check(self.version >= 1, "version", "is required: the DRAFT version to update, from 1")
        v.raise_if_any("invalid plan")
        check_feature_references(self.plan.rate_cards_with_paths("plan"), refs)


def validate_plan(plan: Plan, refs: References, *, prefix: str = "plan") -> None:
    """Validate a stored version in full (PublishPlan: its features may have been archived since)."""
    CreatePlanInput.from_plan(plan).validate(refs, prefix=prefix)
