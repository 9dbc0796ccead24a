"""Add-on versions through the public API: versioned like plans, single or multiple instances, their own
rate cards, and the plans that accept them."""

from __future__ import annotations

from datetime import timedelta

import grpc

from metering.catalog.v1 import catalog_pb2 as pb
from meterlib.clock import FixedClock
from tests.integration.catalog.helpers import (
    ACTIVE,
    ARCHIVED,
    DRAFT,
    NOW,
    SCHEDULED,
    Stub,
    add_on,
    card,
    create_plan,
    error_info,
    flat,
    list_add_ons,
    phase,
    plan,
    resource_info,
    rpc_error,
    versions,
)
from tests.integration.ingest.helpers import dt, ts

DAY = timedelta(days=1)


async def _create(catalog: Stub, content: pb.AddOn) -> pb.AddOn:
    return (await catalog.CreateAddOn(pb.CreateAddOnRequest(add_on=content))).add_on


async def _publish(catalog: Stub, key: str, version: int, at: object = None) -> pb.AddOn:
    request = pb.PublishAddOnRequest(key=key, version=version)
    if at is not None:
        request.effective_from.CopyFrom(ts(at))  # type: ignore[arg-type]
    return (await catalog.PublishAddOn(request)).add_on


async def _get(catalog: Stub, key: str, **selector: object) -> pb.AddOn:
    return (await catalog.GetAddOn(pb.GetAddOnRequest(key=key, **selector))).add_on  # type: ignore[arg-type]


async def _new_draft(catalog: Stub, key: str, request_id: str) -> pb.AddOn:
    request = pb.NewDraftAddOnVersionRequest(request_id=request_id, key=key)
    return (await catalog.NewDraftAddOnVersion(request)).add_on


async def test_create_single_and_multiple_instance_add_ons(catalog: Stub, clock: FixedClock) -> None:
    await create_plan(catalog, plan("pro"))
    seats = await _create(catalog, add_on("extra_seats", card("seat", flat("8")), multiple=True))
    support = await _create(catalog, add_on("support", compatible=("pro",), description="Priority support"))

    assert (seats.version, seats.status, seats.instance_type) == (1, DRAFT, pb.ADD_ON_INSTANCE_TYPE_MULTIPLE)
    assert (support.instance_type, list(support.compatible_plan_keys)) == (
        pb.ADD_ON_INSTANCE_TYPE_SINGLE,
        ["pro"],
    )
    assert support.rate_cards[0].name == "fee"
    assert dt(support.create_time) == NOW

    unspecified = await _create(
        catalog, pb.AddOn(key="legacy", currency="USD", rate_cards=[card("fee", flat("1"))])
    )
    assert unspecified.instance_type == pb.ADD_ON_INSTANCE_TYPE_SINGLE

    clock.advance(DAY)
    assert (
        await _create(catalog, add_on("support", compatible=("pro",), description="Priority support"))
        == support
    )
    error = await rpc_error(_create(catalog, add_on("support")))
    assert error_info(error).reason == "ERROR_REASON_KEY_CONFLICT"


async def test_the_lifecycle_of_an_add_on_follows_the_clock(catalog: Stub, clock: FixedClock) -> None:
    await _create(catalog, add_on("support"))
    v1 = await _publish(catalog, "support", 1, at=NOW + DAY)
    assert v1.status == SCHEDULED
    assert resource_info(await rpc_error(_get(catalog, "support"))) == ("add_on", "support")
    clock.advance(DAY)
    assert (await _get(catalog, "support")).status == ACTIVE

    v2 = await _new_draft(catalog, "support", "r1")
    assert (v2.version, v2.status, list(v2.rate_cards)) == (2, DRAFT, list(v1.rate_cards))
    assert await _new_draft(catalog, "support", "r1") == v2

    changed = add_on("support", card("fee", flat("7")))
    updated = (await catalog.UpdateDraftAddOn(pb.UpdateDraftAddOnRequest(add_on=changed, version=2))).add_on
    assert updated.rate_cards[0].price.flat.amount.amount == "7"
    switch = clock.now() + 3 * DAY
    await _publish(catalog, "support", 2, at=switch)
    assert dt((await _get(catalog, "support", version=1)).effective_to) == switch
    assert (await _get(catalog, "support", as_of=ts(switch))).version == 2

    error = await rpc_error(catalog.UpdateDraftAddOn(pb.UpdateDraftAddOnRequest(add_on=changed, version=1)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "ERROR_REASON_IMMUTABLE"

    clock.set(switch)
    archived = (await catalog.ArchiveAddOn(pb.ArchiveAddOnRequest(key="support", version=2))).add_on
    assert (archived.status, dt(archived.effective_to)) == (ARCHIVED, switch)
    assert [(a.version, a.status) for a in await list_add_ons(catalog)] == [(2, ARCHIVED), (1, ARCHIVED)]


async def test_list_add_ons_compatible_with_a_plan(catalog: Stub) -> None:
    await create_plan(catalog, plan("pro"))
    await create_plan(catalog, plan("basic"))
    await create_plan(catalog, plan("euro", phase("default", card("base", flat("5", "EUR"))), currency="EUR"))
    await _create(catalog, add_on("only_pro", compatible=("pro",)))
    await _create(catalog, add_on("any_usd"))  # every USD plan
    await _create(catalog, add_on("any_eur", currency="EUR"))
    await _create(catalog, add_on("pro_or_euro", compatible=("pro", "euro")))

    assert versions(await list_add_ons(catalog)) == [
        ("any_eur", 1), ("any_usd", 1), ("only_pro", 1), ("pro_or_euro", 1),
    ]  # fmt: skip
    assert versions(await list_add_ons(catalog, compatible_plan_key="pro")) == [
        ("any_usd", 1), ("only_pro", 1), ("pro_or_euro", 1),
    ]  # fmt: skip
    assert versions(await list_add_ons(catalog, compatible_plan_key="basic")) == [("any_usd", 1)]
    assert versions(await list_add_ons(catalog, compatible_plan_key="euro")) == [
        ("any_eur", 1),
        ("pro_or_euro", 1),
    ]
    assert versions(await list_add_ons(catalog, compatible_plan_key="nope")) == []


async def test_list_add_ons_by_status_latest_only_and_paged(catalog: Stub) -> None:
    for key in ("a", "b", "c"):
        await _create(catalog, add_on(key))
    await _publish(catalog, "b", 1)
    await _new_draft(catalog, "b", "r1")

    assert versions(await list_add_ons(catalog, statuses=[ACTIVE])) == [("b", 1)]
    assert versions(await list_add_ons(catalog, latest_only=True)) == [("a", 1), ("b", 2), ("c", 1)]
    request = pb.ListAddOnsRequest()
    request.page.page_size = 2
    first = await catalog.ListAddOns(request)
    assert versions(list(first.add_ons)) == [("a", 1), ("b", 2)]
    request.page.page_token = first.page.next_page_token
    assert versions(list((await catalog.ListAddOns(request)).add_ons)) == [("b", 1), ("c", 1)]
