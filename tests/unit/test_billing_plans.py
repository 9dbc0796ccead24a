"""Billing's plan snapshot: catalog protos → rating prices, meters, and a lossless JSON round trip.

The builders here are shared by the other billing unit tests (subscriptions, charges, invoicing).
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.plans import (
    AddOnInstanceType,
    AddOnVersion,
    MeterRef,
    PlanVersion,
    TaxBehavior,
    add_on_from_json,
    add_on_from_proto,
    add_on_to_json,
    plan_from_json,
    plan_from_proto,
    plan_proto,
    plan_to_json,
    price_from_proto,
    rate_card_from_json,
    rate_card_proto,
    rate_card_to_json,
)
from billing.rating import (
    Commitments,
    Discounts,
    DynamicPrice,
    FlatPrice,
    MatrixPrice,
    PackagePrice,
    PaymentTerm,
    PercentagePrice,
    Tier,
    TieredMode,
    TieredPrice,
    UnitPrice,
    combination,
)
from metering.catalog.v1 import catalog_pb2 as pb
from meterlib.errors import FailedPrecondition, InvalidArgument
from meterlib.periods import Cadence

D = Decimal
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

FEATURES = {
    "tokens": pb.Feature(key="tokens", meter_key="tokens_meter", meter_group_filters={"model": "gpt"}),
    "calls": pb.Feature(key="calls", meter_key="api_calls"),
    "support": pb.Feature(key="support"),
}


# -- builders (shared with the other billing tests) ------------------------------------------------


def money(amount: str, currency: str = "USD") -> dict[str, str]:
    """A Money in the proto3 JSON mapping."""
    return {"amount": amount, "currency": currency}


def card(key: str, price: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A RateCard dict; usage prices default to feature ``calls``, cadence P1M."""
    result: dict[str, Any] = {"key": key, "name": key.replace("_", " ").title(), "billing_cadence": "P1M"}
    if price is not None:
        result["price"] = price
        if "flat" not in price:
            result["feature_key"] = "calls"
    result.update(fields)
    return result


def flat(amount: str, term: str = "PAYMENT_TERM_IN_ADVANCE") -> dict[str, Any]:
    """A flat price dict."""
    return {"flat": {"amount": money(amount), "payment_term": term}}


def unit(amount: str) -> dict[str, Any]:
    """A unit price dict."""
    return {"unit": {"amount": money(amount)}}


def make_plan(
    cards: list[dict[str, Any]] | None = None,
    *,
    key: str = "pro",
    version: int = 1,
    cadence: str = "P1M",
    phases: list[dict[str, Any]] | None = None,
    currency: str = "USD",
) -> PlanVersion:
    """A plan snapshot from catalog protos: one open phase of ``cards``, or the given phases."""
    if phases is None:
        phases = [{"key": "default", "rate_cards": cards or []}]
    message = json_format.ParseDict(
        {"key": key, "name": key.title(), "currency": currency, "billing_cadence": cadence, "phases": phases},
        pb.Plan(),
    )
    message.version = version  # output only: not accepted by the JSON mapping of a request
    return plan_from_proto(message, FEATURES)


def make_add_on(
    key: str, cards: list[dict[str, Any]], *, multiple: bool = False, compatible: tuple[str, ...] = ()
) -> AddOnVersion:
    """An add-on snapshot from catalog protos."""
    message = json_format.ParseDict(
        {
            "key": key,
            "currency": "USD",
            "instance_type": "ADD_ON_INSTANCE_TYPE_MULTIPLE" if multiple else "ADD_ON_INSTANCE_TYPE_SINGLE",
            "rate_cards": cards,
            "compatible_plan_keys": list(compatible),
        },
        pb.AddOn(),
    )
    message.version = 1
    return add_on_from_proto(message, FEATURES)


def example_catalog(name: str) -> pb.CatalogDocument:
    """An example catalog document of examples/, as catalog protos."""
    document = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    return json_format.ParseDict(document, pb.CatalogDocument())


def example_plans(name: str) -> dict[str, PlanVersion]:
    """The plans of an example catalog, version 1, converted with its features."""
    catalog = example_catalog(name)
    features = {feature.key: feature for feature in catalog.features}
    plans = {}
    for message in catalog.plans:
        message.version = 1
        plans[message.key] = plan_from_proto(message, features)
    return plans


# -- conversion ------------------------------------------------------------------------------------


def _price(data: dict[str, Any]) -> object:
    return price_from_proto(json_format.ParseDict(data, pb.Price()))


def test_every_price_model_converts_to_the_rating_price() -> None:
    assert _price(flat("20")) == FlatPrice(D(20))
    assert _price(flat("9", "PAYMENT_TERM_IN_ARREARS")) == FlatPrice(D(9), PaymentTerm.IN_ARREARS)
    assert _price({"flat": {"amount": money("1")}}).payment_term is PaymentTerm.IN_ADVANCE  # type: ignore[attr-defined]
    assert _price(unit("0.000002")) == UnitPrice(D("0.000002"))
    tiered = {
        "tiered": {
            "mode": "TIERED_MODE_GRADUATED",
            "tiers": [
                {"up_to": {"value": "5"}, "flat_amount": money("100")},
                {"unit_amount": money("1")},
            ],
        }
    }
    assert _price(tiered) == TieredPrice(
        TieredMode.GRADUATED, (Tier(D(5), flat_amount=D(100)), Tier(None, unit_amount=D(1)))
    )
    package = {"package": {"amount": money("15"), "quantity_per_package": {"value": "10"}}}
    assert _price(package) == PackagePrice(D(15), D(10))
    assert _price({"dynamic": {}}) == DynamicPrice(D(1))
    assert _price({"dynamic": {"multiplier": {"value": "1.33333"}}}) == DynamicPrice(D("1.33333"))
    percentage = {"percentage": {"percent": {"value": "2.9"}, "fixed_amount_per_event": money("0.30")}}
    assert _price(percentage) == PercentagePrice(D("2.9"), D("0.30"))
    matrix = {
        "matrix": {
            "dimensions": ["model"],
            "entries": [{"dimension_values": {"model": "big"}, "price": unit("2")}],
            "default_price": unit("1"),
        }
    }
    converted = _price(matrix)
    assert isinstance(converted, MatrixPrice)
    assert converted.price_of(combination({"model": "big"})) == UnitPrice(D(2))
    assert converted.price_of(combination({"model": "small"})) == UnitPrice(D(1))


def test_invalid_content_is_one_invalid_argument_with_the_field_path() -> None:
    with pytest.raises(InvalidArgument) as error:
        _price({"unit": {"amount": money("1e5")}})
    assert error.value.violations[0].field == "price.unit.amount.amount"
    with pytest.raises(InvalidArgument, match="price"):
        _price({"tiered": {"mode": "TIERED_MODE_VOLUME", "tiers": [{"up_to": {"value": "5"}}]}})
    with pytest.raises(InvalidArgument):
        price_from_proto(pb.Price())


def test_rate_card_keeps_adjustments_entitlement_tax_and_meter() -> None:
    plan = make_plan(
        [
            card(
                "tokens",
                unit("0.01"),
                feature_key="tokens",
                discounts={
                    "usage": {"quantity": {"value": "1000"}},
                    "percentage": {"percent": {"value": "10"}},
                },
                commitments={"minimum_amount": money("5"), "maximum_amount": money("50")},
                entitlement_template={
                    "metered": {"issue_after_reset": {"value": "100"}, "is_soft_limit": True}
                },
                tax={"tax_code": "txcd_1", "behavior": "TAX_BEHAVIOR_EXCLUSIVE"},
            ),
            card("support", feature_key="support", entitlement_template={"boolean": {}}, billing_cadence=""),
        ]
    )
    tokens, support = plan.phases[0].rate_cards
    assert tokens.discounts == Discounts(D(1000), D(10))
    assert tokens.commitments == Commitments(D(5), D(50))
    assert tokens.meter == MeterRef("tokens", "tokens_meter", (("model", "gpt"),))
    assert dict(tokens.meter.filters) == {"model": "gpt"}
    assert tokens.entitlement is not None and tokens.entitlement.kind == "metered"
    assert tokens.entitlement.issue_after_reset == D(100) and tokens.entitlement.is_soft_limit
    assert tokens.tax is not None and tokens.tax.behavior is TaxBehavior.EXCLUSIVE
    assert tokens.is_usage_based and not tokens.is_flat
    assert support.price is None and support.meter is None and support.billing_cadence is None
    assert support.entitlement is not None and support.entitlement.kind == "boolean"
    assert rate_card_proto(tokens).key == "tokens"


def test_plan_phases_durations_and_cadence() -> None:
    plan = make_plan(
        phases=[
            {"key": "trial", "duration": "P14D", "rate_cards": []},
            {"key": "paid", "rate_cards": [card("base", flat("20"))]},
        ],
        cadence="P3M",
    )
    assert plan.billing_cadence == Cadence(months=3)
    assert [p.key for p in plan.phases] == ["trial", "paid"]
    assert plan.phases[0].duration == Cadence(seconds=14 * 86400)
    assert plan.phases[1].duration is None
    assert plan.phase("paid").rate_cards[0].is_flat
    with pytest.raises(KeyError):
        plan.phase("nope")


def test_a_usage_price_needs_its_features_meter() -> None:
    message = json_format.ParseDict(
        {
            "key": "p",
            "currency": "USD",
            "billing_cadence": "P1M",
            "phases": [{"key": "d", "rate_cards": [card("x", unit("1"), feature_key="unknown")]}],
        },
        pb.Plan(),
    )
    with pytest.raises(FailedPrecondition, match="unknown"):
        plan_from_proto(message, FEATURES)


def test_add_on_instance_type_and_compatibility() -> None:
    seats = make_add_on("seats", [card("seat", flat("5"))], multiple=True, compatible=("pro",))
    assert seats.instance_type is AddOnInstanceType.MULTIPLE
    assert seats.is_compatible_with(make_plan(key="pro"))
    assert not seats.is_compatible_with(make_plan(key="basic"))
    assert not seats.is_compatible_with(make_plan(key="pro", currency="EUR"))
    assert make_add_on("x", [card("a", flat("1"))]).instance_type is AddOnInstanceType.SINGLE


def test_llm_example_plans_convert() -> None:
    plans = example_plans("llm-provider")
    developer, scale = plans["developer"], plans["scale"]
    tokens = developer.phases[0].rate_cards[0]
    assert tokens.price == UnitPrice(D("0.000002")) and tokens.discounts.free_quantity == D(10000)
    assert tokens.meter == MeterRef("input_tokens", "input_tokens")
    assert [c.key for c in scale.phases[0].rate_cards] == [
        "input_tokens",
        "output_tokens",
        "fine_tuning",
        "priority_queue",
    ]
    assert scale.phases[0].rate_cards[2].meter == MeterRef("fine_tuning_hours", "fine_tuning_hours")


# -- storable snapshots ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["llm-provider", "api-platform", "cloud-infrastructure"])
def test_example_plans_round_trip_through_json(name: str) -> None:
    for plan in example_plans(name).values():
        stored = json.loads(json.dumps(plan_to_json(plan)))
        assert plan_from_json(stored) == plan
        assert plan_proto(plan_from_json(stored)) == plan_proto(plan)


def test_add_on_and_rate_card_round_trip_through_json() -> None:
    seats = make_add_on(
        "seats", [card("seat", flat("5")), card("t", unit("1"), feature_key="tokens")], multiple=True
    )
    assert add_on_from_json(json.loads(json.dumps(add_on_to_json(seats)))) == seats
    rate_card = seats.rate_cards[1]
    assert rate_card_from_json(json.loads(json.dumps(rate_card_to_json(rate_card)))) == rate_card


amounts = st.decimals(min_value=0, max_value=10**6, places=6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    flat_amount=amounts,
    unit_amount=amounts,
    free=st.none() | st.decimals(min_value=1, max_value=10**6, places=0),
    term=st.sampled_from(["PAYMENT_TERM_IN_ADVANCE", "PAYMENT_TERM_IN_ARREARS"]),
    cadence=st.sampled_from(["P1M", "P3M", "P1Y"]),
)
def test_plan_snapshot_round_trips(
    flat_amount: Decimal, unit_amount: Decimal, free: Decimal | None, term: str, cadence: str
) -> None:
    usage: dict[str, Any] = card("tokens", unit(str(unit_amount)), feature_key="tokens")
    if free is not None:
        usage["discounts"] = {"usage": {"quantity": {"value": str(free)}}}
    plan = make_plan([card("base", flat(str(flat_amount), term), billing_cadence=cadence), usage])
    assert plan_from_json(json.loads(json.dumps(plan_to_json(plan)))) == plan
