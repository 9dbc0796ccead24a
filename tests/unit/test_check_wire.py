"""Check answers on the wire: the memoized, pre-serialized forms decode to what building the messages gives."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from entitlements import convert
from entitlements.hot.decide import CheckQuery, CheckResult, DenyReason
from entitlements.hot.index import EntitlementKind
from metering.entitlements.v1 import entitlements_pb2 as pb
from meterlib.errors import InvalidArgument

METERED = CheckResult(
    True,
    kind=EntitlementKind.METERED,
    balance=Decimal("80.5"),
    usage=Decimal("120"),
    overage=Decimal(0),
    usage_period=(datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 7, 1, tzinfo=UTC)),
    entitlement_id="0190a5f2-7c1e-7b3a-9f55-1d2e3f405162",
    customer_key="acme",
)
DENIED = CheckResult(False, DenyReason.NO_ENTITLEMENT, customer_key="acme")
STATIC = CheckResult(True, kind=EntitlementKind.STATIC, config='{"seats": 10}', entitlement_id="e2")
# Long enough that its length prefix takes two varint bytes.
LONG = CheckResult(True, kind=EntitlementKind.STATIC, config="x" * 300, entitlement_id="e3")


@pytest.mark.parametrize("result", [METERED, DENIED, STATIC, LONG])
def test_check_response_wire_is_the_serialized_message(result: CheckResult) -> None:
    wire = convert.check_response_wire(result)
    assert pb.CheckResponse.FromString(wire) == convert.to_proto_check(result)
    assert wire == convert.to_proto_check(result).SerializeToString()


def test_batch_wire_equals_serializing_the_batch_message() -> None:
    results = [METERED, DENIED, METERED, STATIC, LONG, DENIED]
    wire = convert.check_batch_response_wire(results)
    expected = pb.CheckBatchResponse(responses=[convert.to_proto_check(r) for r in results])
    assert wire == expected.SerializeToString()
    decoded = pb.CheckBatchResponse.FromString(wire)
    assert [r.has_access for r in decoded.responses] == [True, False, True, True, True, False]
    assert decoded.responses[0].balance.value == "80.5"
    assert decoded.responses[4].config == "x" * 300


def test_the_memoized_message_is_shared_by_equal_results() -> None:
    again = CheckResult(**{f: getattr(METERED, f) for f in METERED.__dataclass_fields__})
    assert again is not METERED
    assert convert.to_proto_check(again) is convert.to_proto_check(METERED)


def test_batch_decoding_names_every_bad_item() -> None:
    request = pb.CheckBatchRequest(
        requests=[
            pb.CheckRequest(customer_key="acme", feature_key="tokens"),
            pb.CheckRequest(feature_key="tokens"),
            pb.CheckRequest(subject_key="acme-prod"),
            pb.CheckRequest(customer_key="", feature_key="tokens"),
        ]
    )
    with pytest.raises(InvalidArgument) as raised:
        convert.from_proto_check_batch(request)
    assert [v.field for v in raised.value.violations] == [
        "requests[1].customer_key",
        "requests[2].feature_key",
        "requests[3].customer_key",
    ]


def test_batch_decoding_keeps_order_and_the_instant() -> None:
    at = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)
    first = pb.CheckRequest(subject_key="acme-prod", feature_key="tokens")
    first.at.FromDatetime(at)
    queries = convert.from_proto_check_batch(
        pb.CheckBatchRequest(requests=[first, pb.CheckRequest(customer_key="acme", feature_key="seats")])
    )
    assert queries == [CheckQuery("", "acme-prod", "tokens", at), CheckQuery("acme", "", "seats", None)]


@pytest.mark.parametrize("count", [0, convert.MAX_BATCH_CHECKS + 1])
def test_batch_size_is_bounded(count: int) -> None:
    request = pb.CheckBatchRequest(requests=[pb.CheckRequest(customer_key="acme", feature_key="f")] * count)
    with pytest.raises(InvalidArgument) as raised:
        convert.from_proto_check_batch(request)
    assert [v.field for v in raised.value.violations] == ["requests"]
