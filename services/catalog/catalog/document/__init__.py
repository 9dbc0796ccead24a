"""Catalog as code: the pure part of ApplyCatalog and ExportCatalog (no I/O).

A catalog document is a ``metering.catalog.v1.CatalogDocument`` in the proto3 JSON mapping, written as YAML
(default) or JSON: features, plans and add-ons, one entry per key (see docs/catalog-as-code.md).

ApplyCatalog, inside one transaction::

    document = parse_document(request.document, document_format_from_proto(request.format))
    state = CatalogState(features=..., plans=..., add_ons=..., meter_dimensions=..., unknown_meters=...)
    diff = diff_catalog(document, state, now=clock(), prune=request.prune)
    if not request.dry_run:
        for step in diff.steps: ...write it...
    return to_proto_apply_response(diff, dry_run=request.dry_run)

ExportCatalog: ``export_catalog(state, now=..., format=..., include_archived=..., include_drafts=...)``.

Modules: ``source`` (text ⇄ plain values, YAML/JSON rules and limits), ``schema`` (plain values checked
against the proto messages), ``reading`` (the document as domain inputs, and its rules), ``fields``
(changed field paths), ``changes`` (state, diff and writes), ``planning`` (the diff rules), ``export``
and ``wire`` (proto enums and the response).
"""

from catalog.document.changes import (
    ArchiveFeature,
    ArchiveVersion,
    CatalogChange,
    CatalogDiff,
    CatalogState,
    ChangeAction,
    Content,
    CreateFeature,
    CreateVersion,
    PublishVersion,
    ResourceType,
    Step,
    UpdateDraft,
    Version,
    current_draft,
    latest_published,
)
from catalog.document.export import document_text, export_catalog, exported_version, to_proto_document
from catalog.document.fields import changed_fields
from catalog.document.planning import diff_catalog
from catalog.document.reading import (
    CatalogDocument,
    DocumentAddOn,
    DocumentFeature,
    DocumentPlan,
    parse_document,
)
from catalog.document.source import MAX_DOCUMENT_BYTES, MAX_VALUES, DocumentFormat
from catalog.document.wire import (
    document_format_from_proto,
    document_format_to_proto,
    to_proto_apply_response,
    to_proto_change,
)

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "MAX_VALUES",
    "ArchiveFeature",
    "ArchiveVersion",
    "CatalogChange",
    "CatalogDiff",
    "CatalogDocument",
    "CatalogState",
    "ChangeAction",
    "Content",
    "CreateFeature",
    "CreateVersion",
    "DocumentAddOn",
    "DocumentFeature",
    "DocumentFormat",
    "DocumentPlan",
    "PublishVersion",
    "ResourceType",
    "Step",
    "UpdateDraft",
    "Version",
    "changed_fields",
    "current_draft",
    "diff_catalog",
    "document_format_from_proto",
    "document_format_to_proto",
    "document_text",
    "export_catalog",
    "exported_version",
    "latest_published",
    "parse_document",
    "to_proto_apply_response",
    "to_proto_change",
    "to_proto_document",
]
