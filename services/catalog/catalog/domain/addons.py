"""Add-ons: versioned extra rate cards that subscriptions of compatible plans can buy.

Versioned exactly like plans (see :mod:`catalog.domain.status`). An add-on's rate cards are billed with
the subscription's cadence, so their cadences are checked against a plan only when the two meet
(:func:`add_on_fits_plan`). A MULTIPLE add-on charges and entitles per instance; as in OpenMeter, its rate
cards may only be free or flat-priced (a usage price times a quantity of instances has no meaning).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Final

from catalog.domain.common import (
    MAX_DESCRIPTION,
    MAX_NAME,
    Collector,
    check_currency,
    check_metadata,
    check_unique,
)
from catalog.domain.plans import Plan
from catalog.domain.prices import is_usage_based, price_model
from catalog.domain.ratecards import (
    RateCard,
    References,
    cadence_fits_plan,
    check_feature_references,
    check_rate_cards,
)
from catalog.domain.status import VersionStatus, ensure_draft, status_of
from meterlib.errors import FieldViolation, NotFound
from meterlib.money import is_currency
from meterlib.validation import check_key, check_text

MAX_COMPATIBLE_PLANS: Final = 100


class AddOnInstanceType(StrEnum):
    """How many instances of an add-on one subscription may hold."""

    SINGLE = "single"
    MULTIPLE = "multiple"


@dataclass(frozen=True)
class AddOn:
    """One version of an add-on. Only a DRAFT changes; published versions are immutable."""

    key: str
    version: int
    name: str
    currency: str
    rate_cards: tuple[RateCard, ...]
    create_time: datetime
    update_time: datetime
    description: str = ""
    instance_type: AddOnInstanceType = AddOnInstanceType.SINGLE
    compatible_plan_keys: tuple[str, ...] = ()
    """Plans (all their versions) it may be bought with; empty means every plan in its currency."""
    metadata: dict[str, str] = field(default_factory=dict)
    effective_from: datetime | None = None
    effective_to: datetime | None = None
    archive_time: datetime | None = None
    """When the version was abandoned as a DRAFT; published versions end through ``effective_to``."""

    def status(self, now: datetime) -> VersionStatus:
        """The lifecycle status at ``now``."""
        return status_of(self, now)


@dataclass(frozen=True)
class CreateAddOnInput:
    """The content of an add-on version: what CreateAddOn makes version 1 of, UpdateDraftAddOn replaces."""

    key: str
    currency: str = ""
    rate_cards: tuple[RateCard, ...] = ()
    name: str = ""
    description: str = ""
    instance_type: AddOnInstanceType = AddOnInstanceType.SINGLE
    compatible_plan_keys: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    decode_violations: tuple[FieldViolation, ...] = field(default=(), compare=False, repr=False)
    """What could not be decoded from the wire; reported by validate."""

    def validate(self, refs: References, *, prefix: str = "add_on") -> None:
        """Raise InvalidArgument listing every violation under ``prefix``; then NotFound for unknown
        features or compatible plans, and FailedPrecondition for archived or meterless features."""
        self.violations(refs, prefix=prefix).raise_if_any("invalid add-on")
        self.check_references(refs, prefix=prefix)

    def violations(self, refs: References, *, prefix: str = "add_on") -> Collector:
        """Every argument violation of this content, collected (decode violations first)."""
        v = Collector(self.decode_violations)
        check_key(v, self.key, f"{prefix}.key")
        check_text(v, self.name, f"{prefix}.name", MAX_NAME)
        check_text(v, self.description, f"{prefix}.description", MAX_DESCRIPTION)
        check_metadata(v, self.metadata, f"{prefix}.metadata")
        check_currency(v, self.currency, f"{prefix}.currency")
        cards_path = f"{prefix}.rate_cards"
        if not self.rate_cards:
            v.add(cards_path, "must have at least one rate card")
        currency = self.currency if is_currency(self.currency) else None
        check_rate_cards(v, self.rate_cards, cards_path, currency=currency, plan_cadence=None, refs=refs)
        if self.instance_type is AddOnInstanceType.MULTIPLE:
            for index, card in enumerate(self.rate_cards):
                if is_usage_based(card.price):
                    v.add(
                        f"{cards_path}[{index}].price",
                        f"must be flat or unset on a MULTIPLE add-on, not {price_model(card.price)}: "
                        "it is charged per instance",
                    )
        plans_path = f"{prefix}.compatible_plan_keys"
        if len(self.compatible_plan_keys) > MAX_COMPATIBLE_PLANS:
            v.add(plans_path, f"must have at most {MAX_COMPATIBLE_PLANS} plan keys")
        for index, plan_key in enumerate(self.compatible_plan_keys):
            check_key(v, plan_key, f"{plans_path}[{index}]")
        check_unique(v, self.compatible_plan_keys, plans_path, "plan key")
        return v

    def check_references(self, refs: References, *, prefix: str = "add_on") -> None:
        """NotFound for unknown compatible plans or features; FailedPrecondition as for plans."""
        if refs.plan_keys is not None:
            unknown = [key for key in self.compatible_plan_keys if key not in refs.plan_keys]
            if unknown:
                raise NotFound(
                    f"unknown compatible plans: {', '.join(unknown)}",
                    resource_type="plan",
                    resource_name=unknown[0],
                    metadata={"fields": f"{prefix}.compatible_plan_keys"},
                )
        check_feature_references(self.rate_cards_with_paths(prefix), refs)

    def rate_cards_with_paths(self, prefix: str = "add_on") -> Iterator[tuple[str, RateCard]]:
        """Every rate card with its field path."""
        for index, card in enumerate(self.rate_cards):
            yield f"{prefix}.rate_cards[{index}]", card

    def to_add_on(self, version: int, now: datetime) -> AddOn:
        """The DRAFT version this content makes; names default to keys. Call after validate()."""
        return AddOn(
            key=self.key,
            version=version,
            name=self.name or self.key,
            currency=self.currency,
            rate_cards=tuple(card if card.name else replace(card, name=card.key) for card in self.rate_cards),
            create_time=now,
            update_time=now,
            description=self.description,
            instance_type=self.instance_type,
            compatible_plan_keys=self.compatible_plan_keys,
            metadata=dict(self.metadata),
        )

    def apply_to(self, draft: AddOn, now: datetime) -> AddOn:
        """``draft`` with this content (UpdateDraftAddOn); FailedPrecondition unless it is a DRAFT."""
        ensure_draft(draft, now)
        return replace(self.to_add_on(draft.version, draft.create_time), update_time=now)

    def same_definition(self, add_on: AddOn) -> bool:
        """Whether ``add_on`` has exactly this content (so a retried CreateAddOn returns it)."""
        made = self.to_add_on(add_on.version, add_on.create_time)
        return made == replace(
            add_on, update_time=add_on.create_time, effective_from=None, effective_to=None, archive_time=None
        )

    @classmethod
    def from_add_on(cls, add_on: AddOn) -> CreateAddOnInput:
        """The content of a stored version, e.g. to validate a DRAFT in full before publishing it."""
        return cls(
            key=add_on.key,
            currency=add_on.currency,
            rate_cards=add_on.rate_cards,
            name=add_on.name,
            description=add_on.description,
            instance_type=add_on.instance_type,
            compatible_plan_keys=add_on.compatible_plan_keys,
            metadata=dict(add_on.metadata),
        )


@dataclass(frozen=True)
class UpdateDraftAddOnInput:
    """An UpdateDraftAddOn request: the DRAFT ``version`` of ``add_on.key`` gets the content ``add_on``."""

    version: int
    add_on: CreateAddOnInput

    def validate(self, refs: References) -> None:
        """Raise InvalidArgument listing every violation (``version`` and ``add_on.…``), then the
        reference errors of CreateAddOnInput.validate."""
        v = self.add_on.violations(refs, prefix="add_on")
        v.check(self.version >= 1, "version", "is required: the DRAFT version to update, from 1")
        v.raise_if_any("invalid add-on")
        self.add_on.check_references(refs, prefix="add_on")


def validate_add_on(add_on: AddOn, refs: References, *, prefix: str = "add_on") -> None:
    """Validate a stored version in full (PublishAddOn)."""
    CreateAddOnInput.from_add_on(add_on).validate(refs, prefix=prefix)


def add_on_fits_plan(add_on: AddOn, plan: Plan) -> list[str]:
    """Why ``add_on`` cannot be bought with ``plan`` (empty when it can): the plan is not among its
    compatible plans, the currencies differ, or a rate card's cadence does not fit the plan's."""
    reasons: list[str] = []
    if add_on.compatible_plan_keys and plan.key not in add_on.compatible_plan_keys:
        reasons.append(f"plan {plan.key!r} is not among the add-on's compatible plans")
    if add_on.currency != plan.currency:
        reasons.append(f"the add-on is in {add_on.currency}, the plan in {plan.currency}")
    for index, card in enumerate(add_on.rate_cards):
        cadence = card.billing_cadence
        if cadence is not None and not cadence_fits_plan(
            cadence, plan.billing_cadence, flat=not is_usage_based(card.price)
        ):
            reasons.append(
                f"rate_cards[{index}] ({card.key!r}) is billed every {cadence}, "
                f"which does not fit the plan's billing cadence {plan.billing_cadence}"
            )
    return reasons
