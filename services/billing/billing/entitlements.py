"""The port to the entitlements service: the copy of each customer it checks by.

Billing owns customers; entitlements keeps a copy (key and subject keys) written only through its public
API (``metering.entitlements.v1.EntitlementsService.UpsertCustomer`` / ``DeleteCustomer``), never its
tables. Each call carries a deadline and the caller's namespace and request id and is retried only when
entitlements could not answer (see ``meterlib.remote``); both calls are idempotent, so a retry is safe.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from billing.service.ports import CopyConflict
from metering.entitlements.v1 import entitlements_pb2, entitlements_pb2_grpc
from meterlib.remote import call_metadata, call_with_retries

T = TypeVar("T")


def _error_metadata(exc: grpc.aio.AioRpcError) -> dict[str, str]:
    """The ``google.rpc.ErrorInfo`` metadata of an error, empty when it carries none."""
    status = rpc_status.from_call(exc)
    if status is None:
        return {}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return dict(info.metadata)
    return {}


class GrpcCustomerCopies:
    """CustomerCopies over gRPC: entitlements' UpsertCustomer and DeleteCustomer."""

    def __init__(self, address: str, *, deadline_seconds: float, attempts: int) -> None:
        self._address = address
        self._deadline = deadline_seconds
        self._attempts = attempts
        # The channel connects lazily: billing starts, and serves what needs no copy, while entitlements
        # is still starting or down.
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = entitlements_pb2_grpc.EntitlementsServiceStub(self._channel)

    async def _call(self, ask: Callable[[], Awaitable[T]], what: str) -> T:
        try:
            return await call_with_retries(
                ask, service="entitlements", what=what, attempts=self._attempts, address=self._address
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
                found = _error_metadata(exc)
                if "customer_key" in found:
                    raise CopyConflict(found.get("subject_key", ""), found["customer_key"]) from exc
            raise RuntimeError(
                f"entitlements refused {what} with {exc.code().name}: {exc.details()}"
            ) from exc

    async def upsert_customer(self, namespace: str, key: str, subject_keys: Sequence[str]) -> None:
        """Create or replace the copy."""
        request = entitlements_pb2.UpsertCustomerRequest(
            customer=entitlements_pb2.Customer(key=key, subject_keys=list(subject_keys))
        )
        metadata = call_metadata(namespace)

        async def ask() -> entitlements_pb2.UpsertCustomerResponse:
            reply: entitlements_pb2.UpsertCustomerResponse = await self._stub.UpsertCustomer(
                request, timeout=self._deadline, metadata=metadata
            )
            return reply

        await self._call(ask, f"the copy of customer {key!r}")

    async def delete_customer(self, namespace: str, key: str) -> None:
        """Delete the copy."""
        request = entitlements_pb2.DeleteCustomerRequest(key=key)
        metadata = call_metadata(namespace)

        async def ask() -> entitlements_pb2.DeleteCustomerResponse:
            reply: entitlements_pb2.DeleteCustomerResponse = await self._stub.DeleteCustomer(
                request, timeout=self._deadline, metadata=metadata
            )
            return reply

        await self._call(ask, f"the deletion of customer {key!r}")

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()
