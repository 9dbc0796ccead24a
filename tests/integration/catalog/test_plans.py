"""Plan versions through the public API: the lifecycle driven by the clock, immutability of published
versions, one draft per key, idempotent creates and new drafts, lookups by version and time, listing."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest

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
    archive_plan,
    card,
    create_plan,
    error_info,
    flat,
    get_plan,
    list_plans,
    new_plan_draft,
    phase,
    plan,
    publish_plan,
    resource_info,
    rpc_error,
    status_name,
    versions,
)
from tests.integration.ingest.helpers import assert_violations, dt

DAY = timedelta(days=1)


def _content(p: pb.Plan) -> pb.Plan:
    """A plan version without its output-only fields: what it sells."""
    copy = pb.Plan()
    copy.CopyFrom(p)
    for name in ("version", "status", "effective_from", "effective_to", "create_time", "update_time"):
        copy.ClearField(name)  # type: ignore[arg-type]
    return copy


# --- create -----------------------------------------------------------------------------------------


async def test_create_makes_draft_version_1_with_names_defaulted(catalog: Stub) -> None:
    created = await create_plan(
        catalog,
        plan(
            "pro",
            phase("trial", card("base", flat("0")), duration="P14D"),
            phase("paid", card("base", flat("20"))),
            description="For teams",
            metadata={"segment": "smb"},
        ),
    )
    assert (created.key, created.version, created.status) == ("pro", 1, DRAFT)
    assert (created.name, created.currency, created.billing_cadence) == ("pro", "USD", "P1M")
    assert [p.name for p in created.phases] == ["trial", "paid"]
    assert [p.duration for p in created.phases] == ["P2W", ""]  # canonical ISO 8601
    assert created.phases[1].rate_cards[0].name == "base"
    assert (created.description, dict(created.metadata)) == ("For teams", {"segment": "smb"})
    assert dt(created.create_time) == dt(created.update_time) == NOW
    assert not created.HasField("effective_from") and not created.HasField("effective_to")
    assert await get_plan(catalog, "pro", version=1) == created


async def test_an_identical_create_returns_the_draft_anything_else_conflicts(
    catalog: Stub, clock: FixedClock
) -> None:
    created = await create_plan(catalog, plan("pro"))
    clock.advance(DAY)
    assert await create_plan(catalog, plan("pro")) == created

    error = await rpc_error(create_plan(catalog, pb.Plan(key="pro", currency="USD", billing_cadence="P1M")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # validated first: no phases
    error = await rpc_error(create_plan(catalog, plan("pro", name="Pro")))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(error).reason == "ERROR_REASON_KEY_CONFLICT"

    await publish_plan(catalog, "pro", 1)  # no longer a draft: even the same content is a conflict now
    error = await rpc_error(create_plan(catalog, plan("pro")))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS


# --- the lifecycle, driven by the clock ---------------------------------------------------------------


async def test_the_lifecycle_of_a_plan_follows_the_clock(catalog: Stub, clock: FixedClock) -> None:
    await create_plan(catalog, plan("pro"))
    assert resource_info(await rpc_error(get_plan(catalog, "pro"))) == ("plan", "pro")  # nothing effective

    # v1 published from tomorrow: SCHEDULED until then, ACTIVE from then.
    v1 = await publish_plan(catalog, "pro", 1, at=NOW + DAY)
    assert (v1.status, dt(v1.effective_from), v1.HasField("effective_to")) == (SCHEDULED, NOW + DAY, False)
    assert (await get_plan(catalog, "pro", version=1)).status == SCHEDULED
    await rpc_error(get_plan(catalog, "pro"))
    clock.advance(DAY)
    assert (await get_plan(catalog, "pro")).version == 1
    assert (await get_plan(catalog, "pro", version=1)).status == ACTIVE

    # v2, a copy of v1 with a new price, published ten days later: v1 ends where v2 starts.
    v2 = await new_plan_draft(catalog, "pro", "req-1")
    assert (v2.version, v2.status, _content(v2)) == (2, DRAFT, _content(v1))
    changed = plan("pro", phase("default", card("base", flat("25"))))
    await catalog.UpdateDraftPlan(pb.UpdateDraftPlanRequest(plan=changed, version=2))
    switch = clock.now() + 10 * DAY
    v2 = await publish_plan(catalog, "pro", 2, at=switch)
    assert v2.status == SCHEDULED
    v1 = await get_plan(catalog, "pro", version=1)
    assert (v1.status, dt(v1.effective_to)) == (ACTIVE, switch)

    # "As of" picks the version whose range holds the instant; ranges never overlap.
    assert (await get_plan(catalog, "pro", as_of=switch - timedelta(microseconds=1))).version == 1
    assert (await get_plan(catalog, "pro", as_of=switch)).version == 2
    assert resource_info(await rpc_error(get_plan(catalog, "pro", as_of=NOW))) == ("plan", "pro")

    clock.set(switch)
    assert [(p.version, status_name(p.status)) for p in await list_plans(catalog)] == [
        (2, "ACTIVE"),
        (1, "ARCHIVED"),
    ]
    assert (await get_plan(catalog, "pro")).phases[0].rate_cards[0].price.flat.amount.amount == "25"

    # Archived at the end of the month: ACTIVE until then, then nothing is effective.
    end = switch + 30 * DAY
    v2 = await archive_plan(catalog, "pro", 2, until=end)
    assert (v2.status, dt(v2.effective_to)) == (ACTIVE, end)
    clock.set(end)
    assert (await get_plan(catalog, "pro", version=2)).status == ARCHIVED
    await rpc_error(get_plan(catalog, "pro"))
    assert (await get_plan(catalog, "pro", as_of=end - DAY)).version == 2  # history stays readable


async def test_withdrawing_a_scheduled_version_gives_its_span_back(catalog: Stub, clock: FixedClock) -> None:
    await create_plan(catalog, plan("pro"))
    await publish_plan(catalog, "pro", 1)
    await new_plan_draft(catalog, "pro", "req-1")
    await publish_plan(catalog, "pro", 2, at=NOW + 10 * DAY)
    assert dt((await get_plan(catalog, "pro", version=1)).effective_to) == NOW + 10 * DAY

    withdrawn = await archive_plan(catalog, "pro", 2)
    assert withdrawn.status == ARCHIVED
    v1 = await get_plan(catalog, "pro", version=1)
    assert (v1.status, v1.HasField("effective_to")) == (ACTIVE, False)  # open-ended again: no gap
    clock.advance(20 * DAY)
    assert (await get_plan(catalog, "pro")).version == 1


async def test_publishing_without_a_time_makes_the_version_active_now(catalog: Stub) -> None:
    await create_plan(catalog, plan("pro"))
    published = await publish_plan(catalog, "pro", 1)
    assert (published.status, dt(published.effective_from), dt(published.update_time)) == (ACTIVE, NOW, NOW)


async def test_publishing_again_changes_nothing_publishing_otherwise_is_refused(
    catalog: Stub, clock: FixedClock
) -> None:
    await create_plan(catalog, plan("pro"))
    published = await publish_plan(catalog, "pro", 1, at=NOW + DAY)
    clock.advance(timedelta(hours=1))
    assert await publish_plan(catalog, "pro", 1) == published
    assert await publish_plan(catalog, "pro", 1, at=NOW + DAY) == published

    error = await rpc_error(publish_plan(catalog, "pro", 1, at=NOW + 2 * DAY))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "ERROR_REASON_IMMUTABLE"


async def test_publication_times_are_checked(catalog: Stub) -> None:
    await create_plan(catalog, plan("pro"))
    assert_violations(await rpc_error(publish_plan(catalog, "pro", 1, at=NOW - DAY)), "effective_from")
    assert_violations(
        await rpc_error(publish_plan(catalog, "pro", 1, at=NOW + DAY, until=NOW + DAY)), "effective_to"
    )
    assert_violations(await rpc_error(publish_plan(catalog, "", 0)), "key", "version")
    assert resource_info(await rpc_error(publish_plan(catalog, "pro", 2))) == ("plan", "pro@2")
    assert resource_info(await rpc_error(publish_plan(catalog, "basic", 1))) == ("plan", "basic")
    assert (await get_plan(catalog, "pro", version=1)).status == DRAFT


async def test_a_version_cannot_be_scheduled_before_one_already_scheduled(catalog: Stub) -> None:
    await create_plan(catalog, plan("pro"))
    await publish_plan(catalog, "pro", 1, at=NOW + 10 * DAY)
    await new_plan_draft(catalog, "pro", "req-1", source_version=1)
    error = await rpc_error(publish_plan(catalog, "pro", 2, at=NOW + 5 * DAY))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert dict(error_info(error).metadata) == {"scheduled_version": "1"}


# --- immutability -------------------------------------------------------------------------------------


@pytest.mark.parametrize("published_at", [NOW, NOW + DAY], ids=["active", "scheduled"])
async def test_a_published_version_is_immutable(catalog: Stub, published_at: object) -> None:
    await create_plan(catalog, plan("pro"))
    published = await publish_plan(catalog, "pro", 1, at=published_at)  # type: ignore[arg-type]

    changed = plan("pro", phase("default", card("base", flat("99"))))
    error = await rpc_error(catalog.UpdateDraftPlan(pb.UpdateDraftPlanRequest(plan=changed, version=1)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "ERROR_REASON_IMMUTABLE"
    assert await get_plan(catalog, "pro", version=1) == published


async def test_an_abandoned_draft_is_archived_at_once_and_cannot_change(catalog: Stub) -> None:
    await create_plan(catalog, plan("pro"))
    archived = await archive_plan(catalog, "pro", 1)
    assert (archived.status, archived.HasField("effective_from")) == (ARCHIVED, False)
    assert await archive_plan(catalog, "pro", 1) == archived  # idempotent

    error = await rpc_error(catalog.UpdateDraftPlan(pb.UpdateDraftPlanRequest(plan=plan("pro"), version=1)))
    assert error_info(error).reason == "ERROR_REASON_IMMUTABLE"
    error = await rpc_error(publish_plan(catalog, "pro", 1))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_draft_is_replaced_by_its_update_and_an_identical_update_changes_nothing(
    catalog: Stub, clock: FixedClock
) -> None:
    await create_plan(catalog, plan("pro"))
    clock.advance(timedelta(hours=1))
    changed = plan("pro", phase("default", card("base", flat("30"))), name="Pro", currency="EUR")
    changed.phases[0].rate_cards[0].price.flat.amount.currency = "EUR"
    request = pb.UpdateDraftPlanRequest(plan=changed, version=1)
    updated = (await catalog.UpdateDraftPlan(request)).plan
    assert (updated.name, updated.currency, updated.status) == ("Pro", "EUR", DRAFT)
    assert (dt(updated.create_time), dt(updated.update_time)) == (NOW, NOW + timedelta(hours=1))

    clock.advance(timedelta(hours=1))
    assert (await catalog.UpdateDraftPlan(request)).plan == updated
    assert await get_plan(catalog, "pro", version=1) == updated
    assert resource_info(
        await rpc_error(catalog.UpdateDraftPlan(pb.UpdateDraftPlanRequest(plan=changed, version=7)))
    ) == ("plan", "pro@7")


# --- drafts -------------------------------------------------------------------------------------------


async def test_one_draft_per_key(catalog: Stub) -> None:
    await create_plan(catalog, plan("pro"))
    error = await rpc_error(new_plan_draft(catalog, "pro", "req-1", source_version=1))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert dict(error_info(error).metadata) == {"draft_version": "1"}

    await publish_plan(catalog, "pro", 1)
    assert (await new_plan_draft(catalog, "pro", "req-2")).version == 2
    error = await rpc_error(new_plan_draft(catalog, "pro", "req-3"))
    assert dict(error_info(error).metadata) == {"draft_version": "2"}

    await archive_plan(catalog, "pro", 2)  # an abandoned draft makes room for a new one
    draft = await new_plan_draft(catalog, "pro", "req-4")
    assert (draft.version, draft.status) == (3, DRAFT)


async def test_new_draft_version_is_idempotent_by_request_id(catalog: Stub, clock: FixedClock) -> None:
    await create_plan(catalog, plan("pro"))
    await create_plan(catalog, plan("basic"))
    await publish_plan(catalog, "pro", 1)
    await publish_plan(catalog, "basic", 1)
    draft = await new_plan_draft(catalog, "pro", "req-1")
    clock.advance(timedelta(minutes=5))

    assert await new_plan_draft(catalog, "pro", "req-1") == draft  # the retry: same version, nothing new
    assert versions(await list_plans(catalog, keys=["pro"])) == [("pro", 2), ("pro", 1)]

    for reused in (new_plan_draft(catalog, "basic", "req-1"), new_plan_draft(catalog, "pro", "req-1", 1)):
        error = await rpc_error(reused)
        assert error.code() == grpc.StatusCode.ALREADY_EXISTS
        assert error_info(error).reason == "ERROR_REASON_IDEMPOTENCY_KEY_REUSED"

    # Add-ons keep their own versions but share the request id space of the namespace.
    await catalog.CreateAddOn(pb.CreateAddOnRequest(add_on=add_on("pro")))
    await catalog.PublishAddOn(pb.PublishAddOnRequest(key="pro", version=1))
    error = await rpc_error(
        catalog.NewDraftAddOnVersion(pb.NewDraftAddOnVersionRequest(request_id="req-1", key="pro"))
    )
    assert error_info(error).reason == "ERROR_REASON_IDEMPOTENCY_KEY_REUSED"


async def test_new_draft_version_needs_a_request_id_and_a_source(catalog: Stub) -> None:
    assert_violations(await rpc_error(new_plan_draft(catalog, "pro", "")), "request_id")
    assert resource_info(await rpc_error(new_plan_draft(catalog, "pro", "req-1"))) == ("plan", "pro")
    await create_plan(catalog, plan("pro"))
    await archive_plan(catalog, "pro", 1)
    error = await rpc_error(new_plan_draft(catalog, "pro", "req-2"))  # nothing published to copy
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert resource_info(await rpc_error(new_plan_draft(catalog, "pro", "req-3", 5))) == ("plan", "pro@5")
    copy = await new_plan_draft(catalog, "pro", "req-4", source_version=1)  # an explicit source may be any
    assert (copy.version, copy.status) == (2, DRAFT)


async def test_concurrent_calls_keep_one_draft_and_one_version_1(catalog: Stub) -> None:
    created = await asyncio.gather(*(create_plan(catalog, plan("pro")) for _ in range(8)))
    assert all(p == created[0] for p in created)  # every retry of the create gets the one draft

    await publish_plan(catalog, "pro", 1)
    results = await asyncio.gather(
        *(new_plan_draft(catalog, "pro", f"req-{i}") for i in range(8)), return_exceptions=True
    )
    drafts = [r for r in results if isinstance(r, pb.Plan)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert [d.version for d in drafts] == [2]
    assert {e.code() for e in refused} == {grpc.StatusCode.FAILED_PRECONDITION}
    assert versions(await list_plans(catalog)) == [("pro", 2), ("pro", 1)]

    await archive_plan(catalog, "pro", 2)
    retries = await asyncio.gather(*(new_plan_draft(catalog, "pro", "req-same") for _ in range(6)))
    assert {(p.version, p.status) for p in retries} == {(3, DRAFT)}  # one draft, returned to every retry


# --- reading ------------------------------------------------------------------------------------------


async def test_get_plan_errors(catalog: Stub) -> None:
    assert_violations(await rpc_error(get_plan(catalog, "")), "key")
    await create_plan(catalog, plan("pro"))
    request = pb.GetPlanRequest(key="pro", version=0)
    assert request.WhichOneof("selector") == "version"
    assert_violations(await rpc_error(catalog.GetPlan(request)), "version")
    assert resource_info(await rpc_error(get_plan(catalog, "pro", version=2))) == ("plan", "pro@2")
    assert resource_info(await rpc_error(get_plan(catalog, "basic", version=1))) == ("plan", "basic@1")


async def test_list_orders_filters_and_pages(catalog: Stub, clock: FixedClock) -> None:
    # pro: v1 ARCHIVED, v2 ACTIVE, v3 SCHEDULED, v4 DRAFT; basic (EUR): v1 DRAFT; team: v1 ACTIVE
    await create_plan(catalog, plan("pro"))
    await publish_plan(catalog, "pro", 1)
    await new_plan_draft(catalog, "pro", "a")
    await publish_plan(catalog, "pro", 2, at=NOW + DAY)
    await new_plan_draft(catalog, "pro", "b")
    await publish_plan(catalog, "pro", 3, at=NOW + 5 * DAY)
    await new_plan_draft(catalog, "pro", "c")
    await create_plan(
        catalog, plan("basic", phase("default", card("base", flat("5", "EUR"))), currency="EUR")
    )
    await create_plan(catalog, plan("team"))
    await publish_plan(catalog, "team", 1)
    clock.advance(2 * DAY)

    everything = await list_plans(catalog)
    assert versions(everything) == [("basic", 1), ("pro", 4), ("pro", 3), ("pro", 2), ("pro", 1), ("team", 1)]
    assert [status_name(p.status) for p in everything] == [
        "DRAFT", "DRAFT", "SCHEDULED", "ACTIVE", "ARCHIVED", "ACTIVE",
    ]  # fmt: skip

    # The status filter (SQL) agrees with the statuses in responses (Python), at every instant.
    for moment in (clock.now(), NOW + 5 * DAY, NOW + 100 * DAY):
        clock.set(moment)
        listed = {(p.key, p.version): p.status for p in await list_plans(catalog)}
        for status in (DRAFT, SCHEDULED, ACTIVE, ARCHIVED):
            selected = versions(await list_plans(catalog, statuses=[status]))
            assert sorted(selected) == sorted(k for k, s in listed.items() if s == status), status_name(
                status
            )
    clock.set(NOW + 2 * DAY)

    assert versions(await list_plans(catalog, statuses=[DRAFT, SCHEDULED])) == [
        ("basic", 1), ("pro", 4), ("pro", 3),
    ]  # fmt: skip
    assert versions(await list_plans(catalog, keys=["pro", "nope"], latest_only=True)) == [("pro", 4)]
    assert versions(await list_plans(catalog, statuses=[ACTIVE], latest_only=True)) == [
        ("pro", 2),
        ("team", 1),
    ]
    assert versions(await list_plans(catalog, currency="EUR")) == [("basic", 1)]

    request = pb.ListPlansRequest(statuses=[DRAFT, ACTIVE, ARCHIVED, SCHEDULED])
    request.page.page_size = 4
    first = await catalog.ListPlans(request)
    assert versions(list(first.plans)) == [("basic", 1), ("pro", 4), ("pro", 3), ("pro", 2)]
    request.page.page_token = first.page.next_page_token
    second = await catalog.ListPlans(request)
    assert (versions(list(second.plans)), second.page.next_page_token) == ([("pro", 1), ("team", 1)], "")

    request.statuses.append(pb.VERSION_STATUS_UNSPECIFIED)
    request.page.page_token = ""
    assert_violations(await rpc_error(catalog.ListPlans(request)), "statuses[4]")
    assert_violations(
        await rpc_error(catalog.ListPlans(pb.ListPlansRequest(page={"page_token": "garbage"}))),
        "page.page_token",
    )
