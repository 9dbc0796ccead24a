"""Catalog proto ⇄ domain conversion: every price model, template and resource survives a round trip
through the wire (bytes included), and bad wire content becomes field violations, never an exception."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog import convert
from catalog.domain import (
    AddOn,
    AddOnInstanceType,
    BooleanEntitlementTemplate,
    Commitments,
    Discounts,
    DynamicPrice,
    EntitlementTemplate,
    Feature,
    FlatPrice,
    MatrixPrice,
    MatrixPriceEntry,
    MeteredEntitlementTemplate,
    PackagePrice,
    PaymentTerm,
    PercentageDiscount,
    PercentagePrice,
    Plan,
    PlanPhase,
    Price,
    PriceTier,
    RateCard,
    References,
    StaticEntitlementTemplate,
    TaxBehavior,
    TaxConfig,
    TieredMode,
    TieredPrice,
    UnitPrice,
    UsageDiscount,
    UsagePrice,
    archive_version,
    publish_version,
)
from metering.catalog.v1 import catalog_pb2 as pb
from metering.common.v1 import common_pb2
from meterlib.errors import InvalidArgument
from meterlib.money import Money
from meterlib.periods import Cadence

D = Decimal
NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
MONTH = Cadence(months=1)
CARD = "plan.phases[0].rate_cards[0]"


def usd(amount: str) -> Money:
    return Money(D(amount), "USD")


VT = TieredPrice(
    TieredMode.VOLUME,
    (
        PriceTier(D(5), flat_amount=usd("100")),
        PriceTier(D(10), flat_amount=usd("150")),
        PriceTier(D(15), unit_amount=usd("10")),
        PriceTier(None, unit_amount=usd("5")),
    ),
)
PRICES: list[Price] = [
    FlatPrice(usd("20")),
    FlatPrice(usd("9"), PaymentTerm.IN_ARREARS),
    UnitPrice(usd("0.00002")),
    VT,
    TieredPrice(TieredMode.GRADUATED, (PriceTier(None),)),
    PackagePrice(usd("15"), D(10)),
    DynamicPrice(),
    DynamicPrice(D("1.33333")),
    PercentagePrice(D("2.9")),
    PercentagePrice(D("2.9"), usd("0.30"), usd("0.50"), usd("10")),
    MatrixPrice(
        ("model", "region"),
        (
            MatrixPriceEntry({"model": "gpt-4", "region": "eu"}, VT),
            MatrixPriceEntry({"model": "", "region": "us"}, PercentagePrice(D(1), usd("0.1"))),
        ),
        UnitPrice(usd("0")),
    ),
]
TEMPLATES: list[EntitlementTemplate] = [
    MeteredEntitlementTemplate(D(1_000_000)),
    MeteredEntitlementTemplate(
        D("0.5"),
        usage_period=Cadence(seconds=6 * 3600),
        issue_after_reset_priority=3,
        is_soft_limit=True,
        preserve_overage_at_reset=True,
    ),
    MeteredEntitlementTemplate(None, usage_period=Cadence(months=12)),
    BooleanEntitlementTemplate(),
    StaticEntitlementTemplate('{"seats": 10}'),
]


def over_the_wire(message: pb.Price) -> pb.Price:
    return pb.Price.FromString(message.SerializeToString())


@pytest.mark.parametrize("price", PRICES, ids=lambda p: type(p).__name__)
def test_every_price_model_round_trips(price: Price) -> None:
    assert convert.from_proto_price(over_the_wire(convert.to_proto_price(price))) == price


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: type(t).__name__)
def test_every_entitlement_template_round_trips(template: EntitlementTemplate) -> None:
    message = pb.EntitlementTemplate.FromString(
        convert.to_proto_entitlement_template(template).SerializeToString()
    )
    assert convert.from_proto_entitlement_template(message) == template


# Values the wire carries exactly: decimals of at most 38 significant digits, any currency.
decimals = st.decimals(min_value=-(10**12), max_value=10**12, places=8, allow_nan=False, allow_infinity=False)
moneys = st.builds(Money, decimals, st.sampled_from(["USD", "EUR", "JPY", "BHD"]))
optional_moneys = st.none() | moneys
names = st.text(string.ascii_lowercase + string.digits + "_-", max_size=12)
tiers = st.builds(PriceTier, st.none() | decimals, optional_moneys, optional_moneys)
usage_prices: st.SearchStrategy[UsagePrice] = st.one_of(
    st.builds(UnitPrice, moneys),
    st.builds(TieredPrice, st.sampled_from(TieredMode), st.lists(tiers, max_size=5).map(tuple)),
    st.builds(PackagePrice, moneys, decimals),
    st.builds(DynamicPrice, decimals),
    st.builds(PercentagePrice, decimals, optional_moneys, optional_moneys, optional_moneys),
)
entries = st.builds(MatrixPriceEntry, st.dictionaries(names, names, max_size=3), usage_prices)
prices: st.SearchStrategy[Price] = st.one_of(
    st.builds(FlatPrice, moneys, st.sampled_from(PaymentTerm)),
    usage_prices,
    st.builds(
        MatrixPrice,
        st.lists(names, max_size=4).map(tuple),
        st.lists(entries, max_size=3).map(tuple),
        usage_prices,
    ),
)
cadences = st.one_of(
    st.builds(Cadence, months=st.integers(1, 1200)),
    st.builds(lambda days: Cadence(seconds=days * 86_400), st.integers(1, 36_600)),
)
templates: st.SearchStrategy[EntitlementTemplate] = st.one_of(
    st.builds(
        MeteredEntitlementTemplate,
        st.none() | decimals,
        st.none() | cadences,
        st.integers(1, 2**31 - 1),
        st.booleans(),
        st.booleans(),
    ),
    st.just(BooleanEntitlementTemplate()),
    st.builds(StaticEntitlementTemplate, st.text(max_size=20)),
)
rate_cards = st.builds(
    RateCard,
    key=names,
    name=names,
    description=st.text(max_size=20),
    feature_key=st.none() | names.filter(bool),
    billing_cadence=st.none() | cadences,
    price=st.none() | prices,
    discounts=st.builds(
        Discounts,
        st.none() | st.builds(UsageDiscount, decimals),
        st.none() | st.builds(PercentageDiscount, decimals),
    ),
    commitments=st.builds(Commitments, optional_moneys, optional_moneys),
    entitlement_template=st.none() | templates,
    tax=st.none() | st.builds(TaxConfig, names, st.none() | st.sampled_from(TaxBehavior)),
    metadata=st.dictionaries(names, st.text(max_size=10), max_size=3),
)


@settings(deadline=None, max_examples=300)
@given(prices)
def test_any_price_round_trips(price: Price) -> None:
    assert convert.from_proto_price(over_the_wire(convert.to_proto_price(price))) == price


@settings(deadline=None, max_examples=200)
@given(rate_cards)
def test_any_rate_card_round_trips(card: RateCard) -> None:
    message = pb.RateCard.FromString(convert.to_proto_rate_card(card).SerializeToString())
    assert convert.from_proto_rate_card(message) == card


def sample_plan() -> Plan:
    card = RateCard(
        "tokens",
        name="Tokens",
        feature_key="tokens",
        billing_cadence=MONTH,
        price=VT,
        discounts=Discounts(UsageDiscount(D(1000)), PercentageDiscount(D(10))),
        commitments=Commitments(usd("10"), usd("500")),
        entitlement_template=MeteredEntitlementTemplate(D(100), MONTH),
        tax=TaxConfig("txcd_10103000", TaxBehavior.EXCLUSIVE),
        metadata={"team": "ai"},
    )
    trial = PlanPhase("trial", "Trial", "14 days free", Cadence(seconds=14 * 86_400))
    return Plan(
        key="pro",
        version=2,
        name="Pro",
        currency="USD",
        billing_cadence=MONTH,
        phases=(trial, PlanPhase("paid", "Paid", rate_cards=(card, RateCard("free", "Free")))),
        create_time=NOW,
        update_time=NOW,
        description="For teams",
        metadata={"tier": "2"},
    )


def test_a_plan_round_trips_through_every_status() -> None:
    draft = sample_plan()
    (scheduled,) = publish_version([draft], 2, NOW, effective_from=NOW + timedelta(days=1))
    (bounded,) = publish_version([draft], 2, NOW, effective_to=NOW + timedelta(days=30))
    abandoned = archive_version(draft, NOW + timedelta(hours=1))
    for version, status in [
        (draft, pb.VERSION_STATUS_DRAFT),
        (scheduled, pb.VERSION_STATUS_SCHEDULED),
        (bounded, pb.VERSION_STATUS_ACTIVE),
        (abandoned, pb.VERSION_STATUS_ARCHIVED),
    ]:
        message = pb.Plan.FromString(
            convert.to_proto_plan(version, NOW + timedelta(hours=2)).SerializeToString()
        )
        assert message.status == status
        assert convert.from_proto_plan(message) == version


def test_an_add_on_round_trips() -> None:
    add_on = AddOn(
        key="extra_seats",
        version=1,
        name="Extra seats",
        currency="USD",
        rate_cards=(RateCard("seat", billing_cadence=MONTH, price=FlatPrice(usd("5"))),),
        create_time=NOW,
        update_time=NOW,
        instance_type=AddOnInstanceType.MULTIPLE,
        compatible_plan_keys=("pro", "team"),
        metadata={"a": "b"},
    )
    (published,) = publish_version([add_on], 1, NOW)
    for version in (add_on, published, archive_version(add_on, NOW)):
        message = convert.to_proto_add_on(version, NOW)
        assert convert.from_proto_add_on(pb.AddOn.FromString(message.SerializeToString())) == version


def test_a_feature_round_trips() -> None:
    feature = Feature(
        "gpt4_input",
        "GPT-4 input tokens",
        NOW,
        meter_key="input_tokens",
        meter_group_filters={"model": "gpt-4"},
        metadata={"unit": "token"},
        archive_time=NOW + timedelta(days=1),
    )
    assert convert.from_proto_feature(convert.to_proto_feature(feature)) == feature
    assert (
        convert.from_proto_feature(convert.to_proto_feature(Feature("flag", "Flag", NOW))).meter_key is None
    )


def test_the_wire_forms_are_canonical() -> None:
    card = RateCard("c", billing_cadence=Cadence(months=12), price=UnitPrice(usd("12.50")))
    message = convert.to_proto_rate_card(card)
    assert (message.billing_cadence, message.price.unit.amount.amount) == ("P1Y", "12.5")
    assert (
        not message.HasField("discounts")
        and not message.HasField("commitments")
        and not message.HasField("tax")
    )
    week = convert.to_proto_phase(PlanPhase("p", duration=Cadence(seconds=14 * 86_400)))
    assert week.duration == "P2W"


def test_unset_enums_and_optional_fields_take_their_documented_defaults() -> None:
    price = pb.Price(flat=pb.FlatPrice(amount=common_pb2.Money(amount="20", currency="USD")))
    assert convert.from_proto_price(price) == FlatPrice(usd("20"), PaymentTerm.IN_ADVANCE)
    assert convert.from_proto_price(pb.Price(dynamic=pb.DynamicPrice())) == DynamicPrice(D(1))
    template = pb.EntitlementTemplate(metered=pb.MeteredEntitlementTemplate())
    assert convert.from_proto_entitlement_template(template) == MeteredEntitlementTemplate(None, None, 1)
    add_on = convert.from_proto_create_add_on(pb.CreateAddOnRequest(add_on=pb.AddOn(key="a")))
    assert add_on.instance_type is AddOnInstanceType.SINGLE


# --- bad wire content ---------------------------------------------------------------------------------


def create_plan(*cards: pb.RateCard, billing_cadence: str = "P1M") -> pb.CreatePlanRequest:
    phase = pb.PlanPhase(key="default", rate_cards=cards)
    return pb.CreatePlanRequest(
        plan=pb.Plan(key="pro", currency="USD", billing_cadence=billing_cadence, phases=[phase])
    )


def decode_problems(request: pb.CreatePlanRequest) -> dict[str, str]:
    content = convert.from_proto_create_plan(request)
    return {v.field: v.description for v in content.decode_violations}


def money(amount: str, currency: str = "USD") -> common_pb2.Money:
    return common_pb2.Money(amount=amount, currency=currency)


def test_bad_decimal_text_is_a_field_violation_reported_with_the_domain_rules() -> None:
    tiered = pb.TieredPrice(
        mode=pb.TIERED_MODE_VOLUME,
        tiers=[pb.PriceTier(up_to=common_pb2.Decimal(value="1e3")), pb.PriceTier(unit_amount=money("0.1.2"))],
    )
    card = pb.RateCard(
        key="Bad Key", feature_key="tokens", billing_cadence="P1M", price=pb.Price(tiered=tiered)
    )
    request = create_plan(card)
    problems = decode_problems(request)  # no exception escapes decoding
    assert set(problems) == {
        f"{CARD}.price.tiered.tiers[0].up_to",
        f"{CARD}.price.tiered.tiers[1].unit_amount.amount",
    }
    with pytest.raises(InvalidArgument) as caught:
        convert.from_proto_create_plan(request).validate(References())
    assert {v.field for v in caught.value.violations} == set(problems) | {f"{CARD}.key"}


def test_a_bad_currency_code_in_an_amount_is_a_field_violation() -> None:
    card = pb.RateCard(key="base", price=pb.Price(flat=pb.FlatPrice(amount=money("20", "usd"))))
    assert decode_problems(create_plan(card)) == {
        f"{CARD}.price.flat.amount.currency": "currency codes are upper case: 'USD'"
    }


def test_an_unset_price_model_is_a_field_violation() -> None:
    card = pb.RateCard(key="base", price=pb.Price())
    assert set(decode_problems(create_plan(card))) == {f"{CARD}.price"}


def test_missing_required_messages_are_field_violations() -> None:
    matrix = pb.MatrixPrice(
        dimensions=["model"], entries=[pb.MatrixPriceEntry(dimension_values={"model": "a"})]
    )
    cards = [
        pb.RateCard(key="a", price=pb.Price(flat=pb.FlatPrice())),
        pb.RateCard(key="b", price=pb.Price(matrix=matrix)),
        pb.RateCard(key="c", price=pb.Price(tiered=pb.TieredPrice(tiers=[pb.PriceTier()]))),
        pb.RateCard(key="d", price=pb.Price(package=pb.PackagePrice(amount=money("1")))),
        pb.RateCard(key="e", price=pb.Price(percentage=pb.PercentagePrice())),
        pb.RateCard(
            key="f", discounts=pb.Discounts(usage=pb.UsageDiscount(), percentage=pb.PercentageDiscount())
        ),
        pb.RateCard(key="g", entitlement_template=pb.EntitlementTemplate()),
    ]
    cards_path = "plan.phases[0].rate_cards"
    assert set(decode_problems(create_plan(*cards))) == {
        f"{cards_path}[0].price.flat.amount",
        f"{cards_path}[1].price.matrix.entries[0].price",
        f"{cards_path}[1].price.matrix.default_price",
        f"{cards_path}[2].price.tiered.mode",
        f"{cards_path}[3].price.package.quantity_per_package",
        f"{cards_path}[4].price.percentage.percent",
        f"{cards_path}[5].discounts.usage.quantity",
        f"{cards_path}[5].discounts.percentage.percent",
        f"{cards_path}[6].entitlement_template",
    }


def test_a_matrix_cell_problem_is_named_by_its_full_path() -> None:
    cell = pb.UsagePrice(
        tiered=pb.TieredPrice(
            mode=pb.TIERED_MODE_GRADUATED, tiers=[pb.PriceTier(up_to=common_pb2.Decimal(value=""))]
        )
    )
    matrix = pb.MatrixPrice(
        dimensions=["model"],
        entries=[
            pb.MatrixPriceEntry(
                dimension_values={"model": "a"}, price=pb.UsagePrice(unit=pb.UnitPrice(amount=money("1")))
            ),
            pb.MatrixPriceEntry(dimension_values={"model": "b"}, price=cell),
        ],
        default_price=pb.UsagePrice(unit=pb.UnitPrice(amount=money("1"))),
    )
    card = pb.RateCard(key="m", feature_key="tokens", billing_cadence="P1M", price=pb.Price(matrix=matrix))
    assert decode_problems(create_plan(card)) == {
        f"{CARD}.price.matrix.entries[1].price.tiered.tiers[0].up_to": "must not be empty"
    }


def test_unknown_enum_values_are_field_violations() -> None:
    cards = [
        pb.RateCard(
            key="a",
            price=pb.Price(flat=pb.FlatPrice(amount=money("1"), payment_term=pb.PaymentTerm.ValueType(9))),
        ),
        pb.RateCard(key="b", tax=pb.TaxConfig(behavior=pb.TaxBehavior.ValueType(7))),
    ]
    assert set(decode_problems(create_plan(*cards))) == {
        "plan.phases[0].rate_cards[0].price.flat.payment_term",
        "plan.phases[0].rate_cards[1].tax.behavior",
    }
    add_on = convert.from_proto_create_add_on(
        pb.CreateAddOnRequest(add_on=pb.AddOn(key="a", instance_type=pb.AddOnInstanceType.ValueType(5)))
    )
    assert [v.field for v in add_on.decode_violations] == ["add_on.instance_type"]


def test_bad_durations_are_field_violations() -> None:
    card = pb.RateCard(
        key="a",
        billing_cadence="monthly",
        entitlement_template=pb.EntitlementTemplate(
            metered=pb.MeteredEntitlementTemplate(usage_period="PT30M")
        ),
    )
    request = create_plan(card, billing_cadence="P1M1D")
    request.plan.phases[0].duration = "P-1D"
    assert set(decode_problems(request)) == {
        "plan.billing_cadence",
        "plan.phases[0].duration",
        f"{CARD}.billing_cadence",
        f"{CARD}.entitlement_template.metered.usage_period",
    }


def test_strict_readers_list_every_problem_at_once() -> None:
    price = pb.Price(
        percentage=pb.PercentagePrice(
            percent=common_pb2.Decimal(value="x"), fixed_amount_per_event=money("1", "")
        )
    )
    with pytest.raises(InvalidArgument) as caught:
        convert.from_proto_price(price, "p")
    assert {v.field for v in caught.value.violations} == {
        "p.percentage.percent",
        "p.percentage.fixed_amount_per_event.currency",
    }
    with pytest.raises(InvalidArgument) as caught:
        convert.from_proto_plan(pb.Plan(key="pro", currency="USD"))
    assert {v.field for v in caught.value.violations} == {
        "plan.create_time",
        "plan.update_time",
        "plan.billing_cadence",
    }


def test_request_conversions() -> None:
    ts = convert.to_timestamp(NOW)
    publish = convert.from_proto_publish(pb.PublishAddOnRequest(key="a", version=2, effective_from=ts))
    assert (publish.key, publish.version, publish.effective_from, publish.effective_to) == ("a", 2, NOW, None)
    archive = convert.from_proto_archive(pb.ArchivePlanRequest(key="p", version=1, effective_to=ts))
    assert archive.effective_to == NOW
    new_draft = convert.from_proto_new_draft(pb.NewDraftPlanVersionRequest(request_id="r", key="p"))
    assert (new_draft.request_id, new_draft.source_version) == ("r", 0)
    update = convert.from_proto_update_draft_plan(
        pb.UpdateDraftPlanRequest(plan=pb.Plan(key="p", billing_cadence="P3M"), version=4)
    )
    assert (update.version, update.plan.billing_cadence) == (4, Cadence(months=3))
    feature = convert.from_proto_create_feature(
        pb.CreateFeatureRequest(feature=pb.Feature(key="f", meter_key="m"))
    )
    assert (feature.key, feature.meter_key) == ("f", "m")
    assert (
        convert.from_proto_update_draft_add_on(
            pb.UpdateDraftAddOnRequest(add_on=pb.AddOn(key="a"), version=1)
        ).version
        == 1
    )


def test_a_plan_read_from_the_wire_validates_like_one_built_in_code() -> None:
    message = convert.to_proto_plan(sample_plan(), NOW)
    content = convert.from_proto_create_plan(pb.CreatePlanRequest(plan=message))
    assert content.decode_violations == ()
    refs = References(features={"tokens": Feature("tokens", "Tokens", NOW, meter_key="input_tokens")})
    content.validate(refs)
    assert content.same_definition(sample_plan())
