"""Validation through the public API: a representative set of the domain's rules (each is unit-tested in
tests/unit/test_catalog_domain.py), every violation of a request reported together, references judged
after field violations, and content of every price model kept exactly as sent."""

from __future__ import annotations

import grpc

from metering.catalog.v1 import catalog_pb2 as pb
from tests.integration.catalog.helpers import (
    IngestStub,
    Stub,
    add_on,
    card,
    create_feature,
    create_plan,
    dec,
    error_info,
    flat,
    get_plan,
    money,
    phase,
    plan,
    resource_info,
    rpc_error,
    tokens_meter,
    unit,
)
from tests.integration.ingest.helpers import assert_violations

CARD = "plan.phases[0].rate_cards"
"""The rate cards of a plan's first phase."""


def _tier(
    up_to: str | None, unit_amount: str = "", flat_amount: str = "", currency: str = "USD"
) -> pb.PriceTier:
    tier = pb.PriceTier()
    if up_to is not None:
        tier.up_to.CopyFrom(dec(up_to))
    if unit_amount:
        tier.unit_amount.CopyFrom(money(unit_amount, currency))
    if flat_amount:
        tier.flat_amount.CopyFrom(money(flat_amount, currency))
    return tier


def _tiered(*tiers: pb.PriceTier, mode: int = pb.TIERED_MODE_GRADUATED) -> pb.Price:
    return pb.Price(tiered=pb.TieredPrice(mode=mode, tiers=list(tiers)))  # type: ignore[arg-type]


async def _metered_features(catalog: Stub, ingest: IngestStub) -> None:
    await tokens_meter(ingest)
    await create_feature(catalog, "tokens", "input_tokens")
    await create_feature(catalog, "seats")


async def test_every_violation_of_a_plan_is_reported_at_once(catalog: Stub, ingest: IngestStub) -> None:
    await _metered_features(catalog, ingest)
    bad = plan(
        "pro",
        phase(
            "trial",
            # usage price without a feature and on another cadence than the plan's
            card("free_tokens", unit("0"), cadence="P1Y"),
            duration="",  # not the last phase: needs a duration
        ),
        phase(
            "paid",
            # tiers not increasing, an amount in another currency
            card(
                "tokens",
                _tiered(_tier("100", "0.01"), _tier("50", "0.02", currency="EUR"), _tier(None, "0.01")),
                feature="tokens",
            ),
            card("tokens", flat("-5")),  # repeated key, negative amount
            card("output", unit("0.x"), feature="tokens"),  # not a decimal
        ),
    )
    bad.name = "n" * 257
    error = await rpc_error(create_plan(catalog, bad))

    fields = assert_violations(
        error,
        "plan.name",
        "plan.phases[0].duration",
        f"{CARD}[0].feature_key",
        "plan.phases[0].rate_cards[0].billing_cadence",
        "plan.phases[1].rate_cards[0].price.tiered.tiers[1].up_to",
        "plan.phases[1].rate_cards[0].price.tiered.tiers[1].unit_amount.currency",
        "plan.phases[1].rate_cards[1].key",
        "plan.phases[1].rate_cards[1].price.flat.amount.amount",
        "plan.phases[1].rate_cards[2].price.unit.amount.amount",
    )
    assert len(fields) == len(set(fields))
    assert await catalog.ListPlans(pb.ListPlansRequest()) == pb.ListPlansResponse(page={})


async def test_field_violations_come_before_reference_errors(catalog: Stub) -> None:
    error = await rpc_error(
        create_plan(catalog, plan("pro", phase("default", card("x", unit("1"), feature="nope")), currency=""))
    )
    assert_violations(error, "plan.currency")

    error = await rpc_error(
        create_plan(catalog, plan("pro", phase("default", card("x", unit("1"), feature="nope"))))
    )
    assert resource_info(error) == ("feature", "nope")


async def test_a_usage_price_needs_a_feature_with_a_meter(catalog: Stub, ingest: IngestStub) -> None:
    await _metered_features(catalog, ingest)
    error = await rpc_error(
        create_plan(catalog, plan("pro", phase("default", card("seats", unit("1"), feature="seats"))))
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "plan.phases[0].rate_cards[0].feature_key" in error.details()
    assert "'seats' has no meter" in error.details()
    info = error_info(error)
    assert (info.reason, dict(info.metadata)) == (
        "ERROR_REASON_FEATURE_NOT_METERED",
        {"fields": "plan.phases[0].rate_cards[0].feature_key"},
    )


async def test_a_matrix_price_uses_dimensions_of_the_features_meter(
    catalog: Stub, ingest: IngestStub
) -> None:
    await _metered_features(catalog, ingest)

    def matrix(*dimensions: str) -> pb.Price:
        return pb.Price(
            matrix=pb.MatrixPrice(
                dimensions=list(dimensions),
                default_price=pb.UsagePrice(unit=pb.UnitPrice(amount=money("0.01"))),
            )
        )

    error = await rpc_error(
        create_plan(
            catalog, plan("pro", phase("default", card("tokens", matrix("model", "tier"), feature="tokens")))
        )
    )
    assert_violations(error, "plan.phases[0].rate_cards[0].price.matrix.dimensions[1]")
    created = await create_plan(
        catalog, plan("pro", phase("default", card("tokens", matrix("model", "region"), feature="tokens")))
    )
    assert list(created.phases[0].rate_cards[0].price.matrix.dimensions) == ["model", "region"]


async def test_rate_card_cadence_equals_the_plans_or_a_multiple_for_flat_prices(catalog: Stub) -> None:
    created = await create_plan(
        catalog, plan("pro", phase("default", card("yearly", flat("100"), cadence="P12M")))
    )
    assert created.phases[0].rate_cards[0].billing_cadence == "P1Y"
    error = await rpc_error(
        create_plan(catalog, plan("team", phase("default", card("weekly", flat("5"), cadence="P1W"))))
    )
    assert_violations(error, "plan.phases[0].rate_cards[0].billing_cadence")


async def test_an_update_is_validated_like_a_create_with_its_version(catalog: Stub) -> None:
    await create_plan(catalog, plan("pro"))
    error = await rpc_error(
        catalog.UpdateDraftPlan(pb.UpdateDraftPlanRequest(plan=plan("pro", cadence=""), version=0))
    )
    assert_violations(error, "version", "plan.billing_cadence")


async def test_add_on_rules(catalog: Stub, ingest: IngestStub) -> None:
    await _metered_features(catalog, ingest)
    error = await rpc_error(
        catalog.CreateAddOn(
            pb.CreateAddOnRequest(
                add_on=add_on(
                    "boost",
                    card("tokens", unit("0.01"), feature="tokens"),  # usage price on a MULTIPLE add-on
                    card("fee", flat("5", "EUR")),  # not the add-on's currency
                    multiple=True,
                    compatible=("pro", "pro"),
                )
            )
        )
    )
    assert_violations(
        error,
        "add_on.rate_cards[0].price",
        "add_on.rate_cards[1].price.flat.amount.currency",
        "add_on.compatible_plan_keys[1]",
    )
    error = await rpc_error(
        catalog.CreateAddOn(pb.CreateAddOnRequest(add_on=add_on("boost", compatible=("pro",))))
    )
    assert resource_info(error) == ("plan", "pro")


async def test_content_of_every_price_model_is_kept_exactly(catalog: Stub, ingest: IngestStub) -> None:
    await _metered_features(catalog, ingest)
    await create_feature(catalog, "sso")
    usage = {"feature": "tokens"}
    cards = [
        card(
            "platform",
            pb.Price(flat=pb.FlatPrice(amount=money("20"), payment_term=pb.PAYMENT_TERM_IN_ARREARS)),
        ),
        card("setup", flat("99.99"), cadence=""),
        card("annual", flat("100"), cadence="P1Y"),
        card(
            "units",
            unit("0.00002"),
            discounts=pb.Discounts(
                usage=pb.UsageDiscount(quantity=dec("1000")),
                percentage=pb.PercentageDiscount(percent=dec("10")),
            ),
            commitments=pb.Commitments(minimum_amount=money("10"), maximum_amount=money("500")),
            tax=pb.TaxConfig(tax_code="txcd_10103000", behavior=pb.TAX_BEHAVIOR_EXCLUSIVE),
            entitlement_template=pb.EntitlementTemplate(
                metered=pb.MeteredEntitlementTemplate(
                    usage_period="P1M",
                    issue_after_reset=dec("1000000"),
                    issue_after_reset_priority=2,
                    is_soft_limit=True,
                    preserve_overage_at_reset=True,
                )
            ),
            metadata={"unit": "token"},
            **usage,
        ),
        card(
            "graduated",
            _tiered(
                _tier("5", flat_amount="100"),
                _tier("10", flat_amount="50"),
                _tier("15", "5"),
                _tier(None, "1"),
            ),
            **usage,
        ),
        card(
            "volume",
            _tiered(_tier("5", flat_amount="100"), _tier(None, "5"), mode=pb.TIERED_MODE_VOLUME),
            **usage,
        ),
        card(
            "package",
            pb.Price(package=pb.PackagePrice(amount=money("15"), quantity_per_package=dec("10"))),
            **usage,
        ),
        card("dynamic", pb.Price(dynamic=pb.DynamicPrice(multiplier=dec("1.33333"))), **usage),
        card(
            "percentage",
            pb.Price(
                percentage=pb.PercentagePrice(
                    percent=dec("2.9"),
                    fixed_amount_per_event=money("0.3"),
                    minimum_amount_per_event=money("0.5"),
                    maximum_amount_per_event=money("10"),
                )
            ),
            **usage,
        ),
        card(
            "matrix",
            pb.Price(
                matrix=pb.MatrixPrice(
                    dimensions=["model", "region"],
                    entries=[
                        pb.MatrixPriceEntry(
                            dimension_values={"model": "gpt-4", "region": "eu"},
                            price=pb.UsagePrice(unit=pb.UnitPrice(amount=money("0.03"))),
                        )
                    ],
                    default_price=pb.UsagePrice(unit=pb.UnitPrice(amount=money("0"))),
                )
            ),
            **usage,
        ),
        card("sso", feature="sso", entitlement_template=pb.EntitlementTemplate(boolean={})),
        card(
            "seats",
            feature="seats",
            entitlement_template=pb.EntitlementTemplate(static={"config": '{"seats": 10}'}),
        ),
    ]
    for c in cards:
        c.name = c.key.title()
    content = plan(
        "everything", phase("trial", card("trial_fee", flat("0")), duration="P2W"), phase("paid", *cards)
    )
    content.phases[0].name, content.phases[1].name = "Trial", "Paid"
    content.phases[0].rate_cards[0].name = "Trial fee"

    created = await create_plan(catalog, content)
    assert list(created.phases) == list(content.phases)
    assert list((await get_plan(catalog, "everything", version=1)).phases) == list(content.phases)
