"""The catalog domain: one test per validation rule (with the exact field path it reports), every
violation at once, version status from a fixed clock, and publishing, archiving and new drafts."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from catalog.domain import (
    AddOnInstanceType,
    ArchiveVersionInput,
    BooleanEntitlementTemplate,
    Commitments,
    CreateAddOnInput,
    CreateFeatureInput,
    CreatePlanInput,
    Discounts,
    DynamicPrice,
    Feature,
    FlatPrice,
    MatrixPrice,
    MatrixPriceEntry,
    MeteredEntitlementTemplate,
    NewDraftVersionInput,
    PackagePrice,
    PaymentTerm,
    PercentageDiscount,
    PercentagePrice,
    Plan,
    PlanPhase,
    Price,
    PriceTier,
    PublishVersionInput,
    RateCard,
    References,
    StaticEntitlementTemplate,
    TaxConfig,
    TieredMode,
    TieredPrice,
    UnitPrice,
    UpdateDraftAddOnInput,
    UpdateDraftPlanInput,
    UsageDiscount,
    VersionStatus,
    add_on_fits_plan,
    archive_feature,
    archive_version,
    cadence_fits_plan,
    new_draft_version,
    publish_version,
    validate_plan,
    version_as_of,
    version_status,
)
from meterlib.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from meterlib.money import Money
from meterlib.periods import Cadence

D = Decimal
NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
MONTH = Cadence(months=1)
YEAR = Cadence(months=12)
WEEK = Cadence(seconds=7 * 86_400)


def usd(amount: str) -> Money:
    return Money(D(amount), "USD")


TOKENS = Feature("tokens", "Tokens", NOW, meter_key="input_tokens")
PAYMENTS = Feature("payments", "Payment volume", NOW, meter_key="payment_volume")
SEATS = Feature("seats", "Seats", NOW)
RETIRED = Feature("retired", "Retired", NOW, meter_key="input_tokens", archive_time=NOW)
REFS = References(
    features={f.key: f for f in (TOKENS, PAYMENTS, SEATS, RETIRED)},
    meter_dimensions={"input_tokens": frozenset({"model", "region"})},
    plan_keys=frozenset({"pro", "team"}),
)
CARD = "plan.phases[0].rate_cards[0]"

GT = TieredPrice(
    TieredMode.GRADUATED,
    (
        PriceTier(D(5), flat_amount=usd("100")),
        PriceTier(D(10), flat_amount=usd("50")),
        PriceTier(D(15), unit_amount=usd("5")),
        PriceTier(None, unit_amount=usd("1")),
    ),
)


def usage_card(price: Price | None = None, **changes: Any) -> RateCard:
    card = RateCard(
        "tokens", feature_key="tokens", billing_cadence=MONTH, price=price or UnitPrice(usd("0.00002"))
    )
    return dataclasses.replace(card, **changes)


def flat_card(**changes: Any) -> RateCard:
    return dataclasses.replace(RateCard("base", billing_cadence=MONTH, price=FlatPrice(usd("20"))), **changes)


def plan(*cards: RateCard, **changes: Any) -> CreatePlanInput:
    phase = PlanPhase("default", rate_cards=cards)
    return dataclasses.replace(CreatePlanInput("pro", "USD", MONTH, (phase,)), **changes)


def violations(content: CreatePlanInput | CreateAddOnInput, refs: References = REFS) -> dict[str, str]:
    """The violations validate() reports, by field path (each path once)."""
    with pytest.raises(InvalidArgument) as caught:
        content.validate(refs)
    found = {v.field: v.description for v in caught.value.violations}
    assert len(found) == len(caught.value.violations), caught.value.violations
    return found


def card_violations(card: RateCard) -> dict[str, str]:
    return violations(plan(card))


# --- a valid catalog passes ---------------------------------------------------------------------------


def test_a_plan_using_every_price_model_and_template_is_valid() -> None:
    matrix = MatrixPrice(
        ("model",),
        (MatrixPriceEntry({"model": "gpt-4"}, GT), MatrixPriceEntry({"model": ""}, UnitPrice(usd("0")))),
        PackagePrice(usd("15"), D(10)),
    )
    cards = (
        flat_card(entitlement_template=BooleanEntitlementTemplate(), feature_key="seats"),
        RateCard("setup", price=FlatPrice(usd("99"), PaymentTerm.IN_ARREARS)),
        RateCard("annual", billing_cadence=YEAR, price=FlatPrice(usd("100"))),
        usage_card(
            GT,
            discounts=Discounts(UsageDiscount(D(1000)), PercentageDiscount(D(10))),
            commitments=Commitments(usd("10"), usd("500")),
            entitlement_template=MeteredEntitlementTemplate(D(1_000_000), usage_period=MONTH),
            tax=TaxConfig("txcd_10103000"),
        ),
        usage_card(PackagePrice(usd("15"), D(10)), key="package"),
        usage_card(DynamicPrice(D("1.33333")), key="cost"),
        usage_card(
            PercentagePrice(D("2.9"), usd("0.30"), usd("0.50"), usd("10")), key="fees", feature_key="payments"
        ),
        usage_card(matrix, key="by_model"),
        RateCard(
            "config", feature_key="seats", entitlement_template=StaticEntitlementTemplate('{"seats": 10}')
        ),
    )
    content = CreatePlanInput(
        "pro",
        "USD",
        MONTH,
        (PlanPhase("trial", duration=Cadence(seconds=14 * 86_400)), PlanPhase("paid", rate_cards=cards)),
        metadata={"tier": "pro"},
    )
    content.validate(REFS)


# --- features -----------------------------------------------------------------------------------------


def test_feature_key_must_be_a_natural_key() -> None:
    with pytest.raises(InvalidArgument) as caught:
        CreateFeatureInput("GPT Tokens").validate()
    assert [v.field for v in caught.value.violations] == ["feature.key"]


def test_feature_filters_need_a_meter() -> None:
    with pytest.raises(InvalidArgument) as caught:
        CreateFeatureInput("gpt4", meter_group_filters={"model": "gpt-4"}).validate()
    assert [v.field for v in caught.value.violations] == ["feature.meter_group_filters"]


def test_feature_filters_only_on_dimensions_of_the_meter() -> None:
    feature = CreateFeatureInput(
        "gpt4", meter_key="input_tokens", meter_group_filters={"model": "gpt-4", "colour": "red"}
    )
    feature.validate(None)  # the meter's dimensions unknown: not checked
    with pytest.raises(InvalidArgument) as caught:
        feature.validate(frozenset({"model", "region"}))
    assert [v.field for v in caught.value.violations] == ["feature.meter_group_filters[colour]"]


def test_metadata_is_bounded() -> None:
    with pytest.raises(InvalidArgument) as caught:
        CreateFeatureInput("f", metadata={"k": "v" * 513, **{f"m{i}": "" for i in range(32)}}).validate()
    assert {v.field for v in caught.value.violations} == {"feature.metadata", "feature.metadata[k]"}


def test_names_and_descriptions_are_bounded() -> None:
    with pytest.raises(InvalidArgument) as caught:
        CreateFeatureInput("f", name="n" * 257, description="d" * 4097).validate()
    assert {v.field for v in caught.value.violations} == {"feature.name", "feature.description"}


def test_a_feature_is_created_with_its_key_as_default_name_and_archived_once() -> None:
    made = CreateFeatureInput("gpt4", meter_key="input_tokens").to_feature(NOW)
    assert made.name == "gpt4" and made.is_metered and not made.is_archived
    assert CreateFeatureInput("gpt4", meter_key="input_tokens").same_definition(made)
    archived = archive_feature(made, NOW + timedelta(days=1))
    assert archived.archive_time == NOW + timedelta(days=1)
    assert archive_feature(archived, NOW + timedelta(days=2)) == archived


# --- plans and phases ---------------------------------------------------------------------------------


def test_plan_key_must_be_a_natural_key() -> None:
    assert set(violations(plan(flat_card(), key="Pro Plan"))) == {"plan.key"}


def test_plan_currency_is_a_required_iso_code() -> None:
    assert set(violations(plan(flat_card(), currency=""))) == {"plan.currency"}
    assert (
        violations(plan(flat_card(), currency="usd"))["plan.currency"]
        == "currency codes are upper case: 'USD'"
    )


def test_plan_billing_cadence_is_required() -> None:
    assert set(violations(plan(flat_card(), billing_cadence=None))) == {"plan.billing_cadence"}


def test_plan_billing_cadence_is_whole_days_or_longer() -> None:
    hourly = Cadence(seconds=3600)
    assert set(violations(plan(flat_card(billing_cadence=None), billing_cadence=hourly))) == {
        "plan.billing_cadence"
    }


def test_a_plan_has_one_to_ten_phases() -> None:
    assert set(violations(plan(phases=()))) == {"plan.phases"}
    many = tuple(PlanPhase(f"p{i}", duration=MONTH) for i in range(11))
    assert set(violations(plan(phases=many))) == {"plan.phases"}


def test_phase_keys_are_unique() -> None:
    phases = (PlanPhase("trial", duration=MONTH), PlanPhase("trial"))
    assert violations(plan(phases=phases)) == {
        "plan.phases[1].key": "'trial' is already the key of plan.phases[0]"
    }


def test_phase_keys_are_natural_keys() -> None:
    assert set(violations(plan(phases=(PlanPhase("Trial!"),)))) == {"plan.phases[0].key"}


def test_every_phase_but_the_last_has_a_duration() -> None:
    phases = (PlanPhase("trial"), PlanPhase("intro"), PlanPhase("paid"))
    assert set(violations(plan(phases=phases))) == {"plan.phases[0].duration", "plan.phases[1].duration"}
    # the last phase may have one (the plan then ends) or not
    plan(phases=(PlanPhase("trial", duration=MONTH), PlanPhase("paid", duration=YEAR))).validate(REFS)


def test_rate_card_keys_are_unique_within_a_phase_not_across_phases() -> None:
    assert set(violations(plan(flat_card(), flat_card()))) == {"plan.phases[0].rate_cards[1].key"}
    phases = (
        PlanPhase("trial", duration=MONTH, rate_cards=(flat_card(),)),
        PlanPhase("paid", rate_cards=(flat_card(),)),
    )
    plan(phases=phases).validate(REFS)


def test_a_phase_has_at_most_100_rate_cards() -> None:
    cards = tuple(flat_card(key=f"c{i}") for i in range(101))
    assert set(violations(plan(*cards))) == {"plan.phases[0].rate_cards"}


# --- rate cards ---------------------------------------------------------------------------------------


def test_rate_card_key_must_be_a_natural_key() -> None:
    assert set(card_violations(flat_card(key=""))) == {f"{CARD}.key"}


def test_a_usage_price_needs_a_feature() -> None:
    found = card_violations(usage_card(feature_key=None))
    assert found == {f"{CARD}.feature_key": "is required for a unit price"}


def test_an_entitlement_template_needs_a_feature() -> None:
    found = card_violations(flat_card(entitlement_template=BooleanEntitlementTemplate()))
    assert found == {f"{CARD}.feature_key": "is required for an entitlement template"}
    both = usage_card(feature_key=None, entitlement_template=MeteredEntitlementTemplate(D(1)))
    assert card_violations(both) == {
        f"{CARD}.feature_key": "is required for a unit price and an entitlement template"
    }


def test_only_flat_prices_may_be_one_time() -> None:
    assert set(card_violations(usage_card(billing_cadence=None))) == {f"{CARD}.billing_cadence"}
    plan(flat_card(billing_cadence=None), RateCard("free", feature_key="seats")).validate(REFS)


def test_a_usage_price_bills_with_the_plan_cadence() -> None:
    assert set(card_violations(usage_card(billing_cadence=YEAR))) == {f"{CARD}.billing_cadence"}
    assert set(card_violations(usage_card(billing_cadence=WEEK))) == {f"{CARD}.billing_cadence"}


def test_a_flat_price_bills_with_the_plan_cadence_or_a_whole_multiple_of_it() -> None:
    plan(flat_card(billing_cadence=YEAR), flat_card(key="q", billing_cadence=Cadence(months=3))).validate(
        REFS
    )
    assert set(card_violations(flat_card(billing_cadence=WEEK))) == {f"{CARD}.billing_cadence"}
    quarterly = plan(flat_card(billing_cadence=Cadence(months=2)), billing_cadence=Cadence(months=3))
    assert set(violations(quarterly)) == {f"{CARD}.billing_cadence"}


@pytest.mark.parametrize(
    ("card", "plan_cadence", "flat", "fits"),
    [
        (MONTH, MONTH, False, True),
        (Cadence(seconds=30 * 86_400), MONTH, True, False),  # P30D is not a month
        (Cadence(seconds=28 * 86_400), Cadence(seconds=14 * 86_400), True, True),  # P4W on P2W
        (Cadence(seconds=28 * 86_400), Cadence(seconds=14 * 86_400), False, False),
        (MONTH, YEAR, True, False),  # a divisor of the plan's cadence is refused (see ratecards.py)
        (YEAR, MONTH, True, True),
    ],
)
def test_cadence_rule(card: Cadence, plan_cadence: Cadence, flat: bool, fits: bool) -> None:
    assert cadence_fits_plan(card, plan_cadence, flat=flat) is fits


def test_amounts_are_in_the_plan_currency() -> None:
    found = card_violations(flat_card(price=FlatPrice(Money(D(20), "EUR"))))
    assert found == {f"{CARD}.price.flat.amount.currency": "must be USD, the currency of every amount here"}


def test_amounts_are_not_negative() -> None:
    assert set(card_violations(usage_card(UnitPrice(usd("-1"))))) == {f"{CARD}.price.unit.amount.amount"}


def test_charged_amounts_fit_the_currency_minor_unit_unit_amounts_may_be_finer() -> None:
    assert set(card_violations(flat_card(price=FlatPrice(usd("9.999"))))) == {
        f"{CARD}.price.flat.amount.amount"
    }
    yen = CreatePlanInput(
        "jp",
        "JPY",
        MONTH,
        (PlanPhase("p", rate_cards=(flat_card(price=FlatPrice(Money(D("0.5"), "JPY"))),)),),
    )
    assert set(violations(yen)) == {f"{CARD}.price.flat.amount.amount"}
    plan(usage_card(UnitPrice(usd("0.000002")))).validate(REFS)


# --- prices -------------------------------------------------------------------------------------------


def tiered(*tiers: PriceTier, mode: TieredMode = TieredMode.VOLUME) -> RateCard:
    return usage_card(TieredPrice(mode, tiers))


TIERS = f"{CARD}.price.tiered.tiers"


def test_tiers_increase_strictly() -> None:
    found = card_violations(tiered(PriceTier(D(10)), PriceTier(D(10)), PriceTier(D(5)), PriceTier(None)))
    assert found == {
        f"{TIERS}[1].up_to": "must be greater than the previous tier's up_to (10)",
        f"{TIERS}[2].up_to": "must be greater than the previous tier's up_to (10)",
    }


def test_only_the_last_tier_is_open() -> None:
    found = card_violations(tiered(PriceTier(D(5)), PriceTier(None), PriceTier(None)))
    assert found == {f"{TIERS}[1].up_to": "is required: only the last tier is open-ended"}


def test_the_last_tier_is_open() -> None:
    found = card_violations(tiered(PriceTier(D(5)), PriceTier(D(10))))
    assert found == {f"{TIERS}[1].up_to": "must be unset: the last tier is open-ended"}


def test_the_first_bound_is_positive() -> None:
    assert set(card_violations(tiered(PriceTier(D(0)), PriceTier(None)))) == {f"{TIERS}[0].up_to"}


def test_a_tiered_price_has_1_to_32_tiers() -> None:
    assert set(card_violations(tiered())) == {TIERS}
    many = [PriceTier(D(i + 1)) for i in range(32)] + [PriceTier(None)]
    assert set(card_violations(tiered(*many))) == {TIERS}


def test_tier_flat_amounts_fit_the_minor_unit_unit_amounts_may_be_finer() -> None:
    found = card_violations(tiered(PriceTier(D(5), usd("0.001"), usd("0.001")), PriceTier(None)))
    assert set(found) == {f"{TIERS}[0].flat_amount.amount"}


def test_package_size_is_positive() -> None:
    found = card_violations(usage_card(PackagePrice(usd("15"), D(0))))
    assert found == {f"{CARD}.price.package.quantity_per_package": "must be greater than 0"}


def test_dynamic_multiplier_is_not_negative() -> None:
    assert set(card_violations(usage_card(DynamicPrice(D("-1.2"))))) == {f"{CARD}.price.dynamic.multiplier"}


@pytest.mark.parametrize("percent", ["-0.1", "100.01"])
def test_percentage_price_is_0_to_100(percent: str) -> None:
    card = usage_card(PercentagePrice(D(percent)), feature_key="payments")
    assert set(card_violations(card)) == {f"{CARD}.price.percentage.percent"}


def test_percentage_price_minimum_not_above_maximum() -> None:
    card = usage_card(PercentagePrice(D(3), None, usd("5"), usd("1")), feature_key="payments")
    assert set(card_violations(card)) == {f"{CARD}.price.percentage.maximum_amount_per_event"}


def test_percentage_price_per_event_amounts_fit_the_minor_unit() -> None:
    card = usage_card(PercentagePrice(D(3), usd("0.305")), feature_key="payments")
    assert set(card_violations(card)) == {f"{CARD}.price.percentage.fixed_amount_per_event.amount"}


MATRIX = f"{CARD}.price.matrix"


def matrix(dimensions: tuple[str, ...], *entries: MatrixPriceEntry) -> RateCard:
    return usage_card(MatrixPrice(dimensions, entries, UnitPrice(usd("1"))))


def test_matrix_dimensions_are_1_to_4_distinct_names() -> None:
    assert set(card_violations(matrix(()))) == {f"{MATRIX}.dimensions"}
    found = card_violations(matrix(("model", "model", "Region!")))
    assert set(found) == {f"{MATRIX}.dimensions[1]", f"{MATRIX}.dimensions[2]"}


def test_matrix_dimensions_are_group_bys_of_the_feature_meter() -> None:
    found = card_violations(matrix(("model", "colour")))
    assert found == {
        f"{MATRIX}.dimensions[1]": "the feature's meter has no dimension 'colour' (it has: model, region)"
    }
    # a meter whose dimensions the caller did not look up is not checked
    unknown_meter = MatrixPrice(("colour",), (), UnitPrice(usd("1")))
    plan(usage_card(unknown_meter, feature_key="payments")).validate(REFS)


def test_matrix_entries_give_exactly_the_dimensions() -> None:
    found = card_violations(
        matrix(("model", "region"), MatrixPriceEntry({"model": "gpt-4"}, UnitPrice(usd("1"))))
    )
    assert set(found) == {f"{MATRIX}.entries[0].dimension_values"}


def test_matrix_combinations_are_unique() -> None:
    entry = MatrixPriceEntry({"model": "gpt-4"}, UnitPrice(usd("1")))
    found = card_violations(matrix(("model",), entry, entry))
    assert found == {
        f"{MATRIX}.entries[1].dimension_values": f"repeats the combination of {MATRIX}.entries[0]"
    }


def test_matrix_cell_prices_are_validated_at_their_own_path() -> None:
    bad_tiers = TieredPrice(TieredMode.GRADUATED, (PriceTier(D(5)), PriceTier(D(2)), PriceTier(None)))
    card = usage_card(
        MatrixPrice(("model",), (MatrixPriceEntry({"model": "a"}, bad_tiers),), PackagePrice(usd("1"), D(0)))
    )
    assert set(card_violations(card)) == {
        f"{MATRIX}.entries[0].price.tiered.tiers[1].up_to",
        f"{MATRIX}.default_price.package.quantity_per_package",
    }


def test_matrix_has_at_most_1000_entries() -> None:
    entries = [MatrixPriceEntry({"model": str(i)}, UnitPrice(usd("1"))) for i in range(1001)]
    assert set(card_violations(matrix(("model",), *entries))) == {f"{MATRIX}.entries"}


# --- discounts, commitments, tax ----------------------------------------------------------------------


def test_usage_discount_quantity_is_positive() -> None:
    found = card_violations(usage_card(discounts=Discounts(usage=UsageDiscount(D(0)))))
    assert found == {f"{CARD}.discounts.usage.quantity": "must be greater than 0"}


def test_usage_discount_needs_a_usage_price() -> None:
    found = card_violations(flat_card(discounts=Discounts(usage=UsageDiscount(D(10)))))
    assert set(found) == {f"{CARD}.discounts.usage"}


@pytest.mark.parametrize("percent", ["0", "100.5"])
def test_percentage_discount_is_above_0_and_at_most_100(percent: str) -> None:
    found = card_violations(usage_card(discounts=Discounts(percentage=PercentageDiscount(D(percent)))))
    assert set(found) == {f"{CARD}.discounts.percentage.percent"}


def test_percentage_discount_needs_a_price() -> None:
    card = RateCard("free", feature_key="seats", discounts=Discounts(percentage=PercentageDiscount(D(10))))
    assert set(card_violations(card)) == {f"{CARD}.discounts.percentage"}
    plan(flat_card(discounts=Discounts(percentage=PercentageDiscount(D(10))))).validate(REFS)


def test_minimum_commitment_not_above_maximum() -> None:
    found = card_violations(usage_card(commitments=Commitments(usd("100"), usd("50"))))
    assert found == {f"{CARD}.commitments.maximum_amount": "must not be below the minimum_amount (100 USD)"}


def test_commitments_need_a_usage_price() -> None:
    assert set(card_violations(flat_card(commitments=Commitments(usd("10"))))) == {f"{CARD}.commitments"}


def test_commitment_amounts_are_plan_currency_minor_units() -> None:
    found = card_violations(usage_card(commitments=Commitments(usd("1.001"), Money(D(5), "EUR"))))
    assert set(found) == {
        f"{CARD}.commitments.minimum_amount.amount",
        f"{CARD}.commitments.maximum_amount.currency",
    }


def test_tax_code_is_at_most_64_characters() -> None:
    assert set(card_violations(flat_card(tax=TaxConfig("t" * 65)))) == {f"{CARD}.tax.tax_code"}


# --- entitlement templates ----------------------------------------------------------------------------

TEMPLATE = f"{CARD}.entitlement_template"


def test_a_metered_template_needs_issue_after_reset() -> None:
    found = card_violations(usage_card(entitlement_template=MeteredEntitlementTemplate(None)))
    assert set(found) == {f"{TEMPLATE}.metered.issue_after_reset"}


def test_issue_after_reset_is_not_negative() -> None:
    found = card_violations(usage_card(entitlement_template=MeteredEntitlementTemplate(D(-1))))
    assert set(found) == {f"{TEMPLATE}.metered.issue_after_reset"}


def test_grant_priority_is_at_least_1() -> None:
    template = MeteredEntitlementTemplate(D(100), issue_after_reset_priority=-3)
    assert set(card_violations(usage_card(entitlement_template=template))) == {
        f"{TEMPLATE}.metered.issue_after_reset_priority"
    }


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ("", "is required"),
        ("{seats: 10}", "must be valid JSON"),
        ("[10]", "must be a JSON object"),
        ('{"seats": NaN}', "must be valid JSON"),
        ('{"x": "' + "a" * 16_384 + '"}', "must be at most 16384 bytes"),
    ],
)
def test_a_static_template_config_is_a_json_object_of_at_most_16_kib(config: str, problem: str) -> None:
    card = RateCard("cfg", feature_key="seats", entitlement_template=StaticEntitlementTemplate(config))
    assert card_violations(card)[f"{TEMPLATE}.static.config"].startswith(problem)


# --- references: unknown, archived and meterless features ----------------------------------------------


def test_an_unknown_feature_is_not_found() -> None:
    content = plan(usage_card(feature_key="nope"), flat_card(feature_key="gone", key="b"))
    with pytest.raises(NotFound) as caught:
        content.validate(REFS)
    assert caught.value.resource_type == "feature" and caught.value.resource_name == "nope"
    assert caught.value.metadata["fields"] == f"{CARD}.feature_key,plan.phases[0].rate_cards[1].feature_key"


def test_an_archived_feature_cannot_be_referenced() -> None:
    with pytest.raises(FailedPrecondition) as caught:
        plan(usage_card(feature_key="retired")).validate(REFS)
    assert caught.value.reason == "ERROR_REASON_ARCHIVED"
    assert caught.value.metadata["fields"] == f"{CARD}.feature_key"


def test_a_usage_price_needs_a_metered_feature() -> None:
    with pytest.raises(FailedPrecondition) as caught:
        plan(usage_card(feature_key="seats")).validate(REFS)
    assert "a unit price needs a metered feature" in caught.value.message
    plan(flat_card(feature_key="seats")).validate(REFS)  # a flat fee on a boolean feature is fine


def test_a_metered_entitlement_needs_a_metered_feature() -> None:
    card = RateCard("seats", feature_key="seats", entitlement_template=MeteredEntitlementTemplate(D(10)))
    with pytest.raises(FailedPrecondition) as caught:
        plan(card).validate(REFS)
    assert "a metered entitlement needs a metered feature" in caught.value.message


def test_field_violations_come_before_reference_errors() -> None:
    content = plan(usage_card(feature_key="nope", key="Bad Key"))
    assert set(violations(content)) == {f"{CARD}.key"}


# --- all at once --------------------------------------------------------------------------------------


def test_every_violation_is_reported_at_once() -> None:
    content = CreatePlanInput(
        key="",
        currency="usd",
        billing_cadence=None,
        phases=(
            PlanPhase("trial", rate_cards=(flat_card(price=FlatPrice(Money(D("-1"), "EUR"))),)),
            PlanPhase(
                "trial",
                rate_cards=(
                    tiered(PriceTier(D(5)), PriceTier(D(3))),
                    usage_card(
                        PackagePrice(usd("1"), D(0)), key="p", discounts=Discounts(UsageDiscount(D(-1)))
                    ),
                    RateCard("cfg", entitlement_template=StaticEntitlementTemplate("nope")),
                ),
            ),
        ),
        decode_violations=(FieldViolation("plan.metadata", "decoded badly"),),
    )
    found = violations(content)
    assert set(found) == {
        "plan.metadata",
        "plan.key",
        "plan.currency",
        "plan.billing_cadence",
        "plan.phases[1].key",
        "plan.phases[0].duration",
        # (no currency mismatch is reported while the plan's own currency is invalid)
        "plan.phases[0].rate_cards[0].price.flat.amount.amount",
        "plan.phases[1].rate_cards[0].price.tiered.tiers[1].up_to",
        "plan.phases[1].rate_cards[1].price.package.quantity_per_package",
        "plan.phases[1].rate_cards[1].discounts.usage.quantity",
        "plan.phases[1].rate_cards[2].feature_key",
        "plan.phases[1].rate_cards[2].entitlement_template.static.config",
    }


def test_a_rule_about_a_field_that_could_not_be_decoded_is_not_repeated() -> None:
    undecodable = FieldViolation(f"{CARD}.billing_cadence", "must be an ISO 8601 duration")
    content = plan(usage_card(billing_cadence=None), decode_violations=(undecodable,))
    with pytest.raises(InvalidArgument) as caught:
        content.validate(REFS)
    assert caught.value.violations == (undecodable,)


def test_update_draft_reports_the_version_with_the_content() -> None:
    update = UpdateDraftPlanInput(version=0, plan=plan(flat_card(key="")))
    with pytest.raises(InvalidArgument) as caught:
        update.validate(REFS)
    assert {v.field for v in caught.value.violations} == {"version", f"{CARD}.key"}


# --- add-ons ------------------------------------------------------------------------------------------


def add_on(*cards: RateCard, **changes: Any) -> CreateAddOnInput:
    return dataclasses.replace(CreateAddOnInput("extra_seats", "USD", cards or (flat_card(),)), **changes)


def test_an_add_on_has_at_least_one_rate_card() -> None:
    assert set(violations(add_on(rate_cards=()))) == {"add_on.rate_cards"}


def test_add_on_rate_cards_follow_the_rate_card_rules() -> None:
    found = violations(add_on(flat_card(), usage_card(feature_key=None, key="base")))
    assert set(found) == {"add_on.rate_cards[1].key", "add_on.rate_cards[1].feature_key"}


def test_a_multiple_instance_add_on_has_only_flat_or_free_rate_cards() -> None:
    content = add_on(
        flat_card(),
        RateCard("free", feature_key="seats"),
        usage_card(),
        instance_type=AddOnInstanceType.MULTIPLE,
    )
    assert set(violations(content)) == {"add_on.rate_cards[2].price"}
    dataclasses.replace(content, instance_type=AddOnInstanceType.SINGLE).validate(REFS)


def test_compatible_plan_keys_are_distinct_natural_keys() -> None:
    found = violations(add_on(compatible_plan_keys=("pro", "pro", "Team")))
    assert set(found) == {"add_on.compatible_plan_keys[1]", "add_on.compatible_plan_keys[2]"}


def test_compatible_plans_must_exist() -> None:
    with pytest.raises(NotFound) as caught:
        add_on(compatible_plan_keys=("pro", "enterprise")).validate(REFS)
    assert caught.value.resource_type == "plan" and caught.value.resource_name == "enterprise"


def test_add_on_rate_card_cadences_are_checked_against_the_plan_it_is_bought_with() -> None:
    content = add_on(flat_card(billing_cadence=YEAR), usage_card(), compatible_plan_keys=("pro",))
    content.validate(REFS)  # an add-on has no cadence of its own
    made = content.to_add_on(1, NOW)
    monthly = plan(flat_card()).to_plan(1, NOW)
    assert add_on_fits_plan(made, monthly) == []
    weekly_in_eur = dataclasses.replace(monthly, key="team", currency="EUR", billing_cadence=WEEK)
    assert len(add_on_fits_plan(made, weekly_in_eur)) == 4  # not compatible, currency, two cadences


# --- version status -----------------------------------------------------------------------------------

T0 = datetime(2025, 2, 1, tzinfo=UTC)
T1 = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("effective_from", "effective_to", "archive_time", "now", "status"),
    [
        (None, None, None, T0, VersionStatus.DRAFT),
        (None, None, T0, T0 - timedelta(seconds=1), VersionStatus.DRAFT),
        (None, None, T0, T0, VersionStatus.ARCHIVED),
        (T0, None, None, T0 - timedelta(microseconds=1), VersionStatus.SCHEDULED),
        (T0, None, None, T0, VersionStatus.ACTIVE),
        (T0, T1, None, T1 - timedelta(microseconds=1), VersionStatus.ACTIVE),
        (T0, T1, None, T1, VersionStatus.ARCHIVED),
        (T1, T0, None, T0, VersionStatus.ARCHIVED),  # withdrawn before it started
        (T1, T0, None, T0 - timedelta(days=1), VersionStatus.SCHEDULED),
    ],
)
def test_version_status_follows_the_clock(
    effective_from: datetime | None,
    effective_to: datetime | None,
    archive_time: datetime | None,
    now: datetime,
    status: VersionStatus,
) -> None:
    assert version_status(effective_from, effective_to, archive_time, now) is status


def draft(version: int = 1) -> Plan:
    return plan(flat_card()).to_plan(version, NOW)


def test_publishing_from_now_makes_the_version_active() -> None:
    (published,) = publish_version([draft()], 1, NOW)
    assert (published.effective_from, published.effective_to, published.update_time) == (NOW, None, NOW)
    assert published.status(NOW) is VersionStatus.ACTIVE


def test_publishing_in_the_future_schedules_the_version() -> None:
    (published,) = publish_version([draft()], 1, NOW, effective_from=T0, effective_to=T1)
    assert [published.status(t) for t in (NOW, T0, T1)] == [
        VersionStatus.SCHEDULED,
        VersionStatus.ACTIVE,
        VersionStatus.ARCHIVED,
    ]


def test_publishing_version_n_plus_1_ends_version_n_at_its_start() -> None:
    (v1,) = publish_version([draft(1)], 1, NOW)
    later = NOW + timedelta(days=3)
    v1_after, v2 = publish_version([v1, draft(2)], 2, later, effective_from=T0)
    assert v1_after == dataclasses.replace(v1, effective_to=T0, update_time=later)
    assert (v2.effective_from, v2.effective_to) == (T0, None)
    assert [v.status(T0 - timedelta(seconds=1)) for v in (v1_after, v2)] == [
        VersionStatus.ACTIVE,
        VersionStatus.SCHEDULED,
    ]
    assert [v.status(T0) for v in (v1_after, v2)] == [VersionStatus.ARCHIVED, VersionStatus.ACTIVE]
    assert version_as_of([v1_after, v2], T0 - timedelta(seconds=1)) == v1_after
    assert version_as_of([v1_after, v2], T0) == v2
    assert version_as_of([v1_after, v2], NOW - timedelta(seconds=1)) is None


def test_publishing_shortens_a_version_scheduled_to_end_later() -> None:
    (v1,) = publish_version([draft(1)], 1, NOW, effective_to=T1)
    v1_after, _ = publish_version([v1, draft(2)], 2, NOW, effective_from=T0)
    assert v1_after.effective_to == T0


def test_publishing_again_is_idempotent_with_the_same_or_no_start() -> None:
    versions = publish_version([draft()], 1, NOW, effective_from=T0)
    assert publish_version(versions, 1, NOW + timedelta(days=1)) == versions
    assert publish_version(versions, 1, NOW, effective_from=T0) == versions
    with pytest.raises(FailedPrecondition) as caught:
        publish_version(versions, 1, NOW, effective_from=T1)
    assert caught.value.reason == "ERROR_REASON_IMMUTABLE"


def test_publishing_checks_its_times_all_at_once() -> None:
    with pytest.raises(InvalidArgument) as caught:
        publish_version(
            [draft()], 1, NOW, effective_from=NOW - timedelta(minutes=2), effective_to=NOW - timedelta(days=1)
        )
    assert {v.field for v in caught.value.violations} == {"effective_from", "effective_to"}
    publish_version([draft()], 1, NOW, effective_from=NOW - timedelta(seconds=59))  # clock skew tolerated


def test_publishing_before_a_scheduled_version_is_refused() -> None:
    v1, v2 = publish_version([draft(1), draft(2)], 1, NOW, effective_from=T1)
    with pytest.raises(FailedPrecondition) as caught:
        publish_version([v1, v2], 2, NOW, effective_from=T0)
    assert caught.value.metadata == {"scheduled_version": "1"}


def test_an_abandoned_draft_cannot_be_published() -> None:
    abandoned = archive_version(draft(), NOW)
    with pytest.raises(FailedPrecondition):
        publish_version([abandoned], 1, NOW)


def test_publishing_an_unknown_version_is_not_found() -> None:
    with pytest.raises(NotFound):
        publish_version([draft()], 7, NOW)


def test_archiving_a_draft_abandons_it_at_once() -> None:
    abandoned = archive_version(draft(), NOW)
    assert abandoned.archive_time == NOW and abandoned.status(NOW) is VersionStatus.ARCHIVED
    assert archive_version(abandoned, NOW + timedelta(days=1)) == abandoned


def test_archiving_a_published_version_ends_it_never_later_than_it_ends() -> None:
    (active,) = publish_version([draft()], 1, NOW, effective_to=T1)
    assert archive_version(active, NOW, effective_to=T0).effective_to == T0
    assert archive_version(active, NOW, effective_to=T1 + timedelta(days=1)) == active
    ended_now = archive_version(active, NOW)
    assert ended_now.effective_to == NOW and ended_now.status(NOW) is VersionStatus.ARCHIVED
    with pytest.raises(InvalidArgument) as caught:
        archive_version(active, NOW, effective_to=NOW - timedelta(hours=1))
    assert [v.field for v in caught.value.violations] == ["effective_to"]


def test_archiving_a_scheduled_version_withdraws_it() -> None:
    (scheduled,) = publish_version([draft()], 1, NOW, effective_from=T1)
    withdrawn = archive_version(scheduled, NOW)
    assert withdrawn.status(NOW) is VersionStatus.ARCHIVED
    assert version_as_of([withdrawn], T1) is None
    # a withdrawn version blocks no later publication
    (_, v2) = publish_version([withdrawn, draft(2)], 2, NOW, effective_from=T0)
    assert v2.effective_from == T0


def test_only_a_draft_changes() -> None:
    (published,) = publish_version([draft()], 1, NOW)
    with pytest.raises(FailedPrecondition) as caught:
        plan(flat_card(), name="Pro 2").apply_to(published, NOW)
    assert caught.value.reason == "ERROR_REASON_IMMUTABLE"
    edited = plan(flat_card(), name="Pro 2").apply_to(draft(), NOW + timedelta(hours=1))
    assert (edited.name, edited.create_time, edited.update_time) == ("Pro 2", NOW, NOW + timedelta(hours=1))


def test_a_new_draft_copies_the_latest_published_version() -> None:
    (v1,) = publish_version([draft(1)], 1, NOW)
    v1, v2 = publish_version([v1, dataclasses.replace(draft(2), name="v2")], 2, NOW, effective_from=T0)
    v3 = new_draft_version([v1, v2], 0, T1)
    assert (v3.version, v3.name, v3.status(T1)) == (3, "v2", VersionStatus.DRAFT)
    assert (v3.effective_from, v3.effective_to, v3.create_time) == (None, None, T1)
    assert new_draft_version([v1, v2], 1, T1).name == v1.name


def test_a_key_has_at_most_one_draft() -> None:
    (v1,) = publish_version([draft(1)], 1, NOW)
    with pytest.raises(FailedPrecondition) as caught:
        new_draft_version([v1, draft(2)], 0, NOW)
    assert caught.value.metadata == {"draft_version": "2"}


def test_a_new_draft_needs_a_source() -> None:
    with pytest.raises(NotFound):
        new_draft_version([archive_version(draft(1), NOW)], 0, NOW)
    with pytest.raises(NotFound):
        new_draft_version([archive_version(draft(1), NOW)], 4, NOW)
    assert new_draft_version([archive_version(draft(1), NOW)], 1, NOW).version == 2


def test_add_on_versions_share_the_lifecycle() -> None:
    made = add_on().to_add_on(1, NOW)
    (published,) = publish_version([made], 1, NOW, effective_from=T0)
    assert published.status(NOW) is VersionStatus.SCHEDULED
    with pytest.raises(FailedPrecondition):
        add_on().apply_to(published, NOW)
    update = UpdateDraftAddOnInput(version=1, add_on=add_on(name="More seats"))
    update.validate(REFS)
    assert update.add_on.apply_to(made, NOW).name == "More seats"


def test_creating_defaults_names_to_keys_and_recognises_a_retry() -> None:
    content = plan(flat_card(name=""))
    made = content.to_plan(1, NOW)
    assert (
        made.name == "pro"
        and made.phases[0].name == "default"
        and made.phases[0].rate_cards[0].name == "base"
    )
    assert content.same_definition(made)
    assert content.same_definition(publish_version([made], 1, NOW)[0])
    assert not plan(flat_card(price=FlatPrice(usd("21")))).same_definition(made)
    assert add_on().same_definition(add_on().to_add_on(1, NOW))


def test_publish_validates_the_stored_content_in_full() -> None:
    made = plan(usage_card()).to_plan(1, NOW)
    validate_plan(made, REFS)
    with pytest.raises(FailedPrecondition):
        validate_plan(made, dataclasses.replace(REFS, features={"tokens": archive_feature(TOKENS, NOW)}))


def test_lifecycle_requests_report_every_malformed_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        PublishVersionInput("", 0).validate()
    assert {v.field for v in caught.value.violations} == {"key", "version"}
    with pytest.raises(InvalidArgument) as caught:
        ArchiveVersionInput("pro", -1).validate()
    assert {v.field for v in caught.value.violations} == {"version"}
    with pytest.raises(InvalidArgument) as caught:
        NewDraftVersionInput("é" * 3, "Pro", -1).validate()
    assert {v.field for v in caught.value.violations} == {"request_id", "key", "source_version"}
    NewDraftVersionInput("5f1c0a3e-1d2b-4c8e-9a57-0c3e2d1f4b6a", "pro").validate()
