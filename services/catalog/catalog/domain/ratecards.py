"""Rate cards: one billable or entitling item of a plan phase or an add-on, and their rules.

Billing cadence rule (the contract of ``RateCard.billing_cadence`` in catalog.proto): a rate card's cadence
must equal the plan's, or, for a flat price only, be a whole multiple of it (``P1Y`` on a ``P1M`` plan: the
fee falls due every twelfth billing period). Unset means one-time, allowed for a flat price or no price.
OpenMeter is laxer (either cadence may divide the other, for any price); we keep the contract's stricter
rule because the rating engine rates usage, tiers and commitments per billing period of the plan, so a
usage price billed more or less often than the plan would need rating across or inside invoice periods.
Month-based and fixed cadences never fit each other (``P1M`` vs ``P4W``), as ``Cadence.is_multiple_of``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from catalog.domain.adjustments import (
    NO_COMMITMENTS,
    NO_DISCOUNTS,
    Commitments,
    Discounts,
    TaxConfig,
    check_commitments,
    check_discounts,
    check_tax,
)
from catalog.domain.common import MAX_DESCRIPTION, MAX_NAME, Collector, check_metadata, check_unique_keys
from catalog.domain.features import Feature
from catalog.domain.prices import Price, check_price, is_usage_based, price_model
from catalog.domain.templates import EntitlementTemplate, MeteredEntitlementTemplate, check_template
from meterlib.errors import FailedPrecondition, NotFound
from meterlib.periods import Cadence
from meterlib.validation import check_key, check_text

MAX_RATE_CARDS: Final = 100


@dataclass(frozen=True)
class RateCard:
    """A price, its adjustments, the entitlement it grants and its tax treatment, under one item key."""

    key: str
    name: str = ""
    description: str = ""
    feature_key: str | None = None
    billing_cadence: Cadence | None = None
    """None means one-time (a flat price charged once at the start of the phase)."""
    price: Price | None = None
    """None means free: the rate card only grants an entitlement."""
    discounts: Discounts = NO_DISCOUNTS
    commitments: Commitments = NO_COMMITMENTS
    entitlement_template: EntitlementTemplate | None = None
    tax: TaxConfig | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class References:
    """What validating a plan or add-on needs to know beyond the request itself.

    ``features`` holds the referenced features by key (a key missing from it is an unknown feature);
    ``meter_dimensions`` the group-by names of meters by meter key, for the meters the caller asked about
    (a meter missing from it is not checked); ``plan_keys`` every plan key of the namespace, or None to
    leave an add-on's compatible plan keys unchecked.
    """

    features: Mapping[str, Feature] = field(default_factory=dict)
    meter_dimensions: Mapping[str, frozenset[str]] = field(default_factory=dict)
    plan_keys: frozenset[str] | None = None

    def dimensions_of(self, feature_key: str | None) -> frozenset[str] | None:
        """The group-by names of the meter of a feature, None when not known."""
        feature = self.features.get(feature_key) if feature_key else None
        if feature is None or feature.meter_key is None:
            return None
        return self.meter_dimensions.get(feature.meter_key)


def cadence_fits_plan(card: Cadence, plan: Cadence, *, flat: bool) -> bool:
    """Whether a rate card billed every ``card`` fits a plan billed every ``plan`` (see the module doc)."""
    return card == plan or (flat and card.is_multiple_of(plan))


def check_rate_cards(
    v: Collector,
    cards: tuple[RateCard, ...],
    path: str,
    *,
    currency: str | None,
    plan_cadence: Cadence | None,
    refs: References,
) -> None:
    """Rules of a phase's (or add-on's) rate cards at ``path``: at most 100, unique keys, each valid."""
    if len(cards) > MAX_RATE_CARDS:
        v.add(path, f"must have at most {MAX_RATE_CARDS} rate cards")
    check_unique_keys(v, (card.key for card in cards), path)
    for index, card in enumerate(cards):
        check_rate_card(v, card, f"{path}[{index}]", currency=currency, plan_cadence=plan_cadence, refs=refs)


def check_rate_card(
    v: Collector,
    card: RateCard,
    path: str,
    *,
    currency: str | None,
    plan_cadence: Cadence | None,
    refs: References,
) -> None:
    """Every argument rule of one rate card at ``path``.

    ``currency`` is the plan's (None when that is invalid), ``plan_cadence`` the plan's billing cadence
    (None for an add-on, checked against each plan when bought, or when the plan's could not be read).
    Unknown, archived and meterless features are :func:`check_feature_references`' business.
    """
    check_key(v, card.key, f"{path}.key")
    check_text(v, card.name, f"{path}.name", MAX_NAME)
    check_text(v, card.description, f"{path}.description", MAX_DESCRIPTION)
    check_metadata(v, card.metadata, f"{path}.metadata")
    if card.feature_key is not None:
        check_key(v, card.feature_key, f"{path}.feature_key")
    price = card.price
    # A price that could not be decoded is neither "no price" nor any model: rules that depend on the
    # model would report problems the caller does not have.
    price_known = not v.undecodable_at(f"{path}.price")
    if price is not None:
        check_price(v, price, f"{path}.price", currency, refs.dimensions_of(card.feature_key))
    if card.entitlement_template is not None:
        check_template(v, card.entitlement_template, f"{path}.entitlement_template")
    needs_feature = [f"a {price_model(price)} price"] if price_known and is_usage_based(price) else []
    if card.entitlement_template is not None:
        needs_feature.append("an entitlement template")
    if card.feature_key is None and needs_feature:
        v.add(f"{path}.feature_key", f"is required for {' and '.join(needs_feature)}")
    _check_cadence(v, card, f"{path}.billing_cadence", plan_cadence, price_known=price_known)
    check_discounts(v, card.discounts, f"{path}.discounts", price, price_known=price_known)
    check_commitments(v, card.commitments, f"{path}.commitments", price, currency, price_known=price_known)
    if card.tax is not None:
        check_tax(v, card.tax, f"{path}.tax")


def _check_cadence(
    v: Collector, card: RateCard, path: str, plan_cadence: Cadence | None, *, price_known: bool
) -> None:
    if card.billing_cadence is None:
        if price_known and is_usage_based(card.price):
            v.add(path, f"is required for a {price_model(card.price)} price: only flat prices are one-time")
        return
    # An undecodable price might be flat: then only a cadence that fits no price at all is reported.
    flat = not price_known or not is_usage_based(card.price)
    if plan_cadence is None or cadence_fits_plan(card.billing_cadence, plan_cadence, flat=flat):
        return
    if flat:
        v.add(path, f"must equal the plan's billing cadence {plan_cadence} or be a whole multiple of it")
    else:
        v.add(path, f"must equal the plan's billing cadence {plan_cadence} for a usage-based price")


def check_feature_references(cards: Iterable[tuple[str, RateCard]], refs: References) -> None:
    """Raise NotFound for rate cards naming unknown features, then FailedPrecondition for features that
    are archived or lack the meter a usage price or a metered entitlement needs, each listing every
    offender. ``cards`` pairs each rate card with its field path.
    """
    missing: list[tuple[str, str]] = []
    archived: list[tuple[str, str]] = []
    unmetered: list[tuple[str, str]] = []
    for path, card in cards:
        if card.feature_key is None:
            continue
        where = f"{path}.feature_key"
        feature = refs.features.get(card.feature_key)
        if feature is None:
            missing.append((where, card.feature_key))
            continue
        if feature.is_archived:
            archived.append((where, f"feature {feature.key!r} is archived"))
        if not feature.is_metered:
            if is_usage_based(card.price):
                what = f"a {price_model(card.price)} price"
                unmetered.append((where, f"{what} needs a metered feature, and {feature.key!r} has no meter"))
            if isinstance(card.entitlement_template, MeteredEntitlementTemplate):
                what = "a metered entitlement"
                unmetered.append((where, f"{what} needs a metered feature, and {feature.key!r} has no meter"))
    if missing:
        raise NotFound(
            "unknown features: " + "; ".join(f"{where}: {key!r}" for where, key in missing),
            resource_type="feature",
            resource_name=missing[0][1],
            metadata={"fields": ",".join(where for where, _ in missing)},
        )
    problems = archived + unmetered
    if problems:
        raise FailedPrecondition(
            "features that cannot be used so: " + "; ".join(f"{where}: {what}" for where, what in problems),
            reason="ERROR_REASON_ARCHIVED" if archived else "ERROR_REASON_FEATURE_NOT_METERED",
            metadata={"fields": ",".join(dict.fromkeys(where for where, _ in problems))},
        )
