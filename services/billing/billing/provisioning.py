"""The port to the entitlements service for subscriptions: the entitlements their items provision.

Written only through entitlements' public API (``CreateEntitlement``, ``OverrideEntitlement``,
``DeleteEntitlement``), never its tables. Each call carries a deadline and the caller's namespace and
request id and is retried only when entitlements could not answer (see ``meterlib.remote``): create and
override are idempotent by the request id billing derives from the subscription item, delete by nature.
"""

from __future__ import annotations

import grpc

from billing.service.subscription_ports import EntitlementSpec
from metering.common.v1 import common_pb2
from metering.entitlements.v1 import entitlements_pb2 as epb
from metering.entitlements.v1 import entitlements_pb2_grpc
from meterlib.remote import RemoteService, error_info
from meterlib.wire import to_proto_decimal, to_timestamp

_PAIR_TAKEN = "ERROR_REASON_KEY_CONFLICT"
"""The reason entitlements gives when the customer already has an active entitlement to the feature."""


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
        self._entitlements = RemoteService(
            "entitlements", address, deadline_seconds=deadline_seconds, attempts=attempts
        )
        self._stub = entitlements_pb2_grpc.EntitlementsServiceStub(self._entitlements.channel)

    async def create(self, namespace: str, request_id: str, spec: EntitlementSpec) -> str:
        """CreateEntitlement; when the pair already has an active entitlement, OverrideEntitlement."""
        request = epb.CreateEntitlementRequest(request_id=request_id, entitlement=to_proto_entitlement(spec))
        what = f"the entitlement of customer {spec.customer_key!r} to feature {spec.feature_key!r}"
        try:
            reply: epb.CreateEntitlementResponse = await self._entitlements.call(
                self._stub.CreateEntitlement, request, namespace=namespace, what=what
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.ALREADY_EXISTS and error_info(exc).reason == _PAIR_TAKEN:
                # The subscription decides what the customer is entitled to: it takes the pair over.
                return await self.replace(namespace, f"{request_id}/o", spec)
            raise self._entitlements.refused(exc, what) from exc
        return reply.entitlement.id

    async def replace(self, namespace: str, request_id: str, spec: EntitlementSpec) -> str:
        """OverrideEntitlement; when the pair has no active entitlement (deleted by hand), create."""
        request = epb.OverrideEntitlementRequest(
            request_id=request_id, entitlement=to_proto_entitlement(spec)
        )
        what = f"the entitlement of customer {spec.customer_key!r} to feature {spec.feature_key!r}"
        try:
            reply: epb.OverrideEntitlementResponse = await self._entitlements.call(
                self._stub.OverrideEntitlement, request, namespace=namespace, what=what
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND and not request_id.endswith("/o"):
                return await self.create(namespace, f"{request_id}/c", spec)
            raise self._entitlements.refused(exc, what) from exc
        return reply.entitlement.id

    async def delete(self, namespace: str, entitlement_id: str) -> None:
        """DeleteEntitlement by id; NOT_FOUND is fine (nothing to delete)."""
        request = epb.DeleteEntitlementRequest(entitlement=epb.EntitlementRef(entitlement_id=entitlement_id))
        what = f"the deletion of entitlement {entitlement_id!r}"
        try:
            await self._entitlements.call(
                self._stub.DeleteEntitlement, request, namespace=namespace, what=what
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise self._entitlements.refused(exc, what) from exc

    async def close(self) -> None:
        """Close the channel."""
        await self._entitlements.close()
