"""Builders and readers shared by the entitlements integration tests; everything goes through the public
APIs of the three services (meters and usage through ingest, features through catalog)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import grpc

from metering.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from metering.common.v1 import common_pb2
from metering.entitlements.v1 import entitlements_pb2 as pb
from metering.entitlements.v1 import entitlements_pb2_grpc
from metering.ingest.v1 import ingest_pb2_grpc
from tests.integration.catalog.helpers import details, error_info, resource_info, rpc_error
from tests.integration.ingest.helpers import (
    SUM,
    assert_violations,
    create_meter,
    dt,
    event,
    ingest_accepted,
    meter,
    ts,
    utc,
)

__all__ = [
    "NOW",
    "Ent",
    "assert_violations",
    "details",
    "dt",
    "error_info",
    "resource_info",
    "rpc_error",
    "ts",
    "utc",
]

Ent = entitlements_pb2_grpc.EntitlementsServiceStub
Catalog = catalog_pb2_grpc.CatalogServiceStub
Ingest = ingest_pb2_grpc.IngestServiceStub
Metadata = tuple[tuple[str, str], ...] | None
"""Call metadata (``md=``); ``None`` acts in the "default" namespace."""

NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)
"""Where the `clock` fixture starts."""
JUNE = datetime(2024, 6, 1, tzinfo=UTC)
"""The start of the monthly usage period containing NOW in most tests."""

EVENT_TYPE = "llm.request"


def md(namespace: str) -> tuple[tuple[str, str], ...]:
    """Metadata naming a namespace."""
    return (("x-metering-namespace", namespace),)


def dec(value: str | int) -> common_pb2.Decimal:
    return common_pb2.Decimal(value=str(value))


def d(message: common_pb2.Decimal) -> Decimal:
    """The Decimal of a wire decimal (the test fails when it is unset)."""
    assert message.value, "an unset decimal"
    return Decimal(message.value)


# --- the world around entitlements -------------------------------------------------------------------


async def tokens_feature(
    ingest: Ingest,
    catalog: Catalog,
    *,
    feature: str = "gpt4_tokens",
    meter_key: str = "tokens",
    filters: Mapping[str, str] | None = None,
    namespace: Metadata = None,
) -> catalog_pb2.Feature:
    """A SUM meter of tokens grouped by model (created if missing) and a feature on it, by default only
    for model gpt-4."""
    try:
        await create_meter(
            ingest,
            meter(
                meter_key,
                SUM,
                event_type=EVENT_TYPE,
                value_property="$.tokens",
                group_by={"model": "$.model"},
            ),
            namespace,
        )
    except grpc.aio.AioRpcError as exc:  # the meter exists already (a second feature on it)
        if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
    wanted = {"model": "gpt-4"} if filters is None else dict(filters)
    request = catalog_pb2.CreateFeatureRequest(
        feature=catalog_pb2.Feature(key=feature, meter_key=meter_key, meter_group_filters=wanted)
    )
    return (await catalog.CreateFeature(request, metadata=namespace)).feature


async def plain_feature(
    catalog: Catalog, key: str = "sso", namespace: Metadata = None
) -> catalog_pb2.Feature:
    """A feature without a meter."""
    request = catalog_pb2.CreateFeatureRequest(feature=catalog_pb2.Feature(key=key))
    return (await catalog.CreateFeature(request, metadata=namespace)).feature


_event_ids = iter(range(1, 1_000_000))


async def use(
    ingest: Ingest,
    tokens: int | str,
    *,
    subject: str = "acme-prod",
    at: datetime = datetime(2024, 6, 10, tzinfo=UTC),
    model: str = "gpt-4",
    namespace: Metadata = None,
) -> None:
    """Ingest one event of ``tokens`` tokens (a JSON number) of ``model`` by ``subject`` at ``at``."""
    data = f'{{"tokens": {tokens}, "model": {json.dumps(model)}}}'
    await ingest_accepted(
        ingest,
        [event(f"e-{next(_event_ids)}", type=EVENT_TYPE, subject=subject, time=at, data=data)],
        namespace,
    )


# --- entitlements -------------------------------------------------------------------------------------


async def upsert_customer(
    ent: Ent, key: str = "acme", subjects: Sequence[str] = ("acme-prod",), namespace: Metadata = None
) -> pb.Customer:
    request = pb.UpsertCustomerRequest(customer=pb.Customer(key=key, subject_keys=list(subjects)))
    return (await ent.UpsertCustomer(request, metadata=namespace)).customer


def metered_config(
    *,
    interval: str = "P1M",
    anchor: datetime | None = JUNE,
    measure_usage_from: datetime | None = JUNE,
    issue_after_reset: str | None = None,
    priority: int = 0,
    soft: bool = False,
    preserve_overage: bool = False,
) -> pb.MeteredConfig:
    config = pb.MeteredConfig(
        usage_period=common_pb2.UsagePeriod(interval=interval),
        issue_after_reset_priority=priority,
        is_soft_limit=soft,
        preserve_overage_at_reset=preserve_overage,
    )
    if anchor is not None:
        config.usage_period.anchor.CopyFrom(ts(anchor))
    if measure_usage_from is not None:
        config.measure_usage_from.CopyFrom(ts(measure_usage_from))
    if issue_after_reset is not None:
        config.issue_after_reset.CopyFrom(dec(issue_after_reset))
    return config


def entitlement(
    customer: str = "acme",
    feature: str = "gpt4_tokens",
    *,
    config: pb.MeteredConfig | None = None,
    **fields: Any,
) -> pb.Entitlement:
    """A metered entitlement (``config`` defaults to a monthly one from June 1st), or one with the
    ``boolean=`` or ``static=`` config given in ``fields``."""
    message = pb.Entitlement(customer_key=customer, feature_key=feature, **fields)
    if message.WhichOneof("config") is None:
        message.metered.CopyFrom(config or metered_config())
    return message


async def create_entitlement(
    ent: Ent, message: pb.Entitlement | None = None, *, request_id: str = "", namespace: Metadata = None
) -> pb.Entitlement:
    message = message or entitlement()
    request = pb.CreateEntitlementRequest(
        request_id=request_id or f"create-{message.customer_key}-{message.feature_key}-{next(_event_ids)}",
        entitlement=message,
    )
    return (await ent.CreateEntitlement(request, metadata=namespace)).entitlement


def by_id(entitlement_id: str) -> pb.EntitlementRef:
    return pb.EntitlementRef(entitlement_id=entitlement_id)


def by_pair(customer: str = "acme", feature: str = "gpt4_tokens") -> pb.EntitlementRef:
    return pb.EntitlementRef(customer_feature=pb.CustomerFeature(customer_key=customer, feature_key=feature))


def grant(
    amount: str | int,
    *,
    priority: int = 0,
    effective_at: datetime | None = JUNE,
    expires_at: datetime | None = None,
    min_rollover: str | None = None,
    max_rollover: str | None = None,
    recurrence: str = "",
    **fields: Any,
) -> pb.Grant:
    message = pb.Grant(amount=dec(amount), priority=priority, **fields)
    if effective_at is not None:
        message.effective_at.CopyFrom(ts(effective_at))
    if expires_at is not None:
        message.expires_at.CopyFrom(ts(expires_at))
    if min_rollover is not None:
        message.min_rollover_amount.CopyFrom(dec(min_rollover))
    if max_rollover is not None:
        message.max_rollover_amount.CopyFrom(dec(max_rollover))
    if recurrence:
        message.recurrence.interval = recurrence
    return message


async def create_grant(
    ent: Ent,
    entitlement_id: str,
    message: pb.Grant,
    *,
    request_id: str = "",
    namespace: Metadata = None,
) -> pb.Grant:
    request = pb.CreateGrantRequest(
        request_id=request_id or f"grant-{next(_event_ids)}", entitlement=by_id(entitlement_id), grant=message
    )
    return (await ent.CreateGrant(request, metadata=namespace)).grant


async def list_grants(ent: Ent, namespace: Metadata = None, **filters: Any) -> list[pb.Grant]:
    """ListGrants, every page."""
    request = pb.ListGrantsRequest(**filters)
    grants: list[pb.Grant] = []
    while True:
        reply = await ent.ListGrants(request, metadata=namespace)
        grants.extend(reply.grants)
        if not reply.page.next_page_token:
            return grants
        request.page.page_token = reply.page.next_page_token


async def balances(ent: Ent, entitlement_id: str, namespace: Metadata = None) -> list[Decimal]:
    """The balances of an entitlement's active grants now, in burn-down order."""
    return [d(g.balance) for g in await list_grants(ent, namespace, entitlement=by_id(entitlement_id))]


async def list_entitlements(ent: Ent, namespace: Metadata = None, **filters: Any) -> list[pb.Entitlement]:
    """ListEntitlements, every page."""
    request = pb.ListEntitlementsRequest(**filters)
    found: list[pb.Entitlement] = []
    while True:
        reply = await ent.ListEntitlements(request, metadata=namespace)
        found.extend(reply.entitlements)
        if not reply.page.next_page_token:
            return found
        request.page.page_token = reply.page.next_page_token


async def reset_usage(
    ent: Ent,
    entitlement_id: str,
    at: datetime | None = None,
    *,
    request_id: str = "",
    namespace: Metadata = None,
    **fields: Any,
) -> pb.Entitlement:
    request = pb.ResetUsageRequest(
        request_id=request_id or f"reset-{next(_event_ids)}", entitlement=by_id(entitlement_id), **fields
    )
    if at is not None:
        request.effective_at.CopyFrom(ts(at))
    return (await ent.ResetUsage(request, metadata=namespace)).entitlement


async def history(
    ent: Ent,
    entitlement_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    window: int = common_pb2.WINDOW_SIZE_UNSPECIFIED,
    time_zone: str = "",
    namespace: Metadata = None,
) -> pb.GetEntitlementHistoryResponse:
    request = pb.GetEntitlementHistoryRequest(
        entitlement=by_id(entitlement_id),
        window_size=window,  # type: ignore[arg-type]
        time_zone=time_zone,
    )
    if start is not None:
        request.time_range.start_time.CopyFrom(ts(start))
    if end is not None:
        request.time_range.end_time.CopyFrom(ts(end))
    return await ent.GetEntitlementHistory(request, metadata=namespace)


def reason(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of an error."""
    return error_info(error).reason
