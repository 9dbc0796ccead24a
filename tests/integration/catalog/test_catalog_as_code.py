"""ApplyCatalog and ExportCatalog through the API: the examples apply cleanly, applying twice changes
nothing, exports apply back with no diff, dry runs write nothing, namespaces stay apart."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import yaml
from google.protobuf import json_format

from metering.catalog.v1 import catalog_pb2 as pb
from metering.ingest.v1 import ingest_pb2
from meterlib.clock import FixedClock
from tests.integration.catalog.helpers import IngestStub, Stub, list_plans, rpc_error
from tests.integration.ingest.helpers import assert_violations

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
NAMES = ["llm-provider", "api-platform", "cloud-infrastructure"]
UNCHANGED = pb.CATALOG_CHANGE_ACTION_UNCHANGED


async def _create_meters(
    ingest: IngestStub, name: str, md: tuple[tuple[str, str], ...] | None = None
) -> None:
    for item in yaml.safe_load((EXAMPLES / f"{name}.meters.yaml").read_text())["meters"]:
        meter = json_format.ParseDict(item, ingest_pb2.Meter())
        await ingest.CreateMeter(ingest_pb2.CreateMeterRequest(meter=meter), metadata=md)


async def _apply(catalog: Stub, text: str, **kwargs: object) -> pb.ApplyCatalogResponse:
    return await catalog.ApplyCatalog(pb.ApplyCatalogRequest(document=text, **kwargs))  # type: ignore[arg-type]


def _actions(response: pb.ApplyCatalogResponse) -> list[tuple[str, str, list[str]]]:
    return [
        (
            pb.CatalogResourceType.Name(c.resource_type).removeprefix("CATALOG_RESOURCE_TYPE_"),
            c.key,
            [pb.CatalogChangeAction.Name(a).removeprefix("CATALOG_CHANGE_ACTION_") for a in c.actions],
        )
        for c in response.changes
    ]


@pytest.mark.parametrize("name", NAMES)
async def test_each_example_applies_once_and_exports_back_unchanged(
    catalog: Stub, ingest: IngestStub, name: str
) -> None:
    await _create_meters(ingest, name)
    text = (EXAMPLES / f"{name}.yaml").read_text()

    first = await _apply(catalog, text)
    assert first.changes and all(actions == ["CREATE"] for _, _, actions in _actions(first))
    assert await list_plans(catalog, statuses=[pb.VERSION_STATUS_DRAFT])  # the example's plans, as drafts

    again = await _apply(catalog, text)
    assert all(actions == ["UNCHANGED"] for _, _, actions in _actions(again)), _actions(again)

    for format in (pb.DOCUMENT_FORMAT_YAML, pb.DOCUMENT_FORMAT_JSON):
        exported = await catalog.ExportCatalog(pb.ExportCatalogRequest(format=format, include_drafts=True))
        assert exported.format == format
        back = await _apply(catalog, exported.document, format=format)
        assert all(actions == ["UNCHANGED"] for _, _, actions in _actions(back)), _actions(back)


async def test_a_dry_run_reports_and_writes_nothing(catalog: Stub, ingest: IngestStub) -> None:
    await _create_meters(ingest, "api-platform")
    text = (EXAMPLES / "api-platform.yaml").read_text()
    dry = await _apply(catalog, text, dry_run=True)
    assert dry.dry_run and dry.changes
    assert await list_plans(catalog) == []
    assert _actions(await _apply(catalog, text)) == _actions(dry)


async def test_a_change_to_a_published_plan_makes_a_new_version_and_publishes_it_when_asked(
    catalog: Stub, ingest: IngestStub, clock: FixedClock
) -> None:
    start = clock.now()
    document = f"""
features:
  - key: sso
    name: Single sign-on
plans:
  - key: team
    name: Team
    currency: USD
    billing_cadence: P1M
    effective_from: "{start.isoformat()}"
    phases:
      - key: default
        rate_cards:
          - key: base
            price: {{flat: {{amount: {{amount: "20", currency: USD}}}}}}
"""
    created = await _apply(catalog, document)
    assert _actions(created) == [("FEATURE", "sso", ["CREATE"]), ("PLAN", "team", ["CREATE", "PUBLISH"])]
    later = start.replace(year=start.year + 1)
    changed = document.replace('"20"', '"25"').replace(start.isoformat(), later.isoformat())
    response = await _apply(catalog, changed)
    assert _actions(response) == [
        ("FEATURE", "sso", ["UNCHANGED"]),
        ("PLAN", "team", ["NEW_VERSION", "PUBLISH"]),
    ]
    plan_change = response.changes[1]
    assert plan_change.version == 2 and "phases[0].rate_cards[0].price" in " ".join(
        plan_change.changed_fields
    )
    assert all(a == ["UNCHANGED"] for _, _, a in _actions(await _apply(catalog, changed)))


async def test_a_bad_document_names_every_problem(catalog: Stub) -> None:
    document = """
features:
  - key: Bad Key
plans:
  - key: team
    currency: usd
    billing_cadence: P1M
    phases: []
"""
    error = await rpc_error(_apply(catalog, document))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert_violations(
        error, "document.features[0].key", "document.plans[0].currency", "document.plans[0].phases"
    )


async def test_namespaces_never_see_each_others_catalog(
    catalog: Stub, ingest: IngestStub, in_namespace: object
) -> None:
    acme = in_namespace("acme")  # type: ignore[operator]
    await catalog.ApplyCatalog(pb.ApplyCatalogRequest(document="features: [{key: sso}]"), metadata=acme)
    other = await catalog.ExportCatalog(pb.ExportCatalogRequest(), metadata=in_namespace("other"))  # type: ignore[operator]
    mine = await catalog.ExportCatalog(pb.ExportCatalogRequest(), metadata=acme)
    assert "sso" in mine.document and "sso" not in other.document
