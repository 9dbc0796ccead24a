"""Proto ⇄ domain conversion of what ApplyCatalog and ExportCatalog carry besides the document text."""

from __future__ import annotations

from typing import Final

from catalog.document.changes import CatalogChange, CatalogDiff, ChangeAction, ResourceType
from catalog.document.source import DocumentFormat
from metering.catalog.v1 import catalog_pb2 as pb
from meterlib.errors import FieldViolation, InvalidArgument

_FORMATS: Final = {
    pb.DOCUMENT_FORMAT_UNSPECIFIED: DocumentFormat.YAML,
    pb.DOCUMENT_FORMAT_YAML: DocumentFormat.YAML,
    pb.DOCUMENT_FORMAT_JSON: DocumentFormat.JSON,
}
_FORMAT_VALUES: Final = {
    DocumentFormat.YAML: pb.DOCUMENT_FORMAT_YAML,
    DocumentFormat.JSON: pb.DOCUMENT_FORMAT_JSON,
}
_RESOURCE_TYPES: Final = {
    ResourceType.FEATURE: pb.CATALOG_RESOURCE_TYPE_FEATURE,
    ResourceType.PLAN: pb.CATALOG_RESOURCE_TYPE_PLAN,
    ResourceType.ADD_ON: pb.CATALOG_RESOURCE_TYPE_ADD_ON,
}
_ACTIONS: Final = {
    ChangeAction.UNCHANGED: pb.CATALOG_CHANGE_ACTION_UNCHANGED,
    ChangeAction.CREATE: pb.CATALOG_CHANGE_ACTION_CREATE,
    ChangeAction.UPDATE_DRAFT: pb.CATALOG_CHANGE_ACTION_UPDATE_DRAFT,
    ChangeAction.NEW_VERSION: pb.CATALOG_CHANGE_ACTION_NEW_VERSION,
    ChangeAction.PUBLISH: pb.CATALOG_CHANGE_ACTION_PUBLISH,
    ChangeAction.ARCHIVE: pb.CATALOG_CHANGE_ACTION_ARCHIVE,
}


def document_format_from_proto(value: int, field: str = "format") -> DocumentFormat:
    """The format a request names; UNSPECIFIED is YAML. InvalidArgument (at ``field``) for unknown values."""
    if value not in _FORMATS:
        raise InvalidArgument.fields(
            [FieldViolation(field, f"unknown value {value}: DOCUMENT_FORMAT_YAML or DOCUMENT_FORMAT_JSON")]
        )
    return _FORMATS[value]  # type: ignore[index]


def document_format_to_proto(format: DocumentFormat) -> pb.DocumentFormat.ValueType:
    """The wire value of a format."""
    return _FORMAT_VALUES[format]


def to_proto_change(change: CatalogChange) -> pb.CatalogChange:
    """The wire form of one entry of the diff."""
    return pb.CatalogChange(
        resource_type=_RESOURCE_TYPES[change.resource_type],
        key=change.key,
        version=change.version,
        actions=[_ACTIONS[action] for action in change.actions],
        changed_fields=change.changed_fields,
    )


def to_proto_apply_response(diff: CatalogDiff, *, dry_run: bool) -> pb.ApplyCatalogResponse:
    """The ApplyCatalog response of a diff."""
    return pb.ApplyCatalogResponse(changes=[to_proto_change(c) for c in diff.changes], dry_run=dry_run)
