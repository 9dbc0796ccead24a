"""Which entitlement calls a subscription's timeline asks for at an instant (pure planning)."""

from __future__ import annotations

from dataclasses import replace
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
    set_add_on,
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

    assert sorted(h.item.key for h, _ in plan.create) == ["sso", "tokens"]
    assert plan.delete == () and plan.replace == () and plan.due_at is None
    rows = [
        ProvisionedEntitlement(
            h.item.id, h.item.rate_card.feature_key, "e", None, 0, False, h.issue_after_reset
        )
        for h, _ in plan.create
    ]
    assert plan_provisioning(sub, rows, START + DAY).empty


def test_a_later_item_of_the_same_feature_waits_for_the_earlier_to_end() -> None:
    sub = create_subscription(BASIC, START)
    rows = [
        ProvisionedEntitlement(h.item.id, "sso", "e-old", None, 0, False)
        for h, _ in plan_provisioning(sub, [], START).create
    ]
    changed = change_plan(sub, PRO, timing=ChangeTiming.NEXT_BILLING_CYCLE, at=START + 5 * DAY)
    boundary = START + 31 * DAY

    before = plan_provisioning(changed, rows, START + 5 * DAY)
    # The old SSO item now ends at the boundary: replaced with that end; PRO's tokens (another feature)
    # are created already, from the boundary; PRO's SSO waits.
    assert [(row.entitlement_id, h.item.active_to) for row, h in before.replace] == [("e-old", boundary)]
    assert [(h.item.key, h.item.active_from) for h, _ in before.create] == [("tokens", boundary)]
    assert before.due_at == boundary

    after = plan_provisioning(changed, rows, boundary)
    assert [row.entitlement_id for row in after.delete] == ["e-old"]
    assert sorted(h.item.key for h, _ in after.create) == ["sso", "tokens"]


def test_a_deleted_item_is_created_again_with_the_next_revision() -> None:
    sub = create_subscription(BASIC, START)
    [(holding, _)] = plan_provisioning(sub, [], START).create
    sso = holding.item
    rows = [ProvisionedEntitlement(sso.id, "sso", "e-1", None, 3, True)]

    [(again, revision)] = plan_provisioning(sub, rows, START).create

    assert again.item.id == sso.id and revision == 4
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


def _recorded(plan_create: object) -> list[ProvisionedEntitlement]:
    return [
        ProvisionedEntitlement(
            h.item.id, h.item.rate_card.feature_key, f"e-{h.item.key}", None, 0, False, h.issue_after_reset
        )
        for h, _ in plan_create  # type: ignore[attr-defined]
    ]


def test_an_add_on_on_the_plan_s_metered_feature_adds_its_amount_to_the_one_entitlement() -> None:
    extra = make_add_on("extra", [TOKENS], multiple=True)
    sub = create_subscription(PRO, START, add_ons=[AddOnSelection(extra, 2)])

    plan = plan_provisioning(sub, [], START)

    [tokens] = [h for h, _ in plan.create if h.item.key == "tokens"]
    assert tokens.item.add_on_key == ""  # the plan's item holds the feature
    assert tokens.issue_after_reset == Decimal(3000)  # 1,000 of the plan's + 2 x 1,000 of the add-on's
    assert entitlement_spec(sub, "s", "acme", tokens.item, tokens.issue_after_reset).issue_after_reset == 3000
    assert plan_provisioning(sub, _recorded(plan.create), START + DAY).empty


def test_removing_or_adding_an_add_on_replaces_the_entitlement_with_the_new_amount() -> None:
    extra = make_add_on("extra", [TOKENS], multiple=True)
    sub = create_subscription(PRO, START)
    rows = _recorded(plan_provisioning(sub, [], START).create)

    later = set_add_on(sub, extra, 1, timing=ChangeTiming.IMMEDIATE, at=START + 10 * DAY)
    added = plan_provisioning(later, rows, START + 10 * DAY)
    assert [(row.entitlement_id, h.issue_after_reset) for row, h in added.replace] == [("e-tokens", 2000)]
    rows = [
        replace(row, issue_after_reset=Decimal(2000), revision=1) if row.feature_key == "tokens" else row
        for row in rows
    ]

    removed = set_add_on(later, extra, 0, timing=ChangeTiming.NEXT_BILLING_CYCLE, at=START + 11 * DAY)
    boundary = START + 31 * DAY
    before = plan_provisioning(removed, rows, START + 11 * DAY)
    assert before.empty and before.due_at == boundary
    after = plan_provisioning(removed, rows, boundary)
    assert [(row.entitlement_id, h.issue_after_reset) for row, h in after.replace] == [("e-tokens", 1000)]


def test_an_add_on_starting_later_is_merged_when_it_starts() -> None:
    extra = make_add_on("extra", [TOKENS])
    sub = create_subscription(PRO, START)
    rows = _recorded(plan_provisioning(sub, [], START).create)
    scheduled = set_add_on(sub, extra, 1, timing=ChangeTiming.NEXT_BILLING_CYCLE, at=START + DAY)
    boundary = START + 31 * DAY

    now = plan_provisioning(scheduled, rows, START + DAY)
    assert now.empty and now.due_at == boundary
    [(row, holding)] = plan_provisioning(scheduled, rows, boundary).replace
    assert (row.entitlement_id, holding.issue_after_reset) == ("e-tokens", 2000)


def test_a_row_recorded_without_its_amount_had_the_item_s_own() -> None:
    sub = create_subscription(PRO, START)
    rows = [
        replace(row, issue_after_reset=None) for row in _recorded(plan_provisioning(sub, [], START).create)
    ]

    assert plan_provisioning(sub, rows, START).empty
