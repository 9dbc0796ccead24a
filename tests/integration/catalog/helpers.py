"""Builders and readers shared by the catalog integration tests; everything goes through the public APIs."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from metering.catalog.v1 import catalog_pb2 as pb
from metering.catalog.v1 import catalog_pb2_grpc
from metering.common.v1 import common_pb2
from metering.ingest.v1 import ingest_pb2_grpc
from tests.integration.ingest.helpers import SUM, create_meter, meter, ts

Stub = catalog_pb2_grpc.CatalogServiceStub
IngestStub = ingest_pb2_grpc.IngestServiceStub
Metadata = tuple[tuple[str, str], ...] | None
"""Call metadata (``md=`` of the helpers below); ``None`` acts in the "default" namespace."""
T = TypeVar("T")

NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)
"""Where the `clock` fixture starts."""

DRAFT = pb.VERSION_STATUS_DRAFT
SCHEDULED = pb.VERSION_STATUS_SCHEDULED
ACTIVE = pb.VERSION_STATUS_ACTIVE
ARCHIVED = pb.VERSION_STATUS_ARCHIVED


def status_name(status: int) -> str:
    """``ACTIVE`` for VERSION_STATUS_ACTIVE: readable assertion messages."""
    return pb.VersionStatus.Name(status).removeprefix("VERSION_STATUS_")  # type: ignore[arg-type]


# --- content builders ----------------------------------------------------------------------------------


def money(amount: str, currency: str = "USD") -> common_pb2.Money:
    return common_pb2.Money(amount=amount, currency=currency)


def dec(value: str) -> common_pb2.Decimal:
    return common_pb2.Decimal(value=value)


def flat(amount: str, currency: str = "USD") -> pb.Price:
    """A flat fee, in advance (said explicitly, as responses say it)."""
    return pb.Price(
        flat=pb.FlatPrice(amount=money(amount, currency), payment_term=pb.PAYMENT_TERM_IN_ADVANCE)
    )


def unit(amount: str, currency: str = "USD") -> pb.Price:
    """A unit price."""
    return pb.Price(unit=pb.UnitPrice(amount=money(amount, currency)))


def card(
    key: str, price: pb.Price | None = None, *, feature: str = "", cadence: str = "P1M", **fields: Any
) -> pb.RateCard:
    """A rate card billed monthly (``cadence=""`` makes it one-time)."""
    return pb.RateCard(key=key, feature_key=feature, billing_cadence=cadence, price=price, **fields)


def phase(key: str, *cards: pb.RateCard, duration: str = "") -> pb.PlanPhase:
    return pb.PlanPhase(key=key, duration=duration, rate_cards=list(cards))


def plan(
    key: str, *phases: pb.PlanPhase, currency: str = "USD", cadence: str = "P1M", **fields: Any
) -> pb.Plan:
    """A plan; without phases, one phase `default` with a flat fee of 20 a month."""
    if not phases:
        phases = (phase("default", card("base", flat("20"))),)
    return pb.Plan(key=key, currency=currency, billing_cadence=cadence, phases=list(phases), **fields)


def add_on(
    key: str,
    *cards: pb.RateCard,
    currency: str = "USD",
    compatible: tuple[str, ...] = (),
    multiple: bool = False,
    **fields: Any,
) -> pb.AddOn:
    """An add-on; without rate cards, one flat fee of 5 a month."""
    if not cards:
        cards = (card("fee", flat("5", currency)),)
    instance = pb.ADD_ON_INSTANCE_TYPE_MULTIPLE if multiple else pb.ADD_ON_INSTANCE_TYPE_SINGLE
    return pb.AddOn(
        key=key,
        currency=currency,
        rate_cards=list(cards),
        compatible_plan_keys=list(compatible),
        instance_type=instance,
        **fields,
    )


# --- calls ---------------------------------------------------------------------------------------------


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The error a call fails with (the test fails if it succeeds)."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


async def tokens_meter(ingest: IngestStub, key: str = "input_tokens", md: Metadata = None) -> None:
    """A SUM meter of LLM tokens grouped by model and region, created through ingest."""
    await create_meter(
        ingest,
        meter(key, SUM, value_property="$.tokens", group_by={"model": "$.model", "region": "$.region"}),
        md,
    )


async def create_feature(
    catalog: Stub,
    key: str,
    meter_key: str = "",
    filters: Mapping[str, str] | None = None,
    md: Metadata = None,
    **fields: Any,
) -> pb.Feature:
    feature = pb.Feature(key=key, meter_key=meter_key, meter_group_filters=dict(filters or {}), **fields)
    reply = await catalog.CreateFeature(pb.CreateFeatureRequest(feature=feature), metadata=md)
    return reply.feature


async def create_plan(catalog: Stub, content: pb.Plan, md: Metadata = None) -> pb.Plan:
    return (await catalog.CreatePlan(pb.CreatePlanRequest(plan=content), metadata=md)).plan


async def publish_plan(
    catalog: Stub,
    key: str,
    version: int,
    at: datetime | None = None,
    until: datetime | None = None,
    md: Metadata = None,
) -> pb.Plan:
    request = pb.PublishPlanRequest(key=key, version=version)
    if at is not None:
        request.effective_from.CopyFrom(ts(at))
    if until is not None:
        request.effective_to.CopyFrom(ts(until))
    return (await catalog.PublishPlan(request, metadata=md)).plan


async def archive_plan(
    catalog: Stub, key: str, version: int, until: datetime | None = None, md: Metadata = None
) -> pb.Plan:
    request = pb.ArchivePlanRequest(key=key, version=version)
    if until is not None:
        request.effective_to.CopyFrom(ts(until))
    return (await catalog.ArchivePlan(request, metadata=md)).plan


async def new_plan_draft(
    catalog: Stub, key: str, request_id: str, source_version: int = 0, md: Metadata = None
) -> pb.Plan:
    request = pb.NewDraftPlanVersionRequest(request_id=request_id, key=key, source_version=source_version)
    return (await catalog.NewDraftPlanVersion(request, metadata=md)).plan


async def get_plan(
    catalog: Stub,
    key: str,
    version: int | None = None,
    as_of: datetime | None = None,
    md: Metadata = None,
) -> pb.Plan:
    """GetPlan of an exact version, the version as of a time, or (neither) the one effective now."""
    request = pb.GetPlanRequest(key=key)
    if version is not None:
        request.version = version
    if as_of is not None:
        request.as_of.CopyFrom(ts(as_of))
    return (await catalog.GetPlan(request, metadata=md)).plan


async def list_plans(catalog: Stub, md: Metadata = None, **filters: Any) -> list[pb.Plan]:
    """ListPlans, every page."""
    request = pb.ListPlansRequest(**filters)
    plans: list[pb.Plan] = []
    while True:
        reply = await catalog.ListPlans(request, metadata=md)
        plans.extend(reply.plans)
        if not reply.page.next_page_token:
            return plans
        request.page.page_token = reply.page.next_page_token


async def list_add_ons(catalog: Stub, md: Metadata = None, **filters: Any) -> list[pb.AddOn]:
    """ListAddOns, every page."""
    request = pb.ListAddOnsRequest(**filters)
    add_ons: list[pb.AddOn] = []
    while True:
        reply = await catalog.ListAddOns(request, metadata=md)
        add_ons.extend(reply.add_ons)
        if not reply.page.next_page_token:
            return add_ons
        request.page.page_token = reply.page.next_page_token


def versions(items: list[pb.Plan] | list[pb.AddOn]) -> list[tuple[str, int]]:
    """(key, version) of listed plans or add-ons, in order."""
    return [(item.key, item.version) for item in items]


# --- error details -------------------------------------------------------------------------------------


def details(error: grpc.aio.AioRpcError, message_type: type[T]) -> list[T]:
    """Every detail of ``message_type`` in an error's rich status."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, f"no rich status in the trailers of {error.code()}: {error.details()}"
    found: list[T] = []
    for detail in status.details:
        if detail.Is(message_type.DESCRIPTOR):  # type: ignore[attr-defined]
            message = message_type()
            detail.Unpack(message)
            found.append(message)
    return found


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The google.rpc.ErrorInfo of an error."""
    [info] = details(error, error_details_pb2.ErrorInfo)
    assert info.domain == "metering"
    return info


def resource_info(error: grpc.aio.AioRpcError) -> tuple[str, str]:
    """(resource_type, resource_name) of a NOT_FOUND error's google.rpc.ResourceInfo."""
    assert error.code() == grpc.StatusCode.NOT_FOUND, (error.code(), error.details())
    [info] = details(error, error_details_pb2.ResourceInfo)
    return info.resource_type, info.resource_name
