"""The port to the entitlements service: the copy of each customer it checks by.

Billing owns customers; entitlements keeps a copy (key and subject keys) written only through its public
API (``metering.entitlements.v1.EntitlementsService.UpsertCustomer`` / ``DeleteCustomer``), never its
tables. Each call carries a deadline and the caller's namespace and request id and is retried only when
entitlements could not answer (see ``meterlib.remote``); both calls are idempotent, so a retry is safe.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

from billing.service.ports import CopyConflict
from metering.entitlements.v1 import entitlements_pb2, entitlements_pb2_grpc
from meterlib.remote import RemoteService, error_info


class GrpcCustomerCopies:
    """CustomerCopies over gRPC: entitlements' UpsertCustomer and DeleteCustomer."""

    def __init__(self, address: str, *, deadline_seconds: float, attempts: int) -> None:
        # The channel connects lazily: billing starts, and serves what needs no copy, while entitlements
        # is still starting or down.
        self._entitlements = RemoteService(
            "entitlements", address, deadline_seconds=deadline_seconds, attempts=attempts
        )
        self._stub = entitlements_pb2_grpc.EntitlementsServiceStub(self._entitlements.channel)

    async def _call(
        self, rpc: Callable[..., Awaitable[Any]], request: Any, namespace: str, what: str
    ) -> None:
        """``rpc(request)``; CopyConflict when entitlements finds a subject key on another customer."""
        try:
            await self._entitlements.call(rpc, request, namespace=namespace, what=what)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
                found = error_info(exc).metadata
                if "customer_key" in found:
                    raise CopyConflict(found.get("subject_key", ""), found["customer_key"]) from exc
            raise self._entitlements.refused(exc, what) from exc

    async def upsert_customer(self, namespace: str, key: str, subject_keys: Sequence[str]) -> None:
        """Create or replace the copy."""
        request = entitlements_pb2.UpsertCustomerRequest(
            customer=entitlements_pb2.Customer(key=key, subject_keys=list(subject_keys))
        )
        await self._call(self._stub.UpsertCustomer, request, namespace, f"the copy of customer {key!r}")

    async def delete_customer(self, namespace: str, key: str) -> None:
        """Delete the copy."""
        request = entitlements_pb2.DeleteCustomerRequest(key=key)
        await self._call(self._stub.DeleteCustomer, request, namespace, f"the deletion of customer {key!r}")

    async def close(self) -> None:
        """Close the channel."""
        await self._entitlements.close()
