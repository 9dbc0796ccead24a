"""Envoy external authorization: which feature a gateway request is about, and the answer Envoy
expects. No I/O: the servicer asks the service for the decision in between.

Route rules come from settings (``METERING_ENTITLEMENTS_GATEWAY_ROUTES``, a JSON list), first match
wins::

    [{"method": "POST", "path_prefix": "/v1/chat", "header": "x-api-key", "by": "subject",
      "feature": "gpt-4-tokens", "consume": "1"}]

``header`` names the request header carrying the caller's identity, a subject key (``by: subject``,
the default: what events carry, e.g. an API key) or a customer key (``by: customer``). With ``consume``
the request consumes that amount of a metered feature (idempotent by the request id Envoy sends);
without it, it is only checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from google.rpc import code_pb2, status_pb2

from entitlements.hot.decide import CheckResult, DenyReason
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2
from envoy.type.v3 import http_status_pb2
from meterlib.money import format_decimal

BALANCE_HEADER = "x-metering-balance"
USAGE_HEADER = "x-metering-usage"
FEATURE_HEADER = "x-metering-feature"
REASON_HEADER = "x-metering-deny-reason"

_QUOTA_REASONS = (DenyReason.LIMIT_REACHED, DenyReason.INSUFFICIENT_BALANCE)


@dataclass(frozen=True)
class RouteRule:
    """Requests a feature guards: method (empty: any) and path prefix, the identity header."""

    path_prefix: str
    header: str
    feature: str
    method: str = ""
    by_customer: bool = False
    consume: Decimal | None = None

    def matches(self, method: str, path: str) -> bool:
        """Whether the rule applies to a request."""
        return (not self.method or self.method == method.upper()) and path.startswith(self.path_prefix)


def parse_routes(text: str) -> list[RouteRule]:
    """The route rules of the setting's JSON; ValueError naming every problem."""
    if not text.strip():
        return []
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(items, list):
        raise ValueError("must be a JSON list of route rules")
    rules, problems = [], []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(f"[{i}]: must be an object")
            continue
        unknown = set(item) - {"method", "path_prefix", "header", "by", "feature", "consume"}
        if unknown:
            problems.append(f"[{i}]: unknown fields {sorted(unknown)}")
        for required in ("path_prefix", "header", "feature"):
            if not isinstance(item.get(required), str) or not item.get(required):
                problems.append(f"[{i}].{required}: required text")
        if item.get("by", "subject") not in ("subject", "customer"):
            problems.append(f"[{i}].by: 'subject' or 'customer'")
        consume = None
        if "consume" in item:
            try:
                consume = Decimal(str(item["consume"]))
            except InvalidOperation:
                consume = None
            if consume is None or not consume.is_finite() or consume <= 0:
                problems.append(f"[{i}].consume: a positive decimal")
        if not problems:
            rules.append(
                RouteRule(
                    path_prefix=item["path_prefix"],
                    header=item["header"].lower(),
                    feature=item["feature"],
                    method=str(item.get("method", "")).upper(),
                    by_customer=item.get("by") == "customer",
                    consume=consume,
                )
            )
    if problems:
        raise ValueError("; ".join(problems))
    return rules


@dataclass(frozen=True)
class GatewayRequest:
    """What the decision needs from an Envoy CheckRequest."""

    rule: RouteRule
    identity: str
    request_id: str


def route(rules: list[RouteRule], request: external_auth_pb2.CheckRequest) -> GatewayRequest | None:
    """The first rule matching the request, with the caller's identity; None when none applies."""
    http: attribute_context_pb2.AttributeContext.HttpRequest = request.attributes.request.http
    path = http.path.split("?", 1)[0]
    headers = _headers(http)
    for rule in rules:
        if rule.matches(http.method, path):
            return GatewayRequest(
                rule, headers.get(rule.header, ""), http.id or headers.get("x-request-id", "")
            )
    return None


def _headers(http: attribute_context_pb2.AttributeContext.HttpRequest) -> dict[str, str]:
    headers = {k.lower(): v for k, v in http.headers.items()}
    for header in http.header_map.headers:
        headers.setdefault(header.key.lower(), header.value or header.raw_value.decode(errors="replace"))
    return headers


def allowed(feature: str | None = None, result: CheckResult | None = None) -> external_auth_pb2.CheckResponse:
    """Let the request through, telling the upstream (and the client) the balance left."""
    headers = _result_headers(feature, result)
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code_pb2.OK),
        ok_response=external_auth_pb2.OkHttpResponse(headers=headers, response_headers_to_add=headers),
    )


def denied(feature: str, result: CheckResult) -> external_auth_pb2.CheckResponse:
    """Refuse: 429 when the quota is exhausted, 403 when there is no entitlement to use."""
    quota = result.deny_reason in _QUOTA_REASONS
    headers = _result_headers(feature, result)
    headers.append(_header(REASON_HEADER, result.deny_reason.value))
    status = http_status_pb2.TooManyRequests if quota else http_status_pb2.Forbidden
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(
            code=code_pb2.RESOURCE_EXHAUSTED if quota else code_pb2.PERMISSION_DENIED,
            message=f"{feature}: {result.deny_reason.value.lower().replace('_', ' ')}",
        ),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=status),
            headers=headers,
            body=json.dumps({"feature": feature, "reason": result.deny_reason.value}),
        ),
    )


def _result_headers(feature: str | None, result: CheckResult | None) -> list[base_pb2.HeaderValueOption]:
    headers = []
    if feature:
        headers.append(_header(FEATURE_HEADER, feature))
    if result is not None and result.balance is not None:
        headers.append(_header(BALANCE_HEADER, format_decimal(result.balance)))
    if result is not None and result.usage is not None:
        headers.append(_header(USAGE_HEADER, format_decimal(result.usage)))
    return headers


def _header(key: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, value=value),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )
