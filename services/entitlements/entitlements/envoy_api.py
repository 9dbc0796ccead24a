"""``envoy.service.auth.v3.Authorization/Check``: Envoy, Istio and other Envoy-based gateways call it
inline for every request. Decode (entitlements.gateway), ask the hot path, encode."""

from __future__ import annotations

import uuid
from typing import Any

from entitlements.gateway import RouteRule, allowed, denied, route
from entitlements.hot.decide import CheckResult, DenyReason
from entitlements.hot.path import HotPath
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from meterlib.context import namespace


class AuthorizationApi(external_auth_pb2_grpc.AuthorizationServicer):
    """Envoy's external authorization, answered by the route rules and the hot path."""

    def __init__(self, rules: list[RouteRule], checks: HotPath) -> None:
        self._rules = rules
        self._checks = checks

    async def Check(
        self, request: external_auth_pb2.CheckRequest, context: Any
    ) -> external_auth_pb2.CheckResponse:
        found = route(self._rules, request)
        if found is None:
            return allowed()  # no rule guards this request
        rule = found.rule
        if not found.identity:
            return denied(rule.feature, CheckResult(False, DenyReason.CUSTOMER_UNKNOWN))
        who = {"customer_key": found.identity} if rule.by_customer else {"subject_key": found.identity}
        if rule.consume is None:
            result = await self._checks.check(namespace(), feature_key=rule.feature, at=None, **who)
        else:
            consumption = await self._checks.consume(
                namespace(),
                feature_key=rule.feature,
                amount=rule.consume,
                # Envoy's request id makes a retried authorization of the same request consume once.
                idempotency_key=found.request_id or uuid.uuid4().hex,
                at=None,
                **who,
            )
            result = consumption.check
            if not consumption.consumed:
                return denied(rule.feature, result)
        return allowed(rule.feature, result) if result.has_access else denied(rule.feature, result)
