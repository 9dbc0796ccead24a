"""The CatalogService servicer: decode, call one service method, encode. No rules here."""

from __future__ import annotations

from typing import Any

from catalog import convert
from catalog.document import document_format_from_proto, document_format_to_proto, to_proto_apply_response
from catalog.domain import AddOn, Plan, VersionStatus
from catalog.service import (
    AddOnService,
    CatalogDocuments,
    FeatureService,
    GetVersionInput,
    ListVersionsInput,
    PlanService,
)
from catalog.store import VersionRef
from metering.catalog.v1 import catalog_pb2 as pb
from metering.catalog.v1 import catalog_pb2_grpc
from metering.common.v1 import common_pb2
from meterlib.clock import Clock
from meterlib.context import namespace
from meterlib.errors import FieldViolation, InvalidArgument
from meterlib.paging import decode_token, encode_token, page_size

_STATUSES = {
    pb.VERSION_STATUS_DRAFT: VersionStatus.DRAFT,
    pb.VERSION_STATUS_SCHEDULED: VersionStatus.SCHEDULED,
    pb.VERSION_STATUS_ACTIVE: VersionStatus.ACTIVE,
    pb.VERSION_STATUS_ARCHIVED: VersionStatus.ARCHIVED,
}


def _page(next_token: str) -> common_pb2.PageResponse:
    return common_pb2.PageResponse(next_page_token=next_token)


def _get_input(request: pb.GetPlanRequest | pb.GetAddOnRequest) -> GetVersionInput:
    selector = request.WhichOneof("selector")
    return GetVersionInput(
        key=request.key,
        version=request.version if selector == "version" else None,
        as_of=convert.from_timestamp(request.as_of) if selector == "as_of" else None,
    )


def _list_input(request: pb.ListPlansRequest | pb.ListAddOnsRequest) -> ListVersionsInput:
    return ListVersionsInput(
        keys=tuple(request.keys),
        statuses=tuple(_STATUSES.get(value) for value in request.statuses),
        currency=request.currency if isinstance(request, pb.ListPlansRequest) else "",
        compatible_plan_key=request.compatible_plan_key if isinstance(request, pb.ListAddOnsRequest) else "",
        latest_only=request.latest_only,
    )


def _list_filters(selection: ListVersionsInput) -> list[Any]:
    """What a page token is bound to."""
    return [
        sorted(selection.keys),
        sorted(str(s) for s in selection.statuses),
        selection.currency,
        selection.compatible_plan_key,
        selection.latest_only,
    ]


def _bad_token() -> InvalidArgument:
    return InvalidArgument.fields([FieldViolation("page.page_token", "is not a token this API issued")])


def _key_position(token: str, filters: Any) -> str | None:
    position = decode_token(token, filters)
    if position is not None and not isinstance(position, str):
        raise _bad_token()
    return position


def _version_position(token: str, filters: list[Any]) -> VersionRef | None:
    position = decode_token(token, filters)
    if position is None:
        return None
    match position:
        case [str(key), int(number)]:
            return VersionRef(key, number)
    raise _bad_token()


def _next_token(versions: list[Plan] | list[AddOn], limit: int, filters: list[Any]) -> str:
    if len(versions) <= limit:
        return ""
    last = versions[limit - 1]
    return encode_token([last.key, last.version], filters)


class CatalogApi(catalog_pb2_grpc.CatalogServiceServicer):
    """gRPC face of the catalog service."""

    def __init__(
        self,
        features: FeatureService,
        plans: PlanService,
        add_ons: AddOnService,
        documents: CatalogDocuments,
        clock: Clock,
    ) -> None:
        self._documents = documents
        self._features = features
        self._plans = plans
        self._add_ons = add_ons
        self._clock = clock  # statuses in responses are those at the time of the response

    def _plan(self, plan: Plan) -> pb.Plan:
        return convert.to_proto_plan(plan, self._clock.now())

    def _add_on(self, add_on: AddOn) -> pb.AddOn:
        return convert.to_proto_add_on(add_on, self._clock.now())

    # --- features ------------------------------------------------------------------------------------

    async def CreateFeature(self, request: pb.CreateFeatureRequest, context: Any) -> pb.CreateFeatureResponse:
        feature = await self._features.create(namespace(), convert.from_proto_create_feature(request))
        return pb.CreateFeatureResponse(feature=convert.to_proto_feature(feature))

    async def GetFeature(self, request: pb.GetFeatureRequest, context: Any) -> pb.GetFeatureResponse:
        feature = await self._features.get(namespace(), request.key)
        return pb.GetFeatureResponse(feature=convert.to_proto_feature(feature))

    async def ListFeatures(self, request: pb.ListFeaturesRequest, context: Any) -> pb.ListFeaturesResponse:
        filters = {"meters": sorted(request.meter_keys), "archived": request.include_archived}
        limit = page_size(request.page.page_size)
        features = await self._features.list_features(
            namespace(),
            meter_keys=list(request.meter_keys),
            include_archived=request.include_archived,
            after_key=_key_position(request.page.page_token, filters),
            limit=limit + 1,
        )
        token = encode_token(features[limit - 1].key, filters) if len(features) > limit else ""
        return pb.ListFeaturesResponse(
            features=[convert.to_proto_feature(f) for f in features[:limit]], page=_page(token)
        )

    async def ArchiveFeature(
        self, request: pb.ArchiveFeatureRequest, context: Any
    ) -> pb.ArchiveFeatureResponse:
        feature = await self._features.archive(namespace(), request.key)
        return pb.ArchiveFeatureResponse(feature=convert.to_proto_feature(feature))

    # --- plans ---------------------------------------------------------------------------------------

    async def CreatePlan(self, request: pb.CreatePlanRequest, context: Any) -> pb.CreatePlanResponse:
        plan = await self._plans.create(namespace(), convert.from_proto_create_plan(request))
        return pb.CreatePlanResponse(plan=self._plan(plan))

    async def GetPlan(self, request: pb.GetPlanRequest, context: Any) -> pb.GetPlanResponse:
        plan = await self._plans.get(namespace(), _get_input(request))
        return pb.GetPlanResponse(plan=self._plan(plan))

    async def ListPlans(self, request: pb.ListPlansRequest, context: Any) -> pb.ListPlansResponse:
        selection = _list_input(request)
        filters = _list_filters(selection)
        limit = page_size(request.page.page_size)
        plans = await self._plans.list_versions(
            namespace(),
            selection,
            after=_version_position(request.page.page_token, filters),
            limit=limit + 1,
        )
        return pb.ListPlansResponse(
            plans=[self._plan(p) for p in plans[:limit]], page=_page(_next_token(plans, limit, filters))
        )

    async def UpdateDraftPlan(
        self, request: pb.UpdateDraftPlanRequest, context: Any
    ) -> pb.UpdateDraftPlanResponse:
        plan = await self._plans.update_draft(namespace(), convert.from_proto_update_draft_plan(request))
        return pb.UpdateDraftPlanResponse(plan=self._plan(plan))

    async def PublishPlan(self, request: pb.PublishPlanRequest, context: Any) -> pb.PublishPlanResponse:
        plan = await self._plans.publish(namespace(), convert.from_proto_publish(request))
        return pb.PublishPlanResponse(plan=self._plan(plan))

    async def ArchivePlan(self, request: pb.ArchivePlanRequest, context: Any) -> pb.ArchivePlanResponse:
        plan = await self._plans.archive(namespace(), convert.from_proto_archive(request))
        return pb.ArchivePlanResponse(plan=self._plan(plan))

    async def NewDraftPlanVersion(
        self, request: pb.NewDraftPlanVersionRequest, context: Any
    ) -> pb.NewDraftPlanVersionResponse:
        plan = await self._plans.new_draft(namespace(), convert.from_proto_new_draft(request))
        return pb.NewDraftPlanVersionResponse(plan=self._plan(plan))

    # --- add-ons -------------------------------------------------------------------------------------

    async def CreateAddOn(self, request: pb.CreateAddOnRequest, context: Any) -> pb.CreateAddOnResponse:
        add_on = await self._add_ons.create(namespace(), convert.from_proto_create_add_on(request))
        return pb.CreateAddOnResponse(add_on=self._add_on(add_on))

    async def GetAddOn(self, request: pb.GetAddOnRequest, context: Any) -> pb.GetAddOnResponse:
        add_on = await self._add_ons.get(namespace(), _get_input(request))
        return pb.GetAddOnResponse(add_on=self._add_on(add_on))

    async def ListAddOns(self, request: pb.ListAddOnsRequest, context: Any) -> pb.ListAddOnsResponse:
        selection = _list_input(request)
        filters = _list_filters(selection)
        limit = page_size(request.page.page_size)
        add_ons = await self._add_ons.list_versions(
            namespace(),
            selection,
            after=_version_position(request.page.page_token, filters),
            limit=limit + 1,
        )
        return pb.ListAddOnsResponse(
            add_ons=[self._add_on(a) for a in add_ons[:limit]],
            page=_page(_next_token(add_ons, limit, filters)),
        )

    async def UpdateDraftAddOn(
        self, request: pb.UpdateDraftAddOnRequest, context: Any
    ) -> pb.UpdateDraftAddOnResponse:
        add_on = await self._add_ons.update_draft(
            namespace(), convert.from_proto_update_draft_add_on(request)
        )
        return pb.UpdateDraftAddOnResponse(add_on=self._add_on(add_on))

    async def PublishAddOn(self, request: pb.PublishAddOnRequest, context: Any) -> pb.PublishAddOnResponse:
        add_on = await self._add_ons.publish(namespace(), convert.from_proto_publish(request))
        return pb.PublishAddOnResponse(add_on=self._add_on(add_on))

    async def ArchiveAddOn(self, request: pb.ArchiveAddOnRequest, context: Any) -> pb.ArchiveAddOnResponse:
        add_on = await self._add_ons.archive(namespace(), convert.from_proto_archive(request))
        return pb.ArchiveAddOnResponse(add_on=self._add_on(add_on))

    async def NewDraftAddOnVersion(
        self, request: pb.NewDraftAddOnVersionRequest, context: Any
    ) -> pb.NewDraftAddOnVersionResponse:
        add_on = await self._add_ons.new_draft(namespace(), convert.from_proto_new_draft(request))
        return pb.NewDraftAddOnVersionResponse(add_on=self._add_on(add_on))

    # --- catalog documents ---------------------------------------------------------------------------

    async def ApplyCatalog(self, request: pb.ApplyCatalogRequest, context: Any) -> pb.ApplyCatalogResponse:
        diff = await self._documents.apply(
            namespace(),
            request.document,
            document_format_from_proto(request.format),
            dry_run=request.dry_run,
            prune=request.prune,
        )
        return to_proto_apply_response(diff, dry_run=request.dry_run)

    async def ExportCatalog(self, request: pb.ExportCatalogRequest, context: Any) -> pb.ExportCatalogResponse:
        format = document_format_from_proto(request.format)
        text = await self._documents.export(
            namespace(),
            format,
            include_archived=request.include_archived,
            include_drafts=request.include_drafts,
        )
        return pb.ExportCatalogResponse(document=text, format=document_format_to_proto(format))
