"""Envoy's external authorization through the wire: a CheckRequest built from the proto (what Envoy
sends) is allowed, denied with 429 when the quota is spent and 403 without an entitlement, with the
balance headers set either way."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import code_pb2

from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from meterlib.server import ServiceRunner
from tests.integration.entitlements.conftest import ServeEntitlements
from tests.integration.entitlements.helpers import (
    create_entitlement,
    create_grant,
    grant,
    tokens_feature,
    upsert_customer,
)

ROUTES = [
    {
        "method": "POST",
        "path_prefix": "/v1/chat",
        "header": "x-api-key",
        "feature": "gpt4_tokens",
        "consume": "40",
    },
    {"path_prefix": "/v1/admin", "header": "x-api-key", "feature": "admin_console"},
]


@pytest.fixture
async def gateway(
    serve_entitlements: ServeEntitlements, catalog_server: ServiceRunner, ingest_server: ServiceRunner
) -> AsyncIterator[external_auth_pb2_grpc.AuthorizationStub]:
    runner = await serve_entitlements(
        catalog_server.port, ingest_server.port, gateway_routes=json.dumps(ROUTES)
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runner.port}") as channel:
        yield external_auth_pb2_grpc.AuthorizationStub(channel)


def _request(path: str, key: str, request_id: str, method: str = "POST") -> external_auth_pb2.CheckRequest:
    http = attribute_context_pb2.AttributeContext.HttpRequest(
        id=request_id, method=method, path=path, headers={"x-api-key": key, ":authority": "api.example.com"}
    )
    return external_auth_pb2.CheckRequest(
        attributes=attribute_context_pb2.AttributeContext(
            request=attribute_context_pb2.AttributeContext.Request(http=http)
        )
    )


def _headers(options: object) -> dict[str, str]:
    return {o.header.key: o.header.value for o in options}  # type: ignore[attr-defined]


async def test_allowed_then_429_then_403(
    gateway: object, ent: object, ingest: object, catalog: object
) -> None:
    await tokens_feature(ingest, catalog)  # type: ignore[arg-type]
    await upsert_customer(ent)  # type: ignore[arg-type]  # acme, subject (API key) acme-prod
    made = await create_entitlement(ent)  # type: ignore[arg-type]
    await create_grant(ent, made.id, grant(100))  # type: ignore[arg-type]

    first = await gateway.Check(_request("/v1/chat/completions", "acme-prod", "r1"))  # type: ignore[attr-defined]
    assert first.status.code == code_pb2.OK
    assert _headers(first.ok_response.response_headers_to_add)["x-metering-balance"] == "60"
    retried = await gateway.Check(_request("/v1/chat/completions", "acme-prod", "r1"))  # type: ignore[attr-defined]
    assert _headers(retried.ok_response.headers)["x-metering-balance"] == "60"  # the same request, once

    second = await gateway.Check(_request("/v1/chat/completions", "acme-prod", "r2"))  # type: ignore[attr-defined]
    assert _headers(second.ok_response.headers)["x-metering-balance"] == "20"
    third = await gateway.Check(_request("/v1/chat/completions", "acme-prod", "r3"))  # type: ignore[attr-defined]
    assert third.status.code == code_pb2.RESOURCE_EXHAUSTED
    assert third.denied_response.status.code == 429
    assert _headers(third.denied_response.headers) == {
        "x-metering-feature": "gpt4_tokens",
        "x-metering-balance": "20",
        "x-metering-usage": "80",
        "x-metering-deny-reason": "INSUFFICIENT_BALANCE",
    }

    admin = await gateway.Check(_request("/v1/admin/users", "acme-prod", "r4", method="GET"))  # type: ignore[attr-defined]
    assert (admin.status.code, admin.denied_response.status.code) == (code_pb2.PERMISSION_DENIED, 403)
    assert _headers(admin.denied_response.headers)["x-metering-deny-reason"] == "NO_ENTITLEMENT"

    stranger = await gateway.Check(_request("/v1/chat", "unknown-key", "r5"))  # type: ignore[attr-defined]
    assert stranger.denied_response.status.code == 403
    free = await gateway.Check(_request("/health", "", "r6", method="GET"))  # type: ignore[attr-defined]
    assert free.status.code == code_pb2.OK  # no rule guards it
