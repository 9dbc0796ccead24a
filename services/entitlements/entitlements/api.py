"""The EntitlementsService servicer: decode, call one service method, encode. No rules here.

Check, CheckBatch and CheckAndConsume go to the hot path (entitlements.hot.path)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from entitlements import convert
from entitlements.domain import Entitlement, Grant
from entitlements.hot.path import HotPath
from entitlements.service import (
    CustomerService,
    EntitlementService,
    GrantService,
    ListEntitlementsInput,
    UsageService,
)
from entitlements.store import EntitlementPosition, GrantPosition
from metering.common.v1 import common_pb2
from metering.entitlements.v1 import entitlements_pb2 as pb
from metering.entitlements.v1 import entitlements_pb2_grpc
from meterlib.context import namespace
from meterlib.errors import FieldViolation, InvalidArgument
from meterlib.paging import decode_token, encode_token, page_size


def _page(next_token: str) -> common_pb2.PageResponse:
    return common_pb2.PageResponse(next_page_token=next_token)


def _bad_token() -> InvalidArgument:
    return InvalidArgument.fields([FieldViolation("page.page_token", "is not a token this API issued")])


def _time(text: Any) -> datetime:
    if not isinstance(text, str):
        raise _bad_token()
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise _bad_token() from None


def _entitlement_position(token: str, filters: Any) -> EntitlementPosition | None:
    position = decode_token(token, filters)
    if position is None:
        return None
    match position:
        case [str(customer), str(feature), str(created), str(entitlement_id)]:
            return EntitlementPosition(customer, feature, _time(created), entitlement_id)
    raise _bad_token()


def _entitlement_token(e: Entitlement, filters: Any) -> str:
    return encode_token([e.customer_key, e.feature_key, e.create_time.isoformat(), e.id], filters)


def _grant_position(token: str, filters: Any) -> GrantPosition | None:
    position = decode_token(token, filters)
    if position is None:
        return None
    match position:
        case [str(entitlement_id), int(priority), bool(no_expiry), str(order), str(created), str(grant_id)]:
            return GrantPosition(entitlement_id, priority, no_expiry, _time(order), _time(created), grant_id)
    raise _bad_token()


def _grant_token(g: Grant, filters: Any) -> str:
    p = GrantPosition.of(g)
    return encode_token(
        [
            p.entitlement_id,
            p.priority,
            p.no_expiry,
            p.order_time.isoformat(),
            p.create_time.isoformat(),
            p.id,
        ],
        filters,
    )


class EntitlementsApi(entitlements_pb2_grpc.EntitlementsServiceServicer):
    """gRPC face of the entitlements service's definitions and truth computations."""

    def __init__(
        self,
        customers: CustomerService,
        entitlements: EntitlementService,
        grants: GrantService,
        usage: UsageService,
        checks: HotPath,
    ) -> None:
        self._checks = checks
        self._customers = customers
        self._entitlements = entitlements
        self._grants = grants
        self._usage = usage

    # --- customers -----------------------------------------------------------------------------------

    async def UpsertCustomer(
        self, request: pb.UpsertCustomerRequest, context: Any
    ) -> pb.UpsertCustomerResponse:
        customer = await self._customers.upsert(namespace(), convert.from_proto_upsert_customer(request))
        return pb.UpsertCustomerResponse(customer=convert.to_proto_customer(customer))

    async def GetCustomer(self, request: pb.GetCustomerRequest, context: Any) -> pb.GetCustomerResponse:
        customer = await self._customers.get(namespace(), request.key)
        return pb.GetCustomerResponse(customer=convert.to_proto_customer(customer))

    async def DeleteCustomer(
        self, request: pb.DeleteCustomerRequest, context: Any
    ) -> pb.DeleteCustomerResponse:
        await self._customers.delete(namespace(), request.key)
        return pb.DeleteCustomerResponse()

    # --- entitlements --------------------------------------------------------------------------------

    async def CreateEntitlement(
        self, request: pb.CreateEntitlementRequest, context: Any
    ) -> pb.CreateEntitlementResponse:
        new = convert.from_proto_entitlement_input(
            request.request_id, request.entitlement, request.HasField("entitlement")
        )
        entitlement = await self._entitlements.create(namespace(), new)
        return pb.CreateEntitlementResponse(entitlement=convert.to_proto_entitlement(entitlement))

    async def GetEntitlement(
        self, request: pb.GetEntitlementRequest, context: Any
    ) -> pb.GetEntitlementResponse:
        ref = convert.from_proto_ref(request.entitlement, request.HasField("entitlement"))
        entitlement = await self._entitlements.get(namespace(), ref)
        return pb.GetEntitlementResponse(entitlement=convert.to_proto_entitlement(entitlement))

    async def ListEntitlements(
        self, request: pb.ListEntitlementsRequest, context: Any
    ) -> pb.ListEntitlementsResponse:
        selection = ListEntitlementsInput(
            customer_keys=list(request.customer_keys),
            feature_keys=list(request.feature_keys),
            types=convert.from_proto_types(request.types),
            include_deleted=request.include_deleted,
        )
        filters = [
            sorted(selection.customer_keys),
            sorted(selection.feature_keys),
            sorted(t.value for t in selection.types),
            selection.include_deleted,
        ]
        limit = page_size(request.page.page_size)
        found = await self._entitlements.list_entitlements(
            namespace(),
            selection,
            after=_entitlement_position(request.page.page_token, filters),
            limit=limit + 1,
        )
        token = _entitlement_token(found[limit - 1], filters) if len(found) > limit else ""
        return pb.ListEntitlementsResponse(
            entitlements=[convert.to_proto_entitlement(e) for e in found[:limit]], page=_page(token)
        )

    async def OverrideEntitlement(
        self, request: pb.OverrideEntitlementRequest, context: Any
    ) -> pb.OverrideEntitlementResponse:
        new = convert.from_proto_entitlement_input(
            request.request_id, request.entitlement, request.HasField("entitlement")
        )
        done = await self._entitlements.override(namespace(), new)
        return pb.OverrideEntitlementResponse(
            entitlement=convert.to_proto_entitlement(done.entitlement),
            replaced_entitlement_id=done.replaced_entitlement_id,
        )

    async def DeleteEntitlement(
        self, request: pb.DeleteEntitlementRequest, context: Any
    ) -> pb.DeleteEntitlementResponse:
        ref = convert.from_proto_ref(request.entitlement, request.HasField("entitlement"))
        entitlement = await self._entitlements.delete(namespace(), ref)
        return pb.DeleteEntitlementResponse(entitlement=convert.to_proto_entitlement(entitlement))

    # --- grants --------------------------------------------------------------------------------------

    async def CreateGrant(self, request: pb.CreateGrantRequest, context: Any) -> pb.CreateGrantResponse:
        grant = await self._grants.create(namespace(), convert.from_proto_create_grant(request))
        return pb.CreateGrantResponse(grant=convert.to_proto_grant(grant))

    async def VoidGrant(self, request: pb.VoidGrantRequest, context: Any) -> pb.VoidGrantResponse:
        grant = await self._grants.void(namespace(), request.grant_id)
        return pb.VoidGrantResponse(grant=convert.to_proto_grant(grant))

    async def ListGrants(self, request: pb.ListGrantsRequest, context: Any) -> pb.ListGrantsResponse:
        # A reference whose oneof is unset filters nothing, like an unset one.
        given = request.HasField("entitlement") and request.entitlement.WhichOneof("ref") is not None
        ref = convert.from_proto_ref(request.entitlement, True) if given else None
        filters = [
            None if ref is None else [ref.entitlement_id, ref.customer_key, ref.feature_key],
            sorted(request.customer_keys),
            request.include_inactive,
        ]
        limit = page_size(request.page.page_size)
        found = await self._grants.list_grants(
            namespace(),
            entitlement=ref,
            customer_keys=list(request.customer_keys),
            include_inactive=request.include_inactive,
            after=_grant_position(request.page.page_token, filters),
            limit=limit,
        )
        token = _grant_token(found[limit - 1], filters) if len(found) > limit else ""
        return pb.ListGrantsResponse(
            grants=[convert.to_proto_grant(g) for g in found[:limit]], page=_page(token)
        )

    # --- usage ---------------------------------------------------------------------------------------

    async def ResetUsage(self, request: pb.ResetUsageRequest, context: Any) -> pb.ResetUsageResponse:
        entitlement = await self._usage.reset(namespace(), convert.from_proto_reset(request))
        return pb.ResetUsageResponse(entitlement=convert.to_proto_entitlement(entitlement))

    async def GetEntitlementHistory(
        self, request: pb.GetEntitlementHistoryRequest, context: Any
    ) -> pb.GetEntitlementHistoryResponse:
        history = await self._usage.history(namespace(), convert.from_proto_history(request))
        return convert.to_proto_history(history)

    # --- the hot path ---------------------------------------------------------------------------------
    # Check and CheckBatch answer with the response already serialized (memoized per answer); the
    # server's response serializer passes bytes through.

    async def Check(self, request: pb.CheckRequest, context: Any) -> bytes:  # type: ignore[override]
        check = convert.from_proto_check(request)
        result = await self._checks.check(
            namespace(),
            customer_key=check.customer_key,
            subject_key=check.subject_key,
            feature_key=check.feature_key,
            at=check.at,
        )
        return convert.check_response_wire(result)

    async def CheckBatch(  # type: ignore[override]
        self, request: pb.CheckBatchRequest, context: Any
    ) -> bytes:
        results = await self._checks.check_many(namespace(), convert.from_proto_check_batch(request))
        return convert.check_batch_response_wire(results)

    async def CheckAndConsume(
        self, request: pb.CheckAndConsumeRequest, context: Any
    ) -> pb.CheckAndConsumeResponse:
        consumption = convert.from_proto_consume(request)
        outcome = await self._checks.consume(
            namespace(),
            customer_key=consumption.customer_key,
            subject_key=consumption.subject_key,
            feature_key=consumption.feature_key,
            amount=consumption.amount,
            idempotency_key=consumption.idempotency_key,
            at=consumption.at,
        )
        return pb.CheckAndConsumeResponse(
            consumed=outcome.consumed, check=convert.to_proto_check(outcome.check), replayed=outcome.replayed
        )
