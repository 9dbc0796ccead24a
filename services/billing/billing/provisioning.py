"""The port to the entitlements service for subscriptions: the entitlements their items provision.

Written only through entitlements' public API (``CreateEntitlement``, ``OverrideEntitlement``,
``DeleteEntitlement``), never its tables. Each call carries a deadline and the caller's namespace and
request id and is retried only when entitlements could not answer (see ``meterlib.remote``): create and
override are idempotent by the request id billing derives from the subscription item, delete by nature.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from billing.service.subscription_ports import EntitlementSpec
from metering.common.v1 import common_pb2
from metering.entitlements.v1 import entitlements_pb2 as epb
from metering.entitlements.v1 import entitlements_pb2_grpc
from meterlib.remote import call_metadata, call_with_retries
from meterlib.wire import to_proto_decimal, to_timestamp

T = TypeVar("T")

_PAIR_TAKEN = "ERROR_REASON_KEY_CONFLICT"
"""The reason entitlements gives when the customer already has an active entitlement to the feature."""


def _reason(exc: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(exc)
    if status is None:
        return ""
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


def to_proto_entitlement(spec: EntitlementSpec) -> epb.Entitlement:
    """The entitlement message of a spec."""
    message = epb.Entitlement(
        customer_key=spec.customer_key,
        feature_key=spec.feature_key,
        active_from=to_timestamp(spec.active_from),
        metadata=dict(spec.metadata),
    )
    if spec.active_to is not None:
        message.active_to.CopyFrom(to_timestamp(spec.active_to))
    if spec.kind == "boolean":
        message.boolean.SetInParent()
    elif spec.kind == "static":
        message.static.config = spec.static_config
    else:
        assert spec.usage_period is not None and spec.usage_anchor is not None
        metered = epb.MeteredConfig(
            usage_period=common_pb2.UsagePeriod(
                interval=spec.usage_period.to_iso(), anchor=to_timestamp(spec.usage_anchor)
            ),
            issue_after_reset_priority=spec.issue_after_reset_priority,
            is_soft_limit=spec.is_soft_limit,
            preserve_overage_at_reset=spec.preserve_overage_at_reset,
        )
        if spec.measure_usage_from is not None:
            metered.measure_usage_from.CopyFrom(to_timestamp(spec.measure_usage_from))
        # Entitlements takes "no recurring grant" as unset, where the catalog template says "0".
        if spec.issue_after_reset:
            metered.issue_after_reset.CopyFrom(to_proto_decimal(spec.issue_after_reset))
        message.metered.CopyFrom(metered)
    return message


class GrpcEntitlementProvisioner:
    """EntitlementProvisioner over gRPC."""

    def __init__(self, address: str, *, deadline_seconds: float, attempts: int) -> None:
        self._address = address
        self._deadline = deadline_seconds
        self._attempts = attempts
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = entitlements_pb2_grpc.EntitlementsServiceStub(self._channel)

    async def _call(self, ask: Callable[[], Awaitable[T]], what: str) -> T:
        return await call_with_retries(
            ask, service="entitlements", what=what, attempts=self._attempts, address=self._address
        )

    async def create(self, namespace: str, request_id: str, spec: EntitlementSpec) -> str:
        """CreateEntitlement; when the pair already has an active entitlement, OverrideEntitlement."""
        request = epb.CreateEntitlementRequest(request_id=request_id, entitlement=to_proto_entitlement(spec))
        metadata = call_metadata(namespace)

        async def ask() -> epb.CreateEntitlementResponse:
            reply: epb.CreateEntitlementResponse = await self._stub.CreateEntitlement(
                request, timeout=self._deadline, metadata=metadata
            )
            return reply

        what = f"the entitlement of customer {spec.customer_key!r} to feature {spec.feature_key!r}"
        try:
            return (await self._call(ask, what)).entitlement.id
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.ALREADY_EXISTS and _reason(exc) == _PAIR_TAKEN:
                # The subscription decides what the customer is entitled to: it takes the pair over.
                return await self.replace(namespace, f"{request_id}/o", spec)
            raise _refused(exc, what) from exc

    async def replace(self, namespace: str, request_id: str, spec: EntitlementSpec) -> str:
        """OverrideEntitlement; when the pair has no active entitlement (deleted by hand), create."""
        request = epb.OverrideEntitlementRequest(
            request_id=request_id, entitlement=to_proto_entitlement(spec)
        )
        metadata = call_metadata(namespace)

        async def ask() -> epb.OverrideEntitlementResponse:
            reply: epb.OverrideEntitlementResponse = await self._stub.OverrideEntitlement(
                request, timeout=self._deadline, metadata=metadata
            )
            return reply

        what = f"the entitlement of customer {spec.customer_key!r} to feature {spec.feature_key!r}"
        try:
            return (await self._call(ask, what)).entitlement.id
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND and not request_id.endswith("/o"):
                return await self.create(namespace, f"{request_id}/c", spec)
            raise _refused(exc, what) from exc

    async def delete(self, namespace: str, entitlement_id: str) -> None:
        """DeleteEntitlement by id; NOT_FOUND is fine (nothing to delete)."""
        request = epb.DeleteEntitlementRequest(entitlement=epb.EntitlementRef(entitlement_id=entitlement_id))
        metadata = call_metadata(namespace)

        async def ask() -> epb.DeleteEntitlementResponse:
            reply: epb.DeleteEntitlementResponse = await self._stub.DeleteEntitlement(
                request, timeout=self._deadline, metadata=metadata
            )
            return reply

        what = f"the deletion of entitlement {entitlement_id!r}"
        try:
            await self._call(ask, what)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise _refused(exc, what) from exc

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()


def _refused(exc: grpc.aio.AioRpcError, what: str) -> RuntimeError:
    return RuntimeError(f"entitlements refused {what} with {exc.code().name}: {exc.details()}")
