"""The port to the catalog service: plan and add-on versions, and the features their rate cards name.

Billing owns no plans; it asks catalog's public API (``metering.catalog.v1.CatalogService.GetPlan``,
``GetAddOn``, ``GetFeature``), never its tables, and keeps what it read as the subscription's snapshot
(``billing.plans``). Each call carries a deadline and the caller's namespace and request id and is retried
only when catalog could not answer (see ``meterlib.remote``); every call here is a read, so retrying is
safe.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from billing.plans import add_on_from_proto, plan_from_proto
from billing.service.subscription_ports import CatalogAddOn, CatalogPlan, Published
from metering.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from meterlib.remote import RemoteService, gather_all
from meterlib.wire import optional_time, to_timestamp


def _published(version: catalog_pb2.Plan | catalog_pb2.AddOn) -> Published:
    return Published(
        published=version.status != catalog_pb2.VERSION_STATUS_DRAFT and version.HasField("effective_from"),
        effective_from=optional_time(version, "effective_from"),
        effective_to=optional_time(version, "effective_to"),
    )


class GrpcPlanCatalog:
    """PlanCatalog over gRPC."""

    def __init__(self, address: str, *, deadline_seconds: float, attempts: int) -> None:
        # The channel connects lazily: billing starts, and serves everything but subscription changes,
        # while catalog is still starting or down.
        self._catalog = RemoteService(
            "catalog", address, deadline_seconds=deadline_seconds, attempts=attempts
        )
        self._stub = catalog_pb2_grpc.CatalogServiceStub(self._catalog.channel)

    async def plan(
        self, namespace: str, key: str, *, version: int = 0, as_of: datetime | None = None
    ) -> CatalogPlan | None:
        """The plan version (by number, else effective at ``as_of``, else now), None when there is none."""
        request = catalog_pb2.GetPlanRequest(key=key)
        _select(request, version, as_of)
        reply: catalog_pb2.GetPlanResponse | None = await self._catalog.find(
            self._stub.GetPlan, request, namespace=namespace, what=f"plan {key!r}"
        )
        if reply is None:
            return None
        found = reply.plan
        cards = (card for phase in found.phases for card in phase.rate_cards)
        features = await self._features(namespace, (card.feature_key for card in cards))
        return CatalogPlan(plan_from_proto(found, features), _published(found))

    async def add_on(
        self, namespace: str, key: str, *, version: int = 0, as_of: datetime | None = None
    ) -> CatalogAddOn | None:
        """The add-on version, selected as :meth:`plan` selects plans."""
        request = catalog_pb2.GetAddOnRequest(key=key)
        _select(request, version, as_of)
        reply: catalog_pb2.GetAddOnResponse | None = await self._catalog.find(
            self._stub.GetAddOn, request, namespace=namespace, what=f"add-on {key!r}"
        )
        if reply is None:
            return None
        found = reply.add_on
        features = await self._features(namespace, (card.feature_key for card in found.rate_cards))
        return CatalogAddOn(add_on_from_proto(found, features), _published(found))

    async def _features(self, namespace: str, keys: Iterable[str]) -> dict[str, catalog_pb2.Feature]:
        """The features named, asked concurrently; one catalog does not know is left out (the plan
        conversion then refuses a usage price on it)."""
        wanted = sorted({key for key in keys if key})
        found = await gather_all(self._feature(namespace, key) for key in wanted)
        return {feature.key: feature for feature in found if feature is not None}

    async def _feature(self, namespace: str, key: str) -> catalog_pb2.Feature | None:
        reply: catalog_pb2.GetFeatureResponse | None = await self._catalog.find(
            self._stub.GetFeature,
            catalog_pb2.GetFeatureRequest(key=key),
            namespace=namespace,
            what=f"feature {key!r}",
        )
        return None if reply is None else reply.feature

    async def close(self) -> None:
        """Close the channel."""
        await self._catalog.close()


def _select(
    request: catalog_pb2.GetPlanRequest | catalog_pb2.GetAddOnRequest, version: int, as_of: datetime | None
) -> None:
    if version:
        request.version = version
    elif as_of is not None:
        stamp: Timestamp = to_timestamp(as_of)
        request.as_of.CopyFrom(stamp)
