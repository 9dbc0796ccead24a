"""Exports the catalog as a document that applies back with no changes.

Per key one version is exported: the DRAFT when asked for and there is one, else the latest published
version (with its ``effective_from``, so that applying the export recognises it: planning rule 1); keys
whose exported version is ARCHIVED are left out unless asked for, as are archived features. Output-only
fields are dropped except a published version's ``effective_from``; names equal to their key are dropped
too (a name defaults to the key). Entries are ordered by key, fields in proto order, map entries by key,
amounts and decimals written as strings: the same catalog always exports to the same text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor

from catalog import convert
from catalog.document.changes import CatalogState, current_draft, latest_published
from catalog.document.source import DocumentFormat, dump
from catalog.domain import AddOn, Feature, Plan, VersionStatus, status_of
from metering.catalog.v1 import catalog_pb2 as pb
from meterlib.periods import as_utc

V = TypeVar("V", Plan, AddOn)

_DROPPED = ("version", "status", "effective_to", "create_time", "update_time", "archive_time")


def exported_version(
    versions: Sequence[V], *, now: datetime, include_drafts: bool = False, include_archived: bool = False
) -> V | None:
    """The version of one key an export shows, or None when the key is left out."""
    draft = current_draft(versions, now) if include_drafts else None
    chosen = draft or latest_published(versions)
    if chosen is None or (not include_archived and status_of(chosen, now) is VersionStatus.ARCHIVED):
        return None
    return chosen  # type: ignore[return-value]


def to_proto_document(
    features: Iterable[Feature], plans: Iterable[Plan], add_ons: Iterable[AddOn], *, now: datetime
) -> pb.CatalogDocument:
    """The document of these resources (ordered by key, output-only fields dropped)."""
    document = pb.CatalogDocument()
    for feature in sorted(features, key=lambda f: f.key):
        message = convert.to_proto_feature(feature)
        _drop_output_only(message)
        document.features.append(message)
    for plan in sorted(plans, key=lambda p: p.key):
        plan_message = convert.to_proto_plan(plan, now)
        _drop_output_only(plan_message)
        for phase in plan_message.phases:
            _drop_default_name(phase)
            for card in phase.rate_cards:
                _drop_default_name(card)
        document.plans.append(plan_message)
    for add_on in sorted(add_ons, key=lambda a: a.key):
        add_on_message = convert.to_proto_add_on(add_on, now)
        _drop_output_only(add_on_message)
        for card in add_on_message.rate_cards:
            _drop_default_name(card)
        document.add_ons.append(add_on_message)
    return document


def _drop_output_only(message: Any) -> None:
    for name in _DROPPED:
        if name in message.DESCRIPTOR.fields_by_name:
            message.ClearField(name)
    _drop_default_name(message)


def _drop_default_name(message: Any) -> None:
    if message.name == message.key:
        message.ClearField("name")


def document_text(document: pb.CatalogDocument, format: DocumentFormat = DocumentFormat.YAML) -> str:
    """The text of a document: its proto3 JSON mapping (proto field names) as YAML or JSON."""
    data = json_format.MessageToDict(document, preserving_proto_field_name=True)
    return dump(_sorted_maps(data, document.DESCRIPTOR), format)


def _sorted_maps(data: dict[str, Any], descriptor: Descriptor) -> dict[str, Any]:
    """``data`` with the entries of every map field ordered by key (proto maps have no order)."""
    result: dict[str, Any] = {}
    for name, value in data.items():
        field = descriptor.fields_by_name[name]
        message = field.message_type
        if message is not None and message.GetOptions().map_entry:
            value = dict(sorted(value.items()))
        elif message is not None and message.full_name != "google.protobuf.Timestamp":
            if isinstance(value, list):
                value = [_sorted_maps(item, message) for item in value]
            else:
                value = _sorted_maps(value, message)
        result[name] = value
    return result


def export_catalog(
    state: CatalogState,
    *,
    now: datetime,
    format: DocumentFormat = DocumentFormat.YAML,
    include_archived: bool = False,
    include_drafts: bool = False,
) -> str:
    """The catalog ``state`` holds (its features, plans and add-ons) as document text, per
    ExportCatalogRequest's options (see the module doc)."""
    now = as_utc(now, "now")
    features = [f for f in state.features.values() if include_archived or not f.is_archived]
    drafts, archived = include_drafts, include_archived
    plans = [
        exported_version(v, now=now, include_drafts=drafts, include_archived=archived)
        for v in state.plans.values()
    ]
    add_ons = [
        exported_version(v, now=now, include_drafts=drafts, include_archived=archived)
        for v in state.add_ons.values()
    ]
    chosen = to_proto_document(
        features, [p for p in plans if p is not None], [a for a in add_ons if a is not None], now=now
    )
    return document_text(chosen, format)
