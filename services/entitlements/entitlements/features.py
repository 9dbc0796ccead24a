"""The port to the catalog service: a feature's meter and group filters, and whether it is archived.

Entitlements owns no features; it asks catalog's public API (``metering.catalog.v1.CatalogService.
GetFeature``), never its tables, and copies what it needs into the entitlement when it is made. Each call
carries a deadline and the caller's namespace and request id and is retried only when catalog could not
answer (see ``meterlib.remote``).
"""

from __future__ import annotations

from typing import Protocol

from entitlements.domain.entitlements import Feature
from metering.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from meterlib.remote import RemoteService


class FeatureDirectory(Protocol):
    """Where entitlements learns about features."""

    async def feature(self, namespace: str, key: str) -> Feature | None:
        """The feature, archived or not; None when there is no such feature.

        Raises ``meterlib.errors.Unavailable`` when the answer cannot be had.
        """
        ...


class CatalogFeatureDirectory:
    """FeatureDirectory over gRPC: catalog's GetFeature."""

    def __init__(self, address: str, *, deadline_seconds: float, attempts: int) -> None:
        # The channel connects lazily: entitlements starts, and serves everything but entitlement
        # creation, while catalog is still starting or down.
        self._catalog = RemoteService(
            "catalog", address, deadline_seconds=deadline_seconds, attempts=attempts
        )
        self._stub = catalog_pb2_grpc.CatalogServiceStub(self._catalog.channel)

    async def feature(self, namespace: str, key: str) -> Feature | None:
        """The feature; None when catalog reports NOT_FOUND."""
        reply: catalog_pb2.GetFeatureResponse | None = await self._catalog.find(
            self._stub.GetFeature,
            catalog_pb2.GetFeatureRequest(key=key),
            namespace=namespace,
            what=f"feature {key!r}",
        )
        if reply is None:
            return None
        found = reply.feature
        return Feature(
            key=found.key,
            meter_key=found.meter_key,
            meter_group_filters=dict(found.meter_group_filters),
            archived=found.HasField("archive_time"),
        )

    async def close(self) -> None:
        """Close the channel."""
        await self._catalog.close()
