"""Subscriptions through the public API: plans read from the real catalog, entitlements provisioned in the
real entitlements service, everything on one fixed clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from metering.billing.v1 import billing_pb2 as pb
from metering.catalog.v1 import catalog_pb2 as cpb
from metering.catalog.v1 import catalog_pb2_grpc
from metering.entitlements.v1 import entitlements_pb2 as epb
from meterlib.clock import FixedClock
from meterlib.embedded import free_port
from meterlib.server import ServiceRunner
from tests.integration.billing.conftest import ServeBilling
from tests.integration.billing.helpers import (
    NOW,
    Billing,
    Ent,
    create_customer,
    customer,
    delete_customer,
    dt,
    error_info,
    md,
    rpc_error,
    ts,
    update_customer,
    violated_fields,
)
from tests.integration.catalog.helpers import add_on, card, dec, flat, phase, plan, publish_plan, unit
from tests.integration.entitlements.helpers import plain_feature, tokens_feature

Catalog = catalog_pb2_grpc.CatalogServiceStub
pytestmark = pytest.mark.asyncio

DAY = timedelta(days=1)
JUNE_1 = datetime(2024, 6, 1, tzinfo=UTC)
JULY_1 = datetime(2024, 7, 1, tzinfo=UTC)
ACTIVE = pb.SUBSCRIPTION_STATUS_ACTIVE
SCHEDULED = pb.SUBSCRIPTION_STATUS_SCHEDULED
CANCELING = pb.SUBSCRIPTION_STATUS_CANCELING
CANCELED = pb.SUBSCRIPTION_STATUS_CANCELED
IMMEDIATE = pb.CHANGE_TIMING_IMMEDIATE
NEXT_CYCLE = pb.CHANGE_TIMING_NEXT_BILLING_CYCLE


# --- the catalog --------------------------------------------------------------------------------------


def metered(amount: str, usage_period: str = "") -> cpb.EntitlementTemplate:
    return cpb.EntitlementTemplate(
        metered=cpb.MeteredEntitlementTemplate(usage_period=usage_period, issue_after_reset=dec(amount))
    )


BOOLEAN = cpb.EntitlementTemplate(boolean=cpb.BooleanEntitlementTemplate())


def pro(tokens: str = "1000", fee: str = "20") -> cpb.Plan:
    """A 14-day trial with SSO, then a monthly fee, metered tokens (with a monthly allowance) and SSO."""
    return plan(
        "pro",
        phase("trial", card("sso", feature="sso", cadence="", entitlement_template=BOOLEAN), duration="P14D"),
        phase(
            "default",
            card("base", flat(fee)),
            card("tokens", unit("0.001"), feature="gpt4_tokens", entitlement_template=metered(tokens)),
            card("sso", feature="sso", cadence="", entitlement_template=BOOLEAN),
        ),
    )


def basic() -> cpb.Plan:
    """One phase: a monthly fee and metered tokens with a smaller allowance."""
    return plan(
        "basic",
        phase(
            "default",
            card("base", flat("10")),
            card("tokens", unit("0.002"), feature="gpt4_tokens", entitlement_template=metered("100")),
        ),
    )


async def publish(catalog: Catalog, content: cpb.Plan, at: datetime = NOW, namespace: Any = None) -> cpb.Plan:
    """Create the plan (version 1) or a new draft version of it with this content, and publish it at ``at``."""
    try:
        created = (await catalog.CreatePlan(cpb.CreatePlanRequest(plan=content), metadata=namespace)).plan
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
        draft = await catalog.NewDraftPlanVersion(
            cpb.NewDraftPlanVersionRequest(
                request_id=f"draft-{content.key}-{at.isoformat()}", key=content.key
            ),
            metadata=namespace,
        )
        created = (
            await catalog.UpdateDraftPlan(
                cpb.UpdateDraftPlanRequest(plan=content, version=draft.plan.version), metadata=namespace
            )
        ).plan
    return await publish_plan(catalog, content.key, created.version, at=at, md=namespace)


async def publish_add_on(catalog: Catalog, content: cpb.AddOn, at: datetime = NOW) -> cpb.AddOn:
    created = (await catalog.CreateAddOn(cpb.CreateAddOnRequest(add_on=content))).add_on
    request = cpb.PublishAddOnRequest(key=content.key, version=created.version, effective_from=ts(at))
    return (await catalog.PublishAddOn(request)).add_on


@pytest.fixture
async def catalog(catalog_server: ServiceRunner) -> AsyncIterator[Catalog]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{catalog_server.port}") as channel:
        yield catalog_pb2_grpc.CatalogServiceStub(channel)


@pytest.fixture
async def world(ingest: Any, catalog: Catalog, billing: Billing) -> None:
    """Features (metered gpt4_tokens, boolean sso), plans pro and basic published now, customer acme."""
    await tokens_feature(ingest, catalog)
    await plain_feature(catalog, "sso")
    await publish(catalog, pro())
    await publish(catalog, basic())
    await create_customer(billing)


@pytest.fixture
async def ingest(ingest_server: ServiceRunner) -> AsyncIterator[Any]:
    from metering.ingest.v1 import ingest_pb2_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest_server.port}") as channel:
        yield ingest_pb2_grpc.IngestServiceStub(channel)


# --- calls --------------------------------------------------------------------------------------------


async def subscribe(
    billing: Billing, request_id: str = "sub-1", plan_key: str = "pro", namespace: Any = None, **fields: Any
) -> pb.Subscription:
    fields.setdefault("customer_key", "acme")
    request = pb.CreateSubscriptionRequest(request_id=request_id, plan_key=plan_key, **fields)
    return (await billing.CreateSubscription(request, metadata=namespace)).subscription


async def get(billing: Billing, subscription_id: str, namespace: Any = None) -> pb.Subscription:
    return (
        await billing.GetSubscription(pb.GetSubscriptionRequest(id=subscription_id), metadata=namespace)
    ).subscription


async def cancel(
    billing: Billing, sub: pb.Subscription, timing: int, request_id: str = "cancel-1"
) -> pb.Subscription:
    request = pb.CancelSubscriptionRequest(request_id=request_id, subscription_id=sub.id, timing=timing)  # type: ignore[arg-type]
    return (await billing.CancelSubscription(request)).subscription


async def check(
    ent: Ent, feature: str, customer_key: str = "acme", at: datetime | None = None
) -> epb.CheckResponse:
    request = epb.CheckRequest(customer_key=customer_key, feature_key=feature)
    if at is not None:
        request.at.CopyFrom(ts(at))
    response: epb.CheckResponse = await ent.Check(request)
    return response


async def entitlement(ent: Ent, entitlement_id: str) -> epb.Entitlement:
    ref = epb.EntitlementRef(entitlement_id=entitlement_id)
    return (await ent.GetEntitlement(epb.GetEntitlementRequest(entitlement=ref))).entitlement


def items(sub: pb.Subscription) -> list[tuple[str, str, str]]:
    """(phase or add-on, item key, whether it has an entitlement) of each item, in the order given."""
    return [(i.phase_key or i.add_on_key, i.key, "E" if i.entitlement_id else "-") for i in sub.items]


def item(sub: pb.Subscription, key: str, phase_key: str = "default") -> pb.SubscriptionItem:
    """The first item of that key in that phase (or of an add-on): the current one, when there is one."""
    return next(i for i in sub.items if i.key == key and (i.phase_key == phase_key or i.add_on_key))


async def eventually(billing: Billing, subscription_id: str, ready: Any) -> pb.Subscription:
    """The subscription once ``ready(sub)`` holds (the provisioning loop runs every 50 ms in tests)."""
    for _ in range(100):
        sub = await get(billing, subscription_id)
        if ready(sub):
            return sub
        await asyncio.sleep(0.05)
    raise AssertionError(f"never ready: {sub}")


# --- creating -----------------------------------------------------------------------------------------


async def test_create_from_the_version_effective_at_the_start(
    world: None, billing: Billing, catalog: Catalog
) -> None:
    await publish(catalog, pro(tokens="5000"), at=NOW + 30 * DAY)
    await create_customer(billing, customer("beta", ["beta-prod"]))

    now = await subscribe(billing)
    later = await subscribe(billing, "sub-2", customer_key="beta", start_time=ts(NOW + 40 * DAY))

    assert (now.plan_key, now.plan_version, now.status, now.currency) == ("pro", 1, ACTIVE, "USD")
    assert dt(now.start_time) == NOW and dt(now.billing_anchor) == NOW and now.billing_cadence == "P1M"
    assert (dt(now.current_period.start_time), dt(now.current_period.end_time)) == (NOW, NOW + 30 * DAY)
    assert (later.plan_version, later.status) == (2, SCHEDULED)
    assert not later.HasField("current_period")


async def test_create_from_a_given_version_and_refusals(
    world: None, billing: Billing, catalog: Catalog
) -> None:
    await publish(catalog, pro(tokens="5000"), at=NOW + 30 * DAY)

    sub = await subscribe(billing, plan_version=2, start_time=ts(NOW + 31 * DAY))
    assert (sub.plan_version, sub.status) == (2, SCHEDULED)

    await create_customer(billing, customer("beta", ["beta-prod"]))
    # Version 1 ends when version 2 starts: it cannot be subscribed to from after that.
    ended = await rpc_error(
        subscribe(billing, "sub-2", customer_key="beta", plan_version=1, start_time=ts(NOW + 31 * DAY))
    )
    assert ended.code() == grpc.StatusCode.FAILED_PRECONDITION
    missing = await rpc_error(subscribe(billing, "sub-3", customer_key="beta", plan_version=7))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    unknown_plan = await rpc_error(subscribe(billing, "sub-4", plan_key="nope", customer_key="beta"))
    assert unknown_plan.code() == grpc.StatusCode.NOT_FOUND
    unknown_customer = await rpc_error(subscribe(billing, "sub-5", customer_key="nobody"))
    assert unknown_customer.code() == grpc.StatusCode.NOT_FOUND


async def test_every_violation_at_once(billing: Billing) -> None:
    request = pb.CreateSubscriptionRequest(
        customer_key="Bad Key",
        plan_version=-1,
        add_ons=[pb.AddOnSelection(add_on_key="x", quantity=-1), pb.AddOnSelection(add_on_key="x")],
    )
    error = await rpc_error(billing.CreateSubscription(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violated_fields(error)) == {
        "request_id",
        "customer_key",
        "plan_key",
        "plan_version",
        "add_ons[0].quantity",
        "add_ons[1].add_on_key",
    }
    change = pb.ChangeSubscriptionPlanRequest(subscription_id="not-a-uuid")
    error = await rpc_error(billing.ChangeSubscriptionPlan(change))
    assert set(violated_fields(error)) == {"request_id", "subscription_id", "timing", "plan_key"}
    error = await rpc_error(billing.CancelSubscription(pb.CancelSubscriptionRequest(request_id="r")))
    assert set(violated_fields(error)) == {"subscription_id", "timing"}


async def test_anchor_and_phases_laid_out_in_time(world: None, billing: Billing) -> None:
    sub = await subscribe(billing, billing_anchor=ts(JUNE_1))

    assert (dt(sub.current_period.start_time), dt(sub.current_period.end_time)) == (
        NOW,
        JULY_1,
    )
    assert [
        (p.key, dt(p.start_time), dt(p.end_time) if p.HasField("end_time") else None) for p in sub.phases
    ] == [
        ("trial", NOW, NOW + 14 * DAY),
        ("default", NOW + 14 * DAY, None),
    ]
    # The current trial item first; the default phase's items follow, in the plan's order.
    assert [(i.phase_key, i.key) for i in sub.items] == [
        ("trial", "sso"),
        ("default", "base"),
        ("default", "tokens"),
        ("default", "sso"),
    ]
    tokens = item(sub, "tokens")
    assert tokens.rate_card.price.unit.amount.amount == "0.001"
    assert dt(tokens.active_from) == NOW + 14 * DAY and not tokens.HasField("active_to")


async def test_start_later_is_scheduled_and_entitlements_start_with_it(
    world: None, billing: Billing, ent: Ent
) -> None:
    start = NOW + 10 * DAY
    sub = await subscribe(billing, start_time=ts(start))

    assert sub.status == SCHEDULED
    trial_sso = item(sub, "sso", "trial")
    assert trial_sso.entitlement_id
    assert dt((await entitlement(ent, trial_sso.entitlement_id)).active_from) == start
    assert not (await check(ent, "sso")).has_access
    assert (await check(ent, "sso", at=start + DAY)).has_access


# --- entitlements -------------------------------------------------------------------------------------


async def test_entitlements_are_provisioned_and_follow_phases(
    world: None, billing: Billing, ent: Ent, clock: FixedClock
) -> None:
    sub = await subscribe(billing)

    # SSO in the trial now; the tokens entitlement (another feature) exists already, from the trial's end.
    assert items(sub) == [
        ("trial", "sso", "E"),
        ("default", "base", "-"),
        ("default", "tokens", "E"),
        ("default", "sso", "-"),
    ]
    assert (await check(ent, "sso")).has_access
    tokens = await entitlement(ent, item(sub, "tokens").entitlement_id)
    assert tokens.metered.issue_after_reset.value == "1000"
    assert tokens.metered.usage_period.interval == "P1M"
    assert dt(tokens.metered.usage_period.anchor) == NOW
    assert dt(tokens.active_from) == NOW + 14 * DAY
    assert dict(tokens.metadata)["subscription_id"] == sub.id
    trial = await entitlement(ent, item(sub, "sso", "trial").entitlement_id)
    assert dt(trial.active_to) == NOW + 14 * DAY

    # After the trial, the loop hands SSO over to the default phase's item.
    clock.advance(15 * DAY)
    after = await eventually(billing, sub.id, lambda s: item(s, "sso").entitlement_id)
    assert (await check(ent, "sso")).has_access
    assert (await entitlement(ent, item(after, "sso", "trial").entitlement_id)).HasField("delete_time")
    check_tokens = await check(ent, "gpt4_tokens")
    assert check_tokens.has_access and check_tokens.balance.value == "1000"


async def test_more_concurrent_subscriptions_than_database_connections_all_provision(
    world: None, billing: Billing, ent: Ent
) -> None:
    """Three times as many CreateSubscription calls in flight as billing has pooled connections (10 by
    default): each provisions its entitlements after its commit, on one connection at a time."""
    keys = [f"c{i:02d}" for i in range(30)]
    for key in keys:
        await create_customer(billing, customer(key, [f"{key}-prod"]))
    subs = await asyncio.wait_for(
        asyncio.gather(*(subscribe(billing, f"sub-{key}", customer_key=key) for key in keys)), timeout=60
    )
    assert len({sub.id for sub in subs}) == len(keys)
    for sub in subs:
        assert item(sub, "sso", "trial").entitlement_id
        assert item(sub, "tokens").entitlement_id


async def test_cancel_immediately_ends_the_entitlements(
    world: None, billing: Billing, ent: Ent, clock: FixedClock
) -> None:
    sub = await subscribe(billing)
    clock.advance(DAY)

    canceled = await cancel(billing, sub, pb.CANCEL_TIMING_IMMEDIATE)

    assert canceled.status == CANCELED and dt(canceled.end_time) == NOW + DAY
    assert not (await check(ent, "sso")).has_access
    for i in canceled.items:
        if i.entitlement_id:
            assert (await entitlement(ent, i.entitlement_id)).HasField("delete_time")
    # Cancelling a canceled subscription returns it; undo is refused.
    again = await cancel(billing, sub, pb.CANCEL_TIMING_END_OF_PERIOD, "cancel-2")
    assert again.status == CANCELED
    error = await rpc_error(
        billing.UndoCancelSubscription(pb.UndoCancelSubscriptionRequest(subscription_id=sub.id))
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_cancel_at_the_end_of_the_period_and_undo(
    world: None, billing: Billing, ent: Ent, clock: FixedClock
) -> None:
    sub = await subscribe(billing, billing_anchor=ts(JUNE_1))
    clock.advance(DAY)

    canceling = await cancel(billing, sub, pb.CANCEL_TIMING_END_OF_PERIOD)

    end = JULY_1
    assert canceling.status == CANCELING and dt(canceling.end_time) == end
    trial_sso = await entitlement(ent, item(canceling, "sso", "trial").entitlement_id)
    assert dt(trial_sso.active_to) == NOW + 14 * DAY  # the trial ends first anyway
    tokens = await entitlement(ent, item(canceling, "tokens").entitlement_id)
    assert dt(tokens.active_to) == end
    assert (await check(ent, "sso")).has_access

    undone = (
        await billing.UndoCancelSubscription(pb.UndoCancelSubscriptionRequest(subscription_id=sub.id))
    ).subscription
    assert undone.status == ACTIVE and not undone.HasField("end_time")
    tokens_again = await entitlement(ent, item(undone, "tokens").entitlement_id)
    assert not tokens_again.HasField("active_to") and not tokens_again.HasField("delete_time")
    # Undoing again changes nothing.
    same = (
        await billing.UndoCancelSubscription(pb.UndoCancelSubscriptionRequest(subscription_id=sub.id))
    ).subscription
    assert same.update_time == undone.update_time


# --- plan changes -------------------------------------------------------------------------------------


async def change(
    billing: Billing,
    sub: pb.Subscription,
    plan_key: str,
    timing: int,
    request_id: str = "change-1",
    **fields: Any,
) -> pb.Subscription:
    request = pb.ChangeSubscriptionPlanRequest(
        request_id=request_id,
        subscription_id=sub.id,
        plan_key=plan_key,
        timing=timing,
        **fields,  # type: ignore[arg-type]
    )
    return (await billing.ChangeSubscriptionPlan(request)).subscription


async def test_change_plan_immediately_replaces_items_and_entitlements(
    world: None, billing: Billing, ent: Ent, clock: FixedClock
) -> None:
    sub = await subscribe(billing, "sub-b", plan_key="basic")
    old_tokens = item(sub, "tokens").entitlement_id
    clock.advance(5 * DAY)

    changed = await change(billing, sub, "pro", IMMEDIATE)

    assert (changed.plan_key, changed.plan_version, changed.status) == ("pro", 1, ACTIVE)
    assert not changed.HasField("pending_change")
    assert (await entitlement(ent, old_tokens)).HasField("delete_time")
    assert (await check(ent, "sso")).has_access  # pro's trial
    basic_tokens = [i for i in changed.items if i.key == "tokens" and dt(i.active_from) == NOW]
    assert dt(basic_tokens[0].active_to) == NOW + 5 * DAY
    # The billing anchor is kept.
    assert dt(changed.billing_anchor) == NOW


async def test_change_plan_at_the_next_cycle_is_pending(
    world: None, billing: Billing, ent: Ent, clock: FixedClock
) -> None:
    sub = await subscribe(billing, "sub-b", plan_key="basic")
    clock.advance(5 * DAY)

    changed = await change(billing, sub, "pro", NEXT_CYCLE)

    boundary = NOW + 30 * DAY
    assert (changed.plan_key, changed.plan_version) == ("basic", 1)
    assert (changed.pending_change.plan_key, dt(changed.pending_change.effective_time)) == ("pro", boundary)
    tokens = await entitlement(ent, item(changed, "tokens").entitlement_id)
    assert dt(tokens.active_to) == boundary
    # A second change while one is pending is refused.
    error = await rpc_error(change(billing, sub, "pro", IMMEDIATE, "change-2"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION

    clock.advance(26 * DAY)
    after = await eventually(
        billing,
        sub.id,
        lambda s: any(i.entitlement_id for i in s.items if i.key == "sso" and i.phase_key == "trial"),
    )
    assert (after.plan_key, after.status) == ("pro", ACTIVE) and not after.HasField("pending_change")
    assert (await check(ent, "sso")).has_access


async def test_migrate_to_a_newer_version_only(
    world: None, billing: Billing, catalog: Catalog, clock: FixedClock
) -> None:
    sub = await subscribe(billing, "sub-b", plan_key="basic")
    v2 = basic()
    v2.phases[0].rate_cards[0].price.flat.amount.amount = "12"
    await publish(catalog, v2, at=NOW + DAY)
    clock.advance(2 * DAY)

    request = pb.MigrateSubscriptionRequest(request_id="m-1", subscription_id=sub.id, timing=IMMEDIATE)
    migrated = (await billing.MigrateSubscription(request)).subscription

    assert (migrated.plan_key, migrated.plan_version) == ("basic", 2)
    assert item(migrated, "base").rate_card.price.flat.amount.amount == "12"
    older = pb.MigrateSubscriptionRequest(
        request_id="m-2", subscription_id=sub.id, target_version=1, timing=IMMEDIATE
    )
    error = await rpc_error(billing.MigrateSubscription(older))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not newer" in (error.details() or "")


# --- add-ons ------------------------------------------------------------------------------------------


async def test_add_ons_attached_changed_and_removed(
    world: None, billing: Billing, catalog: Catalog, clock: FixedClock
) -> None:
    await publish_add_on(catalog, add_on("seats", card("seat", flat("5")), multiple=True))
    await publish_add_on(catalog, add_on("eur_extra", currency="EUR"))
    sub = await subscribe(billing, add_ons=[pb.AddOnSelection(add_on_key="seats", quantity=2)])
    assert [(a.add_on_key, a.add_on_version, a.quantity) for a in sub.add_ons] == [("seats", 1, 2)]
    assert item(sub, "seat").quantity == 2
    clock.advance(DAY)

    async def set_seats(quantity: int, request_id: str, timing: int = IMMEDIATE) -> pb.Subscription:
        request = pb.SetSubscriptionAddOnRequest(
            request_id=request_id,
            subscription_id=sub.id,
            add_on=pb.AddOnSelection(add_on_key="seats", quantity=quantity),
            timing=timing,  # type: ignore[arg-type]
        )
        return (await billing.SetSubscriptionAddOn(request)).subscription

    more = await set_seats(5, "seats-5")
    assert [
        (a.quantity, dt(a.active_from), dt(a.active_to) if a.HasField("active_to") else None)
        for a in more.add_ons
    ] == [
        (2, NOW, NOW + DAY),
        (5, NOW + DAY, None),
    ]
    removed = await set_seats(0, "seats-0", NEXT_CYCLE)
    assert dt(removed.add_ons[-1].active_to) == NOW + 30 * DAY

    wrong_currency = pb.SetSubscriptionAddOnRequest(
        request_id="eur",
        subscription_id=sub.id,
        add_on=pb.AddOnSelection(add_on_key="eur_extra", quantity=1),
        timing=IMMEDIATE,
    )
    error = await rpc_error(billing.SetSubscriptionAddOn(wrong_currency))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "ERROR_REASON_CURRENCY_MISMATCH"


async def test_an_add_on_on_a_plan_s_metered_feature_raises_the_allowance_while_it_runs(
    world: None, billing: Billing, catalog: Catalog, ent: Ent, clock: FixedClock
) -> None:
    """basic entitles 100 tokens a month; each instance of the add-on 50 more on the same feature: one
    entitlement, whose allowance follows the add-on."""
    more = card("more_tokens", flat("5"), feature="gpt4_tokens", entitlement_template=metered("50"))
    await publish_add_on(catalog, add_on("more_tokens", more, multiple=True))
    sub = await subscribe(
        billing, plan_key="basic", add_ons=[pb.AddOnSelection(add_on_key="more_tokens", quantity=2)]
    )
    assert (await check(ent, "gpt4_tokens")).balance.value == "200"
    holders = [i for i in sub.items if i.key == "tokens" and i.entitlement_id]
    assert [i.add_on_key for i in holders] == [""]  # the plan's item holds the feature

    clock.advance(DAY)
    request = pb.SetSubscriptionAddOnRequest(
        request_id="fewer",
        subscription_id=sub.id,
        add_on=pb.AddOnSelection(add_on_key="more_tokens", quantity=0),
        timing=IMMEDIATE,
    )
    await billing.SetSubscriptionAddOn(request)
    assert (await check(ent, "gpt4_tokens")).balance.value == "100"


async def test_single_instance_add_on_quantity_is_bounded(
    world: None, billing: Billing, catalog: Catalog
) -> None:
    await publish_add_on(catalog, add_on("support"))
    error = await rpc_error(subscribe(billing, add_ons=[pb.AddOnSelection(add_on_key="support", quantity=2)]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- idempotency, conflicts, tenancy --------------------------------------------------------------------


async def test_request_ids_make_changes_idempotent(world: None, billing: Billing) -> None:
    first = await subscribe(billing)
    again = await subscribe(billing)
    assert again.id == first.id and again.create_time == first.create_time

    other = await rpc_error(subscribe(billing, plan_key="basic"))
    assert other.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(other).reason == "ERROR_REASON_IDEMPOTENCY_KEY_REUSED"

    canceled = await cancel(billing, first, pb.CANCEL_TIMING_END_OF_PERIOD)
    assert (await cancel(billing, first, pb.CANCEL_TIMING_END_OF_PERIOD)).update_time == canceled.update_time
    reused = await rpc_error(cancel(billing, first, pb.CANCEL_TIMING_IMMEDIATE))
    assert reused.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_currency_mismatch_and_overlap_are_refused(
    world: None, billing: Billing, catalog: Catalog
) -> None:
    await create_customer(billing, customer("euro", ["euro-prod"], currency="EUR"))
    mismatch = await rpc_error(subscribe(billing, "sub-eur", customer_key="euro"))
    assert mismatch.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(mismatch).reason == "ERROR_REASON_CURRENCY_MISMATCH"

    sub = await subscribe(billing)
    overlap = await rpc_error(subscribe(billing, "sub-2", plan_key="basic", start_time=ts(NOW + 60 * DAY)))
    assert overlap.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert dict(error_info(overlap).metadata)["subscription_id"] == sub.id

    # Once the first ends (at the period end), a subscription may start there.
    await cancel(billing, sub, pb.CANCEL_TIMING_END_OF_PERIOD)
    follow_up = await subscribe(billing, "sub-3", plan_key="basic", start_time=ts(NOW + 30 * DAY))
    assert follow_up.status == SCHEDULED


async def test_subscribed_customer_cannot_be_deleted_nor_change_currency(
    world: None, billing: Billing
) -> None:
    sub = await subscribe(billing)

    error = await rpc_error(delete_customer(billing, "acme"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "ERROR_REASON_IN_USE"
    error = await rpc_error(update_customer(billing, customer(currency="EUR")))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION

    await cancel(billing, sub, pb.CANCEL_TIMING_IMMEDIATE)
    assert (await delete_customer(billing, "acme")).HasField("delete_time")


async def test_namespaces_are_isolated_and_listing_filters(
    world: None, billing: Billing, catalog: Catalog, ingest: Any
) -> None:
    sub = await subscribe(billing)
    other = md("other")
    error = await rpc_error(get(billing, sub.id, other))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    listed = await billing.ListSubscriptions(pb.ListSubscriptionsRequest(), metadata=other)
    assert list(listed.subscriptions) == []

    await create_customer(billing, customer("beta", ["beta-prod"]))
    await create_customer(billing, customer("gamma", ["gamma-prod"]))
    await subscribe(billing, "sub-b", customer_key="beta", plan_key="basic", start_time=ts(NOW + DAY))
    await subscribe(billing, "sub-g", customer_key="gamma", plan_key="basic", start_time=ts(NOW + 2 * DAY))

    async def listed_customers(**filters: Any) -> list[str]:
        keys: list[str] = []
        token = ""
        while True:
            request = pb.ListSubscriptionsRequest(page={"page_size": 1, "page_token": token}, **filters)
            reply = await billing.ListSubscriptions(request)
            keys += [s.customer_key for s in reply.subscriptions]
            token = reply.page.next_page_token
            if not token:
                return keys

    assert await listed_customers() == ["gamma", "beta", "acme"]
    assert await listed_customers(plan_key="basic") == ["gamma", "beta"]
    assert await listed_customers(statuses=[SCHEDULED]) == ["gamma", "beta"]
    assert await listed_customers(statuses=[ACTIVE], customer_keys=["acme", "beta"]) == ["acme"]
    bad = await rpc_error(billing.ListSubscriptions(pb.ListSubscriptionsRequest(statuses=[0])))
    assert violated_fields(bad) == ["statuses[0]"]


# --- dependencies -------------------------------------------------------------------------------------


async def test_catalog_unreachable_is_unavailable(
    world: None, serve_billing: ServeBilling, entitlements_server: ServiceRunner
) -> None:
    runner = await serve_billing(entitlements_server.port, catalog_port=free_port())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runner.port}") as channel:
        from metering.billing.v1 import billing_pb2_grpc

        error = await rpc_error(subscribe(billing_pb2_grpc.BillingServiceStub(channel)))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(error).reason == "ERROR_REASON_DEPENDENCY_UNAVAILABLE"


async def test_entitlements_unreachable_then_a_retry_converges(
    world: None, billing: Billing, billing_without_entitlements: Billing, ent: Ent
) -> None:
    error = await rpc_error(subscribe(billing_without_entitlements))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(error).reason == "ERROR_REASON_DEPENDENCY_UNAVAILABLE"

    # The subscription was written; the retry with the same request id provisions it.
    retried = await subscribe(billing)
    assert retried.status == ACTIVE and item(retried, "sso", "trial").entitlement_id
    assert (await check(ent, "sso")).has_access
    assert (await subscribe(billing)).id == retried.id
