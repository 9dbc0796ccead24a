"""The v1 gRPC contract: generated code is current, buf lint is clean, descriptors keep the API rules."""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"


def _load_gen_protos() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_protos = _load_gen_protos()

PB2_MODULES = [
    "metering.common.v1.common_pb2",
    "metering.ingest.v1.ingest_pb2",
    "metering.catalog.v1.catalog_pb2",
    "metering.entitlements.v1.entitlements_pb2",
    "metering.billing.v1.billing_pb2",
    "envoy.config.core.v3.base_pb2",
    "envoy.type.v3.http_status_pb2",
    "envoy.service.auth.v3.attribute_context_pb2",
    "envoy.service.auth.v3.external_auth_pb2",
]

EXPECTED_RPCS: dict[tuple[str, str], set[str]] = {
    ("metering.ingest.v1.ingest_pb2", "IngestService"): {
        "CreateMeter",
        "GetMeter",
        "ListMeters",
        "UpdateMeter",
        "ArchiveMeter",
        "Ingest",
        "IngestStream",
        "ListEvents",
        "ListInvalidEvents",
        "QueryUsage",
    },
    ("metering.catalog.v1.catalog_pb2", "CatalogService"): {
        "CreateFeature",
        "GetFeature",
        "ListFeatures",
        "ArchiveFeature",
        "CreatePlan",
        "GetPlan",
        "ListPlans",
        "UpdateDraftPlan",
        "PublishPlan",
        "ArchivePlan",
        "NewDraftPlanVersion",
        "CreateAddOn",
        "GetAddOn",
        "ListAddOns",
        "UpdateDraftAddOn",
        "PublishAddOn",
        "ArchiveAddOn",
        "NewDraftAddOnVersion",
        "ApplyCatalog",
        "ExportCatalog",
    },
    ("metering.entitlements.v1.entitlements_pb2", "EntitlementsService"): {
        "UpsertCustomer",
        "GetCustomer",
        "DeleteCustomer",
        "CreateEntitlement",
        "GetEntitlement",
        "ListEntitlements",
        "OverrideEntitlement",
        "DeleteEntitlement",
        "CreateGrant",
        "VoidGrant",
        "ListGrants",
        "Check",
        "CheckBatch",
        "CheckAndConsume",
        "ResetUsage",
        "GetEntitlementHistory",
    },
    ("metering.billing.v1.billing_pb2", "BillingService"): {
        "CreateCustomer",
        "GetCustomer",
        "ListCustomers",
        "UpdateCustomer",
        "DeleteCustomer",
        "CreateSubscription",
        "GetSubscription",
        "ListSubscriptions",
        "ChangeSubscriptionPlan",
        "MigrateSubscription",
        "SetSubscriptionAddOn",
        "CancelSubscription",
        "UndoCancelSubscription",
        "RunInvoices",
        "CreateProgressiveInvoice",
        "GetInvoice",
        "ListInvoices",
        "UpdateDraftInvoice",
        "RecalculateInvoice",
        "IssueInvoice",
        "MarkInvoicePaid",
        "VoidInvoice",
        "MarkInvoiceUncollectible",
        "PreviewInvoice",
        "CreateCredit",
        "ListCredits",
        "VoidCredit",
        "CreateCreditNote",
        "GetCreditNote",
        "ListCreditNotes",
    },
    ("envoy.service.auth.v3.external_auth_pb2", "Authorization"): {"Check"},
}

# Field numbers of Envoy's ext_authz v3 API (envoyproxy/envoy api/envoy/...); the subset must match
# them exactly to stay wire-compatible with Envoy.
ENVOY_FIELD_NUMBERS: dict[str, dict[str, int]] = {
    "envoy.service.auth.v3.CheckRequest": {"attributes": 1},
    "envoy.service.auth.v3.CheckResponse": {
        "status": 1,
        "denied_response": 2,
        "ok_response": 3,
        "dynamic_metadata": 4,
    },
    "envoy.service.auth.v3.DeniedHttpResponse": {"status": 1, "headers": 2, "body": 3},
    "envoy.service.auth.v3.OkHttpResponse": {
        "headers": 2,
        "dynamic_metadata": 3,
        "headers_to_remove": 5,
        "response_headers_to_add": 6,
        "query_parameters_to_set": 7,
        "query_parameters_to_remove": 8,
    },
    "envoy.service.auth.v3.AttributeContext": {
        "source": 1,
        "destination": 2,
        "request": 4,
        "context_extensions": 10,
        "metadata_context": 11,
        "tls_session": 12,
        "route_metadata_context": 13,
    },
    "envoy.service.auth.v3.AttributeContext.Peer": {
        "service": 2,
        "labels": 3,
        "principal": 4,
        "certificate": 5,
    },
    "envoy.service.auth.v3.AttributeContext.Request": {"time": 1, "http": 2},
    "envoy.service.auth.v3.AttributeContext.HttpRequest": {
        "id": 1,
        "method": 2,
        "headers": 3,
        "path": 4,
        "host": 5,
        "scheme": 6,
        "query": 7,
        "fragment": 8,
        "size": 9,
        "protocol": 10,
        "body": 11,
        "raw_body": 12,
        "header_map": 13,
    },
    "envoy.service.auth.v3.AttributeContext.TLSSession": {"sni": 1},
    "envoy.config.core.v3.HeaderValue": {"key": 1, "value": 2, "raw_value": 3},
    "envoy.config.core.v3.HeaderValueOption": {
        "header": 1,
        "append": 2,
        "append_action": 3,
        "keep_empty_value": 4,
    },
    "envoy.config.core.v3.HeaderMap": {"headers": 1},
    "envoy.config.core.v3.Metadata": {"filter_metadata": 1},
    "envoy.config.core.v3.QueryParameter": {"key": 1, "value": 2},
    "envoy.type.v3.HttpStatus": {"code": 1},
}


def _file_descriptors() -> list[FileDescriptor]:
    return [importlib.import_module(name).DESCRIPTOR for name in PB2_MODULES]


def _messages(descriptors: Iterator[Descriptor] | list[Descriptor]) -> Iterator[Descriptor]:
    for message in descriptors:
        yield message
        yield from _messages(list(message.nested_types))


def _all_messages() -> Iterator[Descriptor]:
    for file in _file_descriptors():
        yield from _messages(list(file.message_types_by_name.values()))


def _buf() -> str:
    beside = Path(sys.executable).parent / "buf"
    found = str(beside) if beside.exists() else shutil.which("buf")
    if found is None:
        pytest.fail("buf not found: install the dev extras (buf-bin)")
    return found


def test_generated_code_is_current() -> None:
    problems = gen_protos.differences(ROOT / "libs", PROTOS)
    assert problems == [], "libs/ is stale; run scripts/gen_protos.py:\n" + "\n".join(problems)


def test_generated_code_is_deterministic(tmp_path: Path) -> None:
    first = gen_protos.generate(tmp_path / "a", PROTOS)
    second = gen_protos.generate(tmp_path / "b", PROTOS)
    assert first == second
    for path in first:
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes(), path


def test_buf_lint_is_clean() -> None:
    result = subprocess.run([_buf(), "lint"], cwd=PROTOS, capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_buf_build_succeeds_offline() -> None:
    result = subprocess.run(
        [_buf(), "build", "-o", "-#format=binpb"], cwd=PROTOS, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr.decode()


@pytest.mark.parametrize(("module", "service"), sorted(EXPECTED_RPCS))
def test_services_have_expected_rpcs(module: str, service: str) -> None:
    descriptor = importlib.import_module(module).DESCRIPTOR.services_by_name[service]
    assert {method.name for method in descriptor.methods} == EXPECTED_RPCS[(module, service)]
    grpc_module = importlib.import_module(module + "_grpc")
    assert hasattr(grpc_module, f"{service}Servicer")
    assert hasattr(grpc_module, f"{service}Stub")


def test_ingest_stream_is_client_streaming() -> None:
    from metering.ingest.v1 import ingest_pb2

    methods = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].methods_by_name
    assert methods["IngestStream"].client_streaming
    assert not methods["IngestStream"].server_streaming
    assert not methods["Ingest"].client_streaming


def test_no_field_is_named_namespace() -> None:
    offenders = [
        field.full_name
        for message in _all_messages()
        for field in message.fields
        if field.name == "namespace"
    ]
    assert offenders == []


def test_no_float_or_double_in_metering_messages() -> None:
    floating = {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT}
    offenders = [
        field.full_name
        for message in _all_messages()
        if message.full_name.startswith("metering.")
        for field in message.fields
        if field.type in floating
    ]
    assert offenders == []


def test_money_is_a_decimal_string_with_currency() -> None:
    from metering.common.v1 import common_pb2

    money = common_pb2.Money(amount="12.50", currency="USD")
    assert common_pb2.Money.FromString(money.SerializeToString()) == money
    fields = {field.name: field.type for field in common_pb2.Money.DESCRIPTOR.fields}
    assert fields == {"amount": FieldDescriptor.TYPE_STRING, "currency": FieldDescriptor.TYPE_STRING}


def test_enums_have_unspecified_zero_values() -> None:
    for file in _file_descriptors():
        if not file.package.startswith("metering."):
            continue
        enums = list(file.enum_types_by_name.values())
        enums += [
            enum
            for message in _messages(list(file.message_types_by_name.values()))
            for enum in message.enum_types
        ]
        for enum in enums:
            assert enum.values_by_number[0].name.endswith("_UNSPECIFIED"), enum.full_name


def test_envoy_subset_field_numbers_match_envoy() -> None:
    from google.protobuf import descriptor_pool

    import envoy.service.auth.v3.external_auth_pb2  # noqa: F401  (registers the subset)

    pool = descriptor_pool.Default()
    for message_name, numbers in ENVOY_FIELD_NUMBERS.items():
        message = pool.FindMessageTypeByName(message_name)
        assert {name: message.fields_by_name[name].number for name in numbers} == numbers, message_name
    check_response = pool.FindMessageTypeByName("envoy.service.auth.v3.CheckResponse")
    status_type = check_response.fields_by_name["status"].message_type
    assert status_type is not None and status_type.full_name == "google.rpc.Status"
    assert [field.name for field in check_response.oneofs_by_name["http_response"].fields] == [
        "denied_response",
        "ok_response",
    ]
    append_action = pool.FindEnumTypeByName("envoy.config.core.v3.HeaderValueOption.HeaderAppendAction")
    assert {value.name: value.number for value in append_action.values} == {
        "APPEND_IF_EXISTS_OR_ADD": 0,
        "ADD_IF_ABSENT": 1,
        "OVERWRITE_IF_EXISTS_OR_ADD": 2,
        "OVERWRITE_IF_EXISTS": 3,
    }
    status = pool.FindEnumTypeByName("envoy.type.v3.StatusCode")
    assert (status.values_by_name["OK"].number, status.values_by_name["Forbidden"].number) == (200, 403)


def test_envoy_check_round_trips_with_google_rpc_status() -> None:
    from google.rpc import code_pb2, status_pb2

    from envoy.service.auth.v3 import external_auth_pb2

    response = external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code_pb2.PERMISSION_DENIED),
        denied_response=external_auth_pb2.DeniedHttpResponse(body="quota exhausted"),
    )
    parsed = external_auth_pb2.CheckResponse.FromString(response.SerializeToString())
    assert parsed.WhichOneof("http_response") == "denied_response"
    assert parsed.status.code == code_pb2.PERMISSION_DENIED
