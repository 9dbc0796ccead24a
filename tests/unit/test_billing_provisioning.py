"""Which entitlement calls a subscription's timeline asks for at an instant (pure planning)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from billing.domain.subscriptions import next_period_end, status_at
from billing.service.provisioning import entitlement_spec, plan_provisioning, request_id
from billing.store import ProvisionedEntitlement
from billing.subscriptions import (
    AddOnSelection,
    CancelTiming,
    ChangeTiming,
    SubscriptionStatus,
    cancel,
    change_plan,
    create_subscription,
)
from tests.unit.test_billing_plans import card, flat, make_add_on, make_plan

START = datetime(2024, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
SSO = card("sso", feature_key="sso", billing_cadence="", entitlement_template={"boolean": {}})
TOKENS = card(
    "tokens",
    feature_key="tokens",
    entitlement_template={"metered": {"issue_after_reset": {"value": "1000"}}},
)
BASIC = make_plan([card("base", flat("10")), SSO], key="basic")
PRO = make_plan([card("base", flat("30")), SSO, TOKENS], key="pro")


def test_each_entitling_item_is_created_once() -> None:
    sub = create_subscription(PRO, START)

    plan = plan_provisioning(sub, [], START)

    assert sorted(item.key for item, _ in plan.create) == ["sso", "tokens"]
    assert plan.delete == () and plan.replace == () and plan.due_at is None
    rows = [
        ProvisionedEntitlement(i.id, i.rate_card.feature_key, "e", None, 0, False) for i, _ in plan.create
    ]
    assert plan_provisioning(sub, rows, START + DAY).empty


def test_a_later_item_of_the_same_feature_waits_for_the_earlier_to_end() -> None:
    sub = create_subscription(BASIC, START)
    rows = [
        ProvisionedEntitlement(i.id, "sso", "e-old", None, 0, False)
        for i, _ in plan_provisioning(sub, [], START).create
    ]
    changed = change_plan(sub, PRO, timing=ChangeTiming.NEXT_BILLING_CYCLE, at=START + 5 * DAY)
    boundary = START + 31 * DAY

    before = plan_provisioning(changed, rows, START + 5 * DAY)
    # The old SSO item now ends at the boundary: replaced with that end; PRO's tokens (another feature)
    # are created already, from the boundary; PRO's SSO waits.
    assert [(row.entitlement_id, item.active_to) for row, item in before.replace] == [("e-old", boundary)]
    assert [(item.key, item.active_from) for item, _ in before.create] == [("tokens", boundary)]
    assert before.due_at == boundary

    after = plan_provisioning(changed, rows, boundary)
    assert [row.entitlement_id for row in after.delete] == ["e-old"]
    assert sorted(item.key for item, _ in after.create) == ["sso", "tokens"]


def test_a_deleted_item_is_created_again_with_the_next_revision() -> None:
    sub = create_subscription(BASIC, START)
    [(sso, _)] = plan_provisioning(sub, [], START).create
    rows = [ProvisionedEntitlement(sso.id, "sso", "e-1", None, 3, True)]

    [(again, revision)] = plan_provisioning(sub, rows, START).create

    assert again.id == sso.id and revision == 4
    assert request_id("s", sso.id, 4) == request_id("s", sso.id, 4) != request_id("s", sso.id, 3)
    assert len(request_id("s", sso.id, 4)) <= 128


def test_metered_allowance_is_per_add_on_instance() -> None:
    extra = make_add_on("extra", [TOKENS], multiple=True)
    sub = create_subscription(BASIC, START, add_ons=[AddOnSelection(extra, 3)])
    [tokens] = [i for i in sub.items if i.key == "tokens"]

    spec = entitlement_spec(sub, "sub-1", "acme", tokens)

    assert spec.kind == "metered" and spec.issue_after_reset == Decimal(3000)
    assert spec.usage_anchor == START and spec.measure_usage_from == START
    assert spec.usage_period is not None and spec.usage_period.to_iso() == "P1M"


def test_cancelled_before_the_start_is_canceled_and_has_no_period_left() -> None:
    sub = cancel(create_subscription(BASIC, START + 10 * DAY), timing=CancelTiming.IMMEDIATE, at=START)

    assert status_at(sub, START) is SubscriptionStatus.CANCELED
    assert next_period_end(sub, None) is None
    assert plan_provisioning(sub, [], START).empty


def test_next_period_end_follows_what_was_invoiced() -> None:
    sub = create_subscription(BASIC, START)

    assert next_period_end(sub, None) == START + 31 * DAY
    assert next_period_end(sub, START + 31 * DAY) == datetime(2024, 3, 1, tzinfo=UTC)
    ended = cancel(sub, timing=CancelTiming.IMMEDIATE, at=START + 40 * DAY)
    assert next_period_end(ended, START + 31 * DAY) == START + 40 * DAY
    assert next_period_end(ended, START + 40 * DAY) is None
