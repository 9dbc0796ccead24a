"""Envoy external authorization, without the network: routes, and the responses Envoy acts on."""

from __future__ import annotations

from decimal import Decimal

import pytest
from google.rpc import code_pb2

from entitlements.gateway import (
    BALANCE_HEADER,
    REASON_HEADER,
    RouteRule,
    allowed,
    denied,
    parse_routes,
    route,
)
from entitlements.hot.decide import CheckResult, DenyReason
from entitlements.hot.index import EntitlementKind
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2

ROUTES = """[
  {"method": "POST", "path_prefix": "/v1/chat", "header": "X-Api-Key", "feature": "gpt4", "consume": "1"},
  {"path_prefix": "/v1/", "header": "x-customer", "by": "customer", "feature": "api"}
]"""


def _request(
    method: str, path: str, headers: dict[str, str], request_id: str = "req-1"
) -> external_auth_pb2.CheckRequest:
    http = attribute_context_pb2.AttributeContext.HttpRequest(
        id=request_id, method=method, path=path, headers=headers
    )
    return external_auth_pb2.CheckRequest(
        attributes=attribute_context_pb2.AttributeContext(
            request=attribute_context_pb2.AttributeContext.Request(http=http)
        )
    )


def _headers(options: list[base_pb2.HeaderValueOption]) -> dict[str, str]:
    return {o.header.key: o.header.value for o in options}


def test_routes_parse_and_the_first_match_wins() -> None:
    rules = parse_routes(ROUTES)
    assert rules[0] == RouteRule("/v1/chat", "x-api-key", "gpt4", method="POST", consume=Decimal(1))
    chat = route(rules, _request("post", "/v1/chat/completions?x=1", {"x-api-key": "key-1"}))
    assert chat is not None and (chat.rule.feature, chat.identity, chat.request_id) == (
        "gpt4",
        "key-1",
        "req-1",
    )
    other = route(rules, _request("GET", "/v1/chat", {"x-customer": "acme"}))
    assert other is not None and (other.rule.feature, other.rule.by_customer, other.identity) == (
        "api",
        True,
        "acme",
    )
    assert route(rules, _request("GET", "/health", {})) is None


def test_raw_header_maps_are_read_too() -> None:
    http = attribute_context_pb2.AttributeContext.HttpRequest(
        method="POST",
        path="/v1/chat",
        header_map=base_pb2.HeaderMap(headers=[base_pb2.HeaderValue(key="x-api-key", raw_value=b"key-2")]),
    )
    request = external_auth_pb2.CheckRequest(
        attributes=attribute_context_pb2.AttributeContext(
            request=attribute_context_pb2.AttributeContext.Request(http=http)
        )
    )
    found = route(parse_routes(ROUTES), request)
    assert found is not None and found.identity == "key-2"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "not JSON"),
        ('{"a": 1}', "JSON list"),
        ('[{"path_prefix": "/", "header": "h"}]', "[0].feature"),
        ('[{"path_prefix": "/", "header": "h", "feature": "f", "consume": "-1"}]', "[0].consume"),
        ('[{"path_prefix": "/", "header": "h", "feature": "f", "by": "who"}]', "[0].by"),
        ('[{"path_prefix": "/", "header": "h", "feature": "f", "extra": 1}]', "unknown fields"),
    ],
)
def test_bad_routes_are_refused_with_the_reason(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        parse_routes(text)


def test_an_allowed_request_carries_the_balance() -> None:
    result = CheckResult(True, kind=EntitlementKind.METERED, balance=Decimal("41.5"), usage=Decimal("58.5"))
    response = allowed("gpt4", result)
    assert response.status.code == code_pb2.OK and response.HasField("ok_response")
    assert _headers(list(response.ok_response.response_headers_to_add))[BALANCE_HEADER] == "41.5"


def test_an_exhausted_quota_is_429_and_no_entitlement_is_403() -> None:
    exhausted = denied(
        "gpt4", CheckResult(False, DenyReason.LIMIT_REACHED, EntitlementKind.METERED, balance=Decimal(0))
    )
    assert (
        exhausted.denied_response.status.code == 429 and exhausted.status.code == code_pb2.RESOURCE_EXHAUSTED
    )
    assert _headers(list(exhausted.denied_response.headers)) == {
        "x-metering-feature": "gpt4",
        BALANCE_HEADER: "0",
        REASON_HEADER: "LIMIT_REACHED",
    }
    forbidden = denied("sso", CheckResult(False, DenyReason.NO_ENTITLEMENT))
    assert (
        forbidden.denied_response.status.code == 403 and forbidden.status.code == code_pb2.PERMISSION_DENIED
    )
    assert _headers(list(forbidden.denied_response.headers))[REASON_HEADER] == "NO_ENTITLEMENT"
