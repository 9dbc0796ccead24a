"""Checks decided from memory: the definitions index and the decision over hot states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from entitlements.hot.decide import CheckResult, DenyReason, NeedsTruth, decide
from entitlements.hot.index import DefinitionIndex, EntitlementKind, HotEntitlement
from entitlements.hot.state import HotState, Segment

NS = "acme"
T0 = datetime(2024, 6, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=3)


def _metered(id: str = "m1", customer: str = "c1", feature: str = "gpt4", **kw: object) -> HotEntitlement:
    fields: dict[str, object] = {
        "meter_key": "tokens",
        "meter_group_filters": {"model": "gpt-4"},
        "active_from": T0,
        **kw,
    }
    return HotEntitlement(id, NS, customer, feature, EntitlementKind.METERED, **fields)  # type: ignore[arg-type]


def _state(usage: str, balance: str = "100", soft: bool = False, **kw: object) -> HotState:
    segment = Segment(
        T0,
        T0 + timedelta(days=30),
        T0,
        T0 + timedelta(days=30),
        Decimal(balance),
        Decimal(0),
        Decimal(0),
        soft,
    )
    return HotState(1, segment, Decimal(usage), "1:1:", **kw)  # type: ignore[arg-type]


@pytest.fixture
def index() -> DefinitionIndex:
    index = DefinitionIndex()
    index.put_customer(NS, "c1", ("s1", "s2"))
    index.put_entitlement(_metered())
    index.put_entitlement(HotEntitlement("b1", NS, "c1", "sso", EntitlementKind.BOOLEAN, T0))
    index.put_entitlement(
        HotEntitlement("st1", NS, "c1", "seats", EntitlementKind.STATIC, T0, static_config='{"seats": 10}')
    )
    return index


def test_subjects_resolve_to_their_customer(index: DefinitionIndex) -> None:
    assert index.customer(NS, subject_key="s2") == "c1"
    assert index.customer(NS, customer_key="c1") == "c1"
    assert index.customer(NS, subject_key="nobody") is None
    assert index.customer("other", subject_key="s1") is None  # namespaces never meet
    index.put_customer(NS, "c1", ("s3",))
    assert index.customer(NS, subject_key="s1") is None and index.customer(NS, subject_key="s3") == "c1"


def test_a_delta_feeds_the_metered_entitlements_whose_filters_it_matches(index: DefinitionIndex) -> None:
    index.put_entitlement(_metered("m2", feature="all-tokens", meter_group_filters={}))
    fed = {e.id for e in index.fed_by(NS, "s1", "tokens", {"model": "gpt-4"})}
    assert fed == {"m1", "m2"}
    assert {e.id for e in index.fed_by(NS, "s1", "tokens", {"model": "gpt-3"})} == {"m2"}
    assert index.fed_by(NS, "s1", "calls", {}) == [] and index.fed_by(NS, "stranger", "tokens", {}) == []


def test_an_override_replaces_the_pair_everywhere(index: DefinitionIndex) -> None:
    index.put_entitlement(_metered("m9", meter_group_filters={}))
    assert index.entitlement(NS, "c1", "gpt4").id == "m9"  # type: ignore[union-attr]
    assert [e.id for e in index.fed_by(NS, "s1", "tokens", {"model": "x"})] == ["m9"]
    assert index.by_id("m1") is None
    index.remove_customer(NS, "c1")
    assert index.entitlement(NS, "c1", "sso") is None and index.metered() == []


def test_boolean_and_static(index: DefinitionIndex) -> None:
    assert decide(index, {}, NS, subject_key="s1", feature_key="sso", at=NOW) == CheckResult(
        True, kind=EntitlementKind.BOOLEAN, entitlement_id="b1", customer_key="c1"
    )
    static = decide(index, {}, NS, customer_key="c1", feature_key="seats", at=NOW)
    assert isinstance(static, CheckResult) and static.config == '{"seats": 10}' and static.has_access


@pytest.mark.parametrize(
    ("who", "feature", "reason"),
    [
        ({"subject_key": "nobody"}, "sso", DenyReason.CUSTOMER_UNKNOWN),
        ({"customer_key": "c1"}, "nothing", DenyReason.NO_ENTITLEMENT),
    ],
)
def test_denials(index: DefinitionIndex, who: dict[str, str], feature: str, reason: DenyReason) -> None:
    result = decide(index, {}, NS, feature_key=feature, at=NOW, **who)
    assert isinstance(result, CheckResult) and (result.has_access, result.deny_reason) == (False, reason)


def test_an_entitlement_outside_its_active_range_denies(index: DefinitionIndex) -> None:
    index.put_entitlement(HotEntitlement("b2", NS, "c1", "sso", EntitlementKind.BOOLEAN, T0, active_to=NOW))
    result = decide(index, {}, NS, customer_key="c1", feature_key="sso", at=NOW)
    assert isinstance(result, CheckResult) and result.deny_reason is DenyReason.NOT_ACTIVE


@pytest.mark.parametrize(
    ("usage", "soft", "expected"),
    [
        ("120", False, (False, DenyReason.LIMIT_REACHED, Decimal(0), Decimal(20))),  # hard limit, overage
        ("120", True, (True, DenyReason.NONE, Decimal(0), Decimal(20))),  # soft limit
        ("30", False, (True, DenyReason.NONE, Decimal(70), Decimal(0))),
    ],
)
def test_metered_from_the_hot_state(
    index: DefinitionIndex, usage: str, soft: bool, expected: tuple[object, ...]
) -> None:
    result = decide(index, {"m1": _state(usage, soft=soft)}, NS, subject_key="s1", feature_key="gpt4", at=NOW)
    assert isinstance(result, CheckResult)
    assert (result.has_access, result.deny_reason, result.balance, result.overage) == expected
    assert result.usage == Decimal(usage) and result.usage_period == (T0, T0 + timedelta(days=30))


def test_metered_without_a_usable_state_needs_the_truth(index: DefinitionIndex) -> None:
    wanted = NeedsTruth("m1", "c1")
    assert decide(index, {}, NS, customer_key="c1", feature_key="gpt4", at=NOW) == wanted
    assert (
        decide(index, {"m1": _state("1", rebuilding=True)}, NS, customer_key="c1", feature_key="gpt4", at=NOW)
        == wanted
    )
    later = T0 + timedelta(days=31)  # past the segment
    assert decide(index, {"m1": _state("1")}, NS, customer_key="c1", feature_key="gpt4", at=later) == wanted
