"""Proto ⇄ domain conversion of the entitlements service.

Decoding a request never raises on bad content: every problem found on the wire (decimal text that
``meterlib.money.parse_decimal`` refuses, a duration that is not ISO 8601, a missing required value, an
unknown enum value) becomes a field violation carried by the resulting ``…Input`` as
``decode_violations``; its ``validate()`` reports them together with the domain's rules, so a caller sees
every problem at once. ``to_proto_…`` writes canonical forms (``P1Y``, ``"12.5"``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from entitlements.burndown import Segment
from entitlements.domain import (
    CreateGrantInput,
    Customer,
    Entitlement,
    EntitlementInput,
    EntitlementRef,
    EntitlementType,
    Grant,
    History,
    HistoryInput,
    HistoryWindow,
    MeteredConfigInput,
    ResetUsageInput,
    UpsertCustomerInput,
    segment_overage,
)
from entitlements.hot.decide import CheckQuery, CheckResult, DenyReason
from entitlements.hot.index import EntitlementKind
from metering.common.v1 import common_pb2
from metering.entitlements.v1 import entitlements_pb2 as pb
from meterlib.errors import FieldViolation, InvalidArgument
from meterlib.money import parse_decimal
from meterlib.periods import Cadence, Period, WindowSize
from meterlib.wire import (  # re-exported: the service's conversions in one module
    from_timestamp as from_timestamp,
)
from meterlib.wire import (
    optional_time as optional_time,
)
from meterlib.wire import (
    to_proto_decimal as to_proto_decimal,
)
from meterlib.wire import (
    to_proto_range as to_proto_range,
)
from meterlib.wire import (
    to_timestamp as to_timestamp,
)

T = TypeVar("T")

TYPES = {
    pb.ENTITLEMENT_TYPE_BOOLEAN: EntitlementType.BOOLEAN,
    pb.ENTITLEMENT_TYPE_STATIC: EntitlementType.STATIC,
    pb.ENTITLEMENT_TYPE_METERED: EntitlementType.METERED,
}
_TYPE_VALUES = {kind: value for value, kind in TYPES.items()}
_WINDOW_SIZES = {
    common_pb2.WINDOW_SIZE_MINUTE: WindowSize.MINUTE,
    common_pb2.WINDOW_SIZE_HOUR: WindowSize.HOUR,
    common_pb2.WINDOW_SIZE_DAY: WindowSize.DAY,
    common_pb2.WINDOW_SIZE_MONTH: WindowSize.MONTH,
}


class _Reader:
    """Reads wire values, collecting every problem instead of raising at the first."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def add(self, path: str, description: str) -> None:
        self.violations.append(FieldViolation(path, description))

    def attempt(self, read: Callable[[], T]) -> T | None:
        try:
            return read()
        except InvalidArgument as exc:
            self.violations.extend(exc.violations)
            return None

    def decimal(
        self, d: common_pb2.Decimal, present: bool, path: str, *, required: bool = False
    ) -> Decimal | None:
        if not present:
            if required:
                self.add(path, "is required")
            return None
        return self.attempt(lambda: parse_decimal(d.value, path))

    def cadence(self, text: str, path: str) -> Cadence | None:
        """None for the empty string (the domain says whether it is required). At least an hour."""
        return self.attempt(lambda: Cadence.from_iso(text, path, allow_hours=True)) if text else None


# --- customers ------------------------------------------------------------------------------------------


def from_proto_upsert_customer(request: pb.UpsertCustomerRequest) -> UpsertCustomerInput:
    """The customer an UpsertCustomer request sends."""
    c = request.customer
    return UpsertCustomerInput(
        key=c.key, subject_keys=tuple(c.subject_keys), given=request.HasField("customer")
    )


def to_proto_customer(customer: Customer) -> pb.Customer:
    """The wire form of a customer copy."""
    return pb.Customer(
        key=customer.key,
        subject_keys=list(customer.subject_keys),
        update_time=to_timestamp(customer.update_time),
    )


# --- entitlements ---------------------------------------------------------------------------------------


def from_proto_ref(ref: pb.EntitlementRef, present: bool) -> EntitlementRef:
    """An entitlement reference; ``given`` is False when the message or its oneof is unset."""
    which = ref.WhichOneof("ref") if present else None
    if which == "entitlement_id":
        return EntitlementRef.of_id(ref.entitlement_id)
    if which == "customer_feature":
        return EntitlementRef.of_pair(ref.customer_feature.customer_key, ref.customer_feature.feature_key)
    return EntitlementRef.missing()


def _read_metered(r: _Reader, m: pb.MeteredConfig, at: str) -> MeteredConfigInput:
    period_given = m.HasField("usage_period")
    return MeteredConfigInput(
        usage_period=r.cadence(m.usage_period.interval, f"{at}.usage_period.interval")
        if period_given
        else None,
        anchor=optional_time(m.usage_period, "anchor") if period_given else None,
        usage_period_given=period_given,
        measure_usage_from=optional_time(m, "measure_usage_from"),
        issue_after_reset=r.decimal(
            m.issue_after_reset, m.HasField("issue_after_reset"), f"{at}.issue_after_reset"
        ),
        issue_after_reset_priority=m.issue_after_reset_priority,
        is_soft_limit=m.is_soft_limit,
        preserve_overage_at_reset=m.preserve_overage_at_reset,
    )


def from_proto_entitlement_input(request_id: str, e: pb.Entitlement, present: bool) -> EntitlementInput:
    """The entitlement of a CreateEntitlement or OverrideEntitlement request."""
    r = _Reader()
    which = e.WhichOneof("config")
    kind = {"boolean": EntitlementType.BOOLEAN, "static": EntitlementType.STATIC}.get(which or "")
    metered = None
    if which == "metered":
        kind = EntitlementType.METERED
        metered = _read_metered(r, e.metered, "entitlement.metered")
    return EntitlementInput(
        request_id=request_id,
        customer_key=e.customer_key,
        feature_key=e.feature_key,
        type=kind,
        static_config=e.static.config,
        metered=metered,
        active_from=optional_time(e, "active_from"),
        active_to=optional_time(e, "active_to"),
        metadata=dict(e.metadata),
        given=present,
        decode_violations=tuple(r.violations),
    )


def from_proto_types(values: Sequence[int]) -> list[EntitlementType]:
    """The types of a list filter; InvalidArgument naming each unusable value."""
    r = _Reader()
    found: list[EntitlementType] = []
    for index, value in enumerate(values):
        if value == pb.ENTITLEMENT_TYPE_UNSPECIFIED:
            r.add(f"types[{index}]", "must not be ENTITLEMENT_TYPE_UNSPECIFIED")
        elif value not in TYPES:
            r.add(f"types[{index}]", f"unknown value {value}")
        else:
            found.append(TYPES[value])  # type: ignore[index]
    if r.violations:
        raise InvalidArgument.fields(r.violations)
    return found


def to_proto_entitlement(e: Entitlement) -> pb.Entitlement:
    """The wire form of an entitlement."""
    message = pb.Entitlement(
        id=e.id,
        customer_key=e.customer_key,
        feature_key=e.feature_key,
        type=_TYPE_VALUES[e.type],
        active_from=to_timestamp(e.active_from),
        metadata=dict(e.metadata),
        create_time=to_timestamp(e.create_time),
    )
    if e.type is EntitlementType.BOOLEAN:
        message.boolean.SetInParent()
    elif e.type is EntitlementType.STATIC:
        message.static.config = e.static_config or ""
    elif e.metered is not None:
        m = e.metered
        config = message.metered
        config.usage_period.interval = m.usage_period.to_iso()
        config.usage_period.anchor.CopyFrom(to_timestamp(m.anchor))
        config.measure_usage_from.CopyFrom(to_timestamp(m.measure_usage_from))
        if m.issue_after_reset is not None:
            config.issue_after_reset.CopyFrom(to_proto_decimal(m.issue_after_reset))
        config.issue_after_reset_priority = m.issue_after_reset_priority
        config.is_soft_limit = m.is_soft_limit
        config.preserve_overage_at_reset = m.preserve_overage_at_reset
        config.meter_key = m.meter_key
        config.meter_group_filters.update(m.meter_group_filters)
    if e.active_to is not None:
        message.active_to.CopyFrom(to_timestamp(e.active_to))
    if e.current_usage_period is not None:
        message.current_usage_period.CopyFrom(to_proto_range(e.current_usage_period))
    if e.last_reset_time is not None:
        message.last_reset_time.CopyFrom(to_timestamp(e.last_reset_time))
    if e.delete_time is not None:
        message.delete_time.CopyFrom(to_timestamp(e.delete_time))
    return message


# --- grants ---------------------------------------------------------------------------------------------


def from_proto_create_grant(request: pb.CreateGrantRequest) -> CreateGrantInput:
    """The grant a CreateGrant request asks for."""
    r = _Reader()
    g = request.grant
    present = request.HasField("grant")
    recurrence_given = g.HasField("recurrence")
    return CreateGrantInput(
        request_id=request.request_id,
        entitlement=from_proto_ref(request.entitlement, request.HasField("entitlement")),
        amount=r.decimal(g.amount, g.HasField("amount"), "grant.amount", required=present),
        priority=g.priority,
        effective_at=optional_time(g, "effective_at"),
        expires_at=optional_time(g, "expires_at"),
        min_rollover=r.decimal(
            g.min_rollover_amount, g.HasField("min_rollover_amount"), "grant.min_rollover_amount"
        ),
        max_rollover=r.decimal(
            g.max_rollover_amount, g.HasField("max_rollover_amount"), "grant.max_rollover_amount"
        ),
        recurrence_interval=r.cadence(g.recurrence.interval, "grant.recurrence.interval")
        if recurrence_given
        else None,
        recurrence_anchor=optional_time(g.recurrence, "anchor") if recurrence_given else None,
        recurrence_given=recurrence_given,
        metadata=dict(g.metadata),
        given=present,
        decode_violations=tuple(r.violations),
    )


def to_proto_grant(g: Grant) -> pb.Grant:
    """The wire form of a grant (``balance`` set when computed)."""
    message = pb.Grant(
        id=g.id,
        entitlement_id=g.entitlement_id,
        amount=to_proto_decimal(g.amount),
        priority=g.priority,
        effective_at=to_timestamp(g.effective_at),
        min_rollover_amount=to_proto_decimal(g.min_rollover),
        max_rollover_amount=to_proto_decimal(g.max_rollover),
        metadata=dict(g.metadata),
        create_time=to_timestamp(g.create_time),
    )
    if g.expires_at is not None:
        message.expires_at.CopyFrom(to_timestamp(g.expires_at))
    if g.recurrence is not None:
        message.recurrence.interval = g.recurrence.interval.to_iso()
        message.recurrence.anchor.CopyFrom(to_timestamp(g.recurrence.anchor))
    if g.void_time is not None:
        message.void_time.CopyFrom(to_timestamp(g.void_time))
    if g.balance is not None:
        message.balance.CopyFrom(to_proto_decimal(g.balance))
    return message


# --- usage ----------------------------------------------------------------------------------------------


def from_proto_reset(request: pb.ResetUsageRequest) -> ResetUsageInput:
    """The reset a ResetUsage request asks for."""
    return ResetUsageInput(
        request_id=request.request_id,
        entitlement=from_proto_ref(request.entitlement, request.HasField("entitlement")),
        effective_at=optional_time(request, "effective_at"),
        retain_anchor=request.retain_anchor,
        preserve_overage=request.preserve_overage if request.HasField("preserve_overage") else None,
    )


def from_proto_history(request: pb.GetEntitlementHistoryRequest) -> HistoryInput:
    """The range and windows a GetEntitlementHistory request asks for."""
    r = _Reader()
    size = None
    if request.window_size:
        size = _WINDOW_SIZES.get(request.window_size)
        if size is None:
            r.add("window_size", f"unknown value {request.window_size}")
    return HistoryInput(
        entitlement=from_proto_ref(request.entitlement, request.HasField("entitlement")),
        start=optional_time(request.time_range, "start_time"),
        end=optional_time(request.time_range, "end_time"),
        window_size=size,
        time_zone=request.time_zone,
        decode_violations=tuple(r.violations),
    )


def _to_proto_window(w: HistoryWindow) -> pb.HistoryWindow:
    return pb.HistoryWindow(
        window=to_proto_range(w.window),
        usage=to_proto_decimal(w.usage),
        balance_at_start=to_proto_decimal(w.balance_at_start),
        balance_at_end=to_proto_decimal(w.balance_at_end),
        overage_at_end=to_proto_decimal(w.overage_at_end),
    )


def to_proto_segment(s: Segment) -> pb.BurnDownSegment:
    """The wire form of a burn-down segment."""
    return pb.BurnDownSegment(
        period=to_proto_range(s.period),
        usage=to_proto_decimal(s.usage),
        overage=to_proto_decimal(segment_overage(s)),
        balance_at_start=to_proto_decimal(s.balance_at_start),
        balance_at_end=to_proto_decimal(s.balance_at_end),
        grant_usages=[
            pb.GrantUsage(grant_id=u.grant_id, usage=to_proto_decimal(u.usage)) for u in s.grant_usages
        ],
        starts_with_reset=s.starts_with_reset,
    )


def to_proto_history(history: History) -> pb.GetEntitlementHistoryResponse:
    """The wire form of a history."""
    return pb.GetEntitlementHistoryResponse(
        windows=[_to_proto_window(w) for w in history.windows],
        segments=[to_proto_segment(s) for s in history.segments],
    )


MAX_BATCH_CHECKS = 1000


def _check_problems(request: pb.CheckRequest, prefix: str) -> list[FieldViolation]:
    problems = []
    which = request.WhichOneof("customer")
    if which is None or not getattr(request, which):
        problems.append(
            FieldViolation(f"{prefix}customer_key", "a customer_key or a subject_key is required")
        )
    if not request.feature_key:
        problems.append(FieldViolation(f"{prefix}feature_key", "is required"))
    return problems


def _check_query(request: pb.CheckRequest) -> CheckQuery | None:
    """The check a request asks for; None when it is invalid (hot: no list built for a good one)."""
    which = request.WhichOneof("customer")
    feature_key = request.feature_key
    if which is None or not feature_key:
        return None
    key = getattr(request, which)
    if not key:
        return None
    at = from_timestamp(request.at) if request.HasField("at") else None
    if which == "customer_key":
        return CheckQuery(key, "", feature_key, at)
    return CheckQuery("", key, feature_key, at)


def from_proto_check(request: pb.CheckRequest) -> CheckQuery:
    """The check a request asks for; InvalidArgument naming every bad field."""
    query = _check_query(request)
    if query is None:
        raise InvalidArgument.fields(_check_problems(request, ""))
    return query


def from_proto_check_batch(request: pb.CheckBatchRequest) -> list[CheckQuery]:
    """The checks a batch asks for, in order; InvalidArgument naming every bad field of every item."""
    items = request.requests
    problems = []
    if not items or len(items) > MAX_BATCH_CHECKS:
        problems.append(FieldViolation("requests", f"between 1 and {MAX_BATCH_CHECKS} checks"))
    queries = []
    for i, item in enumerate(items):
        query = _check_query(item)
        if query is None:
            problems.extend(_check_problems(item, f"requests[{i}]."))
        else:
            queries.append(query)
    if problems:
        raise InvalidArgument.fields(problems)
    return queries


_DENY_REASONS = {r: pb.DenyReason.Value(f"DENY_REASON_{r.value}") for r in DenyReason}
_KINDS = {k: pb.EntitlementType.Value(f"ENTITLEMENT_TYPE_{k.value.upper()}") for k in EntitlementKind}


@functools.lru_cache(maxsize=16_384)
def to_proto_check(result: CheckResult) -> pb.CheckResponse:
    """The wire form of a check's answer.

    Memoized: every check of an unchanged state gives an equal result, and building the message (two
    Timestamps, three Decimals) costs more than the rest of a hot check. Equal results share one
    message, so callers must not modify it (gRPC only serializes it; a parent message copies it).
    """
    response = pb.CheckResponse(
        has_access=result.has_access,
        deny_reason=_DENY_REASONS[result.deny_reason],
        config=result.config,
        entitlement_id=result.entitlement_id,
        customer_key=result.customer_key,
    )
    if result.kind is not None:
        response.type = _KINDS[result.kind]
    for field_name, value in (
        ("balance", result.balance),
        ("usage", result.usage),
        ("overage", result.overage),
    ):
        if value is not None:
            getattr(response, field_name).CopyFrom(to_proto_decimal(value))
    if result.usage_period is not None:
        response.usage_period.CopyFrom(to_proto_range(Period(*result.usage_period)))
    return response


@functools.lru_cache(maxsize=16_384)
def check_response_wire(result: CheckResult) -> bytes:
    """A check's answer as serialized ``CheckResponse`` bytes (memoized like ``to_proto_check``)."""
    return to_proto_check(result).SerializeToString()


@functools.lru_cache(maxsize=16_384)
def _framed_check_response(result: CheckResult) -> bytes:
    wire = check_response_wire(result)
    return _CHECK_BATCH_RESPONSES_TAG + _varint(len(wire)) + wire


def check_batch_response_wire(results: Sequence[CheckResult]) -> bytes:
    """A ``CheckBatchResponse`` serialized, built from its answers' memoized wire forms.

    A message's encoding is the concatenation of its fields' encodings, and a repeated message field is
    one length-delimited record per element, so joining the framed answers is exactly what serializing
    ``CheckBatchResponse(responses=...)`` gives, without building and copying a hundred messages.
    """
    return b"".join(map(_framed_check_response, results))


_CHECK_BATCH_RESPONSES_TAG = bytes([(1 << 3) | 2])  # CheckBatchResponse.responses: field 1, length-delimited


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@dataclass(frozen=True)
class ConsumeInput:
    """A CheckAndConsume, decoded and validated."""

    customer_key: str
    subject_key: str
    feature_key: str
    amount: Decimal
    idempotency_key: str
    at: datetime | None


def from_proto_consume(request: pb.CheckAndConsumeRequest) -> ConsumeInput:
    """The consumption a request asks for; InvalidArgument naming every bad field."""
    problems = []
    which = request.WhichOneof("customer")
    if which is None or not getattr(request, which):
        problems.append(FieldViolation("customer_key", "a customer_key or a subject_key is required"))
    if not request.feature_key:
        problems.append(FieldViolation("feature_key", "is required"))
    if not 1 <= len(request.idempotency_key) <= 256:
        problems.append(FieldViolation("idempotency_key", "1 to 256 characters are required"))
    amount = Decimal(0)
    if not request.HasField("amount") or not request.amount.value:
        problems.append(FieldViolation("amount", "is required"))
    else:
        try:
            amount = parse_decimal(request.amount.value, "amount")
        except InvalidArgument as exc:
            problems.extend(exc.violations)
        else:
            if amount <= 0:
                problems.append(FieldViolation("amount", "must be greater than 0"))
    if problems:
        raise InvalidArgument.fields(problems)
    return ConsumeInput(
        customer_key=request.customer_key if which == "customer_key" else "",
        subject_key=request.subject_key if which == "subject_key" else "",
        feature_key=request.feature_key,
        amount=amount,
        idempotency_key=request.idempotency_key,
        at=optional_time(request, "at"),
    )
