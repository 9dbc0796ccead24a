"""Catalog as code: reading documents (every problem at once, with document paths and lines), the diff
of an apply (every action, every conflict), idempotence (plan → write → plan again is all UNCHANGED),
export round trips (as a property over generated catalogs), and the examples under examples/."""

from __future__ import annotations

import dataclasses
import json
import re
import string
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog.document import (
    MAX_DOCUMENT_BYTES,
    ArchiveFeature,
    ArchiveVersion,
    CatalogDiff,
    CatalogDocument,
    CatalogState,
    ChangeAction,
    CreateFeature,
    CreateVersion,
    DocumentFormat,
    PublishVersion,
    UpdateDraft,
    diff_catalog,
    document_format_from_proto,
    document_format_to_proto,
    export_catalog,
    parse_document,
    to_proto_apply_response,
)
from catalog.domain import (
    AddOn,
    AddOnInstanceType,
    BooleanEntitlementTemplate,
    Commitments,
    CreateAddOnInput,
    CreatePlanInput,
    Discounts,
    DynamicPrice,
    EntitlementTemplate,
    Feature,
    FlatPrice,
    MatrixPrice,
    MatrixPriceEntry,
    MeteredEntitlementTemplate,
    PackagePrice,
    PaymentTerm,
    PercentageDiscount,
    PercentagePrice,
    Plan,
    PlanPhase,
    Price,
    PriceTier,
    RateCard,
    References,
    StaticEntitlementTemplate,
    TaxBehavior,
    TaxConfig,
    TieredMode,
    TieredPrice,
    UnitPrice,
    UsageDiscount,
    UsagePrice,
    VersionStatus,
    archive_feature,
    archive_version,
    publish_version,
)
from ingest import convert as ingest_convert
from metering.catalog.v1 import catalog_pb2 as pb
from metering.ingest.v1 import ingest_pb2
from meterlib.errors import FailedPrecondition, FieldViolation, InvalidArgument, ResourceExhausted
from meterlib.money import Money
from meterlib.periods import Cadence

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ("llm-provider", "api-platform", "cloud-infrastructure")
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=30)
MONTH = Cadence(months=1)
D = Decimal
U = ChangeAction.UNCHANGED
DIMENSIONS = {"llm_tokens": frozenset({"model", "region"})}


def usd(amount: str) -> Money:
    return Money(D(amount), "USD")


def problems(text: str, format: DocumentFormat = DocumentFormat.YAML, **refs: Any) -> dict[str, str]:
    """The violations a document is refused with, by field path."""
    with pytest.raises(InvalidArgument) as caught:
        parse_document(text, format).validate(References(**refs) if refs else None)
    return {v.field: v.description for v in caught.value.violations}


def diff(
    text: str, state: CatalogState | None = None, *, prune: bool = False, now: datetime = NOW
) -> CatalogDiff:
    state = state or CatalogState(meter_dimensions=DIMENSIONS)
    return diff_catalog(parse_document(text), state, now=now, prune=prune)


def summary(result: CatalogDiff) -> list[tuple[str, str, int, tuple[str, ...]]]:
    return [
        (c.resource_type.value, c.key, c.version, tuple(a.value for a in c.actions)) for c in result.changes
    ]


def apply(state: CatalogState, result: CatalogDiff) -> CatalogState:
    """The state after writing ``result.steps`` in order: the fake store of these tests."""
    features = dict(state.features)
    tables: dict[type, dict[str, dict[int, Any]]] = {
        Plan: {k: {v.version: v for v in vs} for k, vs in state.plans.items()},
        AddOn: {k: {v.version: v for v in vs} for k, vs in state.add_ons.items()},
    }
    for step in result.steps:
        if isinstance(step, CreateFeature):
            assert step.feature.key not in features
            features[step.feature.key] = step.feature
        elif isinstance(step, ArchiveFeature):
            assert step.feature.key in features
            features[step.feature.key] = step.feature
        elif isinstance(step, CreateVersion):
            versions = tables[type(step.version)].setdefault(step.version.key, {})
            assert step.version.version not in versions
            versions[step.version.version] = step.version
        elif isinstance(step, UpdateDraft | ArchiveVersion):
            versions = tables[type(step.version)][step.version.key]
            assert step.version.version in versions
            versions[step.version.version] = step.version
        else:
            for version in step.versions:
                tables[type(version)][version.key][version.version] = version
    return dataclasses.replace(
        state,
        features=features,
        plans={k: tuple(vs[n] for n in sorted(vs)) for k, vs in tables[Plan].items()},
        add_ons={k: tuple(vs[n] for n in sorted(vs)) for k, vs in tables[AddOn].items()},
    )


def assert_all_unchanged(result: CatalogDiff) -> None:
    assert result.unchanged, summary(result)
    assert result.steps == ()


# --- reading: syntax, structure and limits ----------------------------------------------------------


def test_a_yaml_syntax_error_names_its_line_and_column() -> None:
    found = problems("features:\n  - key: a\n    name: [unclosed\n")
    assert list(found) == ["document"]
    assert re.match(r"line \d+, column \d+: ", found["document"])


def test_a_json_syntax_error_names_its_line_and_column() -> None:
    found = problems('{"features": [\n  {"key": "a",}\n]}', DocumentFormat.JSON)
    assert found["document"].startswith("line 2, column ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "is empty"),
        ("# only a comment\n", "is empty"),
        ("- a\n- b\n", "is not a mapping"),
        ("just text", "is not a mapping"),
    ],
)
def test_the_document_must_be_a_mapping(text: str, expected: str) -> None:
    assert problems(text)["document"].startswith(expected)


@pytest.mark.parametrize(
    "text",
    [
        "features: !!python/object:os.system {}\n",
        "features:\n  - key: !custom a\n",
        "features:\n  - key: !!binary aGVsbG8=\n",
        "features: !!set {a: null}\n",
        "features:\n  - key: a\n    name: !!bool 'yes'\n",
    ],
)
def test_tags_are_refused(text: str) -> None:
    assert "tags are not allowed" in problems(text)["document"]


def test_duplicate_keys_are_refused_with_their_line() -> None:
    found = problems("features:\n  - key: a\n    name: A\n    name: B\n")
    assert found["document"] == "line 4, column 5: duplicate key 'name'"
    json_found = problems('{"plans": [], "plans": []}', DocumentFormat.JSON)
    assert "duplicate key 'plans'" in json_found["document"]


def test_aliases_may_not_expand_beyond_the_limit_nor_recurse() -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    found = problems("\n".join(levels) + "\n")
    assert "expands to more than 1000000 values" in found["document"]
    assert "own ancestor" in problems("features: &x [*x]\n")["document"]


def test_a_document_above_four_mebibytes_is_resource_exhausted() -> None:
    text = "features: []\n" + "#" * MAX_DOCUMENT_BYTES
    with pytest.raises(ResourceExhausted):
        parse_document(text)
    parse_document("features: []\n" + "#" * (MAX_DOCUMENT_BYTES - 20))  # just below is read


def test_deep_nesting_is_a_violation_not_a_crash() -> None:
    assert "nested too deeply" in problems("[" * 50_000 + "]" * 50_000, DocumentFormat.JSON)["document"]


def test_an_error_lists_the_first_hundred_problems_and_counts_the_rest() -> None:
    text = "features:\n" + "".join(f"  - {{key: f{i}, colour: red}}\n" for i in range(250))
    with pytest.raises(InvalidArgument) as caught:
        parse_document(text)
    violations = caught.value.violations
    assert len(violations) == 101
    assert violations[0] == FieldViolation("document.features[0].colour", violations[0].description)
    assert violations[-1] == FieldViolation("document", "and 150 more problems not listed")


def test_yaml_scalars_follow_yaml_1_2_and_numbers_keep_their_exact_text() -> None:
    document = parse_document(
        """
        features:
          - key: 0123
            name: yes
            description: 2025-01-01
            metadata: {on: off, n: 1e3}
        plans:
          - key: p
            currency: USD
            billing_cadence: P1M
            effective_from: 2026-01-01T00:00:00Z
            phases:
              - key: main
                rate_cards:
                  - key: fee
                    billing_cadence: P1M
                    price: {flat: {amount: {amount: 0.10, currency: USD}}}
        """.replace("\n        ", "\n")
    )
    feature = document.features[0].input
    assert (feature.key, feature.name, feature.description) == ("0123", "yes", "2025-01-01")
    assert feature.metadata == {"on": "off", "n": "1e3"}
    plan = document.plans[0]
    assert plan.effective_from == datetime(2026, 1, 1, tzinfo=UTC)
    price = plan.content.phases[0].rate_cards[0].price
    assert isinstance(price, FlatPrice) and str(price.amount.amount) == "0.10"


def test_anchors_aliases_and_merge_keys_work() -> None:
    document = parse_document(
        """
plans:
  - &base
    key: a
    currency: USD
    billing_cadence: P1M
    phases: [{key: main, rate_cards: [{key: fee, billing_cadence: P1M, price: {flat: {amount: {amount: "5", currency: USD}}}}]}]
  - <<: *base
    key: b
"""
    )
    assert [p.content.key for p in document.plans] == ["a", "b"]
    assert document.plans[0].content.phases == document.plans[1].content.phases


def test_json_documents_accept_camel_case_names_and_numbers() -> None:
    text = json.dumps(
        {"features": [{"key": "t", "meterKey": "llm_tokens", "meterGroupFilters": {"model": "m"}}]}
    )
    feature = parse_document(text, DocumentFormat.JSON).features[0].input
    assert (feature.meter_key, feature.meter_group_filters) == ("llm_tokens", {"model": "m"})
    plan = parse_document(
        '{"plans": [{"key": "p", "phases": [{"key": "x", "rateCards": [{"key": "c", "entitlementTemplate":'
        ' {"metered": {"issueAfterReset": {"value": 1000}, "issueAfterResetPriority": 3}}}]}]}]}',
        DocumentFormat.JSON,
    ).plans[0]
    template = plan.content.phases[0].rate_cards[0].entitlement_template
    assert template == MeteredEntitlementTemplate(D(1000), issue_after_reset_priority=3)


# --- reading: every problem at once, at its document path -------------------------------------------

BAD = """\
features:
  - key: tokens
    meter_key: llm_tokens
    meter_group_filters: {colour: red}
  - key: tokens
    bogus: 1
plans:
  - key: ok
    currency: USD
    billing_cadence: P1M
    phases: [{key: main}]
  - key: Bad Key
    currency: usd
    billing_cadence: monthly
    phases: []
  - key: third
    currency: USD
    billing_cadence: P1M
    phases:
      - key: main
        rate_cards:
          - key: fee
            billing_cadence: P1M
            price: {flat: {amount: {amount: "5", currency: USD}}}
          - key: tokens
            feature_key: tokens
            billing_cadence: P1M
            prise: 1
            price: {unit: {amount: {amount: "-1", currency: USD}}}
          - null
          - key: tiers
            feature_key: nowhere
            billing_cadence: P1M
            price:
              tiered:
                mode: GRADUATED
                tiers: [{up_to: {value: "5"}}, {up_to: 7}]
          - key: both
            feature_key: tokens
            billing_cadence: P1M
            price: {unit: {amount: {amount: "1", currency: USD}}, dynamic: {}}
            entitlement_template: {metered: {issue_after_reset: {value: "1"}, is_soft_limit: yes}}
add_ons:
  - key: extra
    currency: USD
    compatible_plan_keys: [ok, missing]
    rate_cards: [{key: a, price: {flat: {amount: {amount: "1.001", currency: USD}}}}]
  - key: extra
    currency: USD
    rate_cards: [{key: a}]
unknown_top: 1
"""


def test_every_problem_of_every_entry_is_one_invalid_argument_with_document_paths() -> None:
    found = problems(BAD, meter_dimensions=DIMENSIONS, plan_keys=frozenset())
    card = "document.plans[2].phases[0].rate_cards"
    expected = {
        "document.unknown_top": "unknown field of CatalogDocument",
        "document.features[0].meter_group_filters[colour]": "meter 'llm_tokens' has no dimension 'colour'",
        "document.features[1].bogus": "unknown field",
        "document.features[1].key": "'tokens' is already the key of document.features[0]",
        "document.plans[1].key": "must be 1-64 characters",
        "document.plans[1].currency": "currency codes are upper case: 'USD'",
        "document.plans[1].billing_cadence": "must be an ISO 8601 duration",
        "document.plans[1].phases": "must have 1 to 10 phases",
        f"{card}[1].prise": "unknown field; did you mean 'price'?",
        f"{card}[1].price.unit.amount.amount": "must not be negative",
        f"{card}[2]": "must not be null",
        f"{card}[3].feature_key": "names no feature: 'nowhere'",
        f"{card}[3].price.tiered.mode": "did you mean TIERED_MODE_GRADUATED?",
        f"{card}[3].price.tiered.tiers[1].up_to": 'must be a mapping such as {value: "1000"}',
        f"{card}[4].price": "must have one model only",
        f"{card}[4].entitlement_template.metered.is_soft_limit": "must be true or false",
        "document.add_ons[0].compatible_plan_keys[1]": "names no plan: 'missing'",
        "document.add_ons[0].rate_cards[0].price.flat.amount.amount": "whole number of USD minor units",
        "document.add_ons[1].key": "'extra' is already the key of document.add_ons[0]",
    }
    for path, words in expected.items():
        assert path in found, (path, found)
        assert words in found[path], (path, found[path])
    # Lines point into the YAML text; nothing else is reported (no echo of a problem in other words).
    assert found[f"{card}[1].price.unit.amount.amount"].endswith("(line 29)")
    assert found["document.features[1].bogus"].endswith("(line 6)")
    assert set(found) == set(expected)


def test_the_path_of_a_nested_amount_is_prefixed_by_its_document_position() -> None:
    plan = """
  - key: p{i}
    currency: USD
    billing_cadence: P1M
    phases:
      - key: main
        rate_cards:
          - key: fee
            billing_cadence: P1M
            price: {{flat: {{amount: {{amount: "5", currency: USD}}}}}}
          - key: tokens
            feature_key: tokens
            billing_cadence: P1M
            price: {{unit: {{amount: {{amount: "{amount}", currency: USD}}}}}}
"""
    text = "features: [{key: tokens, meter_key: llm_tokens}]\nplans:" + "".join(
        plan.format(i=i, amount="-1" if i == 2 else "1") for i in range(3)
    )
    found = problems(text, meter_dimensions=DIMENSIONS)
    assert list(found) == ["document.plans[2].phases[0].rate_cards[1].price.unit.amount.amount"]


def test_feature_references_resolve_against_the_document_and_the_catalog() -> None:
    text = """
features: [{key: in_doc, meter_key: llm_tokens}, {key: flag}]
plans:
  - key: p
    currency: USD
    billing_cadence: P1M
    phases:
      - key: main
        rate_cards:
          - {key: a, feature_key: in_doc, billing_cadence: P1M, price: {unit: {amount: {amount: "1", currency: USD}}}}
          - {key: b, feature_key: stored, billing_cadence: P1M, price: {unit: {amount: {amount: "1", currency: USD}}}}
          - {key: c, feature_key: flag, billing_cadence: P1M, price: {unit: {amount: {amount: "1", currency: USD}}}}
          - {key: d, feature_key: flag, entitlement_template: {metered: {issue_after_reset: {value: "5"}}}}
          - {key: e, feature_key: old, entitlement_template: {boolean: {}}}
          - {key: f, feature_key: flag, entitlement_template: {boolean: }}
"""
    stored = {
        "stored": Feature("stored", "stored", NOW, meter_key="llm_tokens"),
        "old": Feature("old", "old", NOW, archive_time=NOW),
    }
    found = problems(text, features=stored, meter_dimensions=DIMENSIONS)
    card = "document.plans[0].phases[0].rate_cards"
    assert set(found) == {f"{card}[2].feature_key", f"{card}[3].feature_key", f"{card}[4].feature_key"}
    assert "a unit price needs a metered feature" in found[f"{card}[2].feature_key"]
    assert "a metered entitlement needs a metered feature" in found[f"{card}[3].feature_key"]
    assert "is archived" in found[f"{card}[4].feature_key"]


def test_the_document_names_the_meters_whose_dimensions_validating_it_needs() -> None:
    text = document([plan_entry()], features="features:\n  - {key: sso}\n  - {key: other, meter_key: gpu}\n")
    stored = {"tokens": Feature("tokens", "tokens", NOW, meter_key="llm_tokens")}
    assert parse_document(text).meter_keys() == {"gpu"}
    assert parse_document(text).meter_keys(stored) == {"gpu", "llm_tokens"}


def test_a_new_feature_may_not_name_a_meter_ingest_does_not_have() -> None:
    state = CatalogState(unknown_meters=frozenset({"gpu_hours"}))
    with pytest.raises(InvalidArgument) as caught:
        diff("features: [{key: gpu, meter_key: gpu_hours}]\n", state)
    (violation,) = caught.value.violations
    assert violation.field == "document.features[0].meter_key"
    assert "names no meter of the ingest service" in violation.description


# --- the diff: every action ---------------------------------------------------------------------------

FEATURES = "features:\n  - {key: tokens, meter_key: llm_tokens}\n  - {key: sso}\n"


def plan_entry(
    key: str = "pro", amount: str = "0.002", *, start: datetime | None = None, extra: str = ""
) -> str:
    effective = f"    effective_from: {start.isoformat().replace('+00:00', 'Z')}\n" if start else ""
    return f"""  - key: {key}
    currency: USD
    billing_cadence: P1M
{effective}{extra}    phases:
      - key: main
        rate_cards:
          - key: tokens
            feature_key: tokens
            billing_cadence: P1M
            price: {{unit: {{amount: {{amount: "{amount}", currency: USD}}}}}}
          - key: sso
            feature_key: sso
            entitlement_template: {{boolean: {{}}}}
"""


def add_on_entry(key: str = "boost", amount: str = "10", *, start: datetime | None = None) -> str:
    effective = f"    effective_from: {start.isoformat().replace('+00:00', 'Z')}\n" if start else ""
    return f"""  - key: {key}
    currency: USD
    compatible_plan_keys: [pro]
{effective}    rate_cards: [{{key: boost, billing_cadence: P1M, price: {{flat: {{amount: {{amount: "{amount}", currency: USD}}}}}}}}]
"""


def document(plans: Sequence[str] = (), add_ons: Sequence[str] = (), features: str = FEATURES) -> str:
    text = features + "plans:\n" + "".join(plans)
    return text + ("add_ons:\n" + "".join(add_ons) if add_ons else "")


def without_sso(text: str) -> str:
    """A document without the sso feature and the rate cards that use it."""
    card = "          - key: sso\n            feature_key: sso\n            entitlement_template: {boolean: {}}\n"
    return text.replace("  - {key: sso}\n", "").replace(card, "")


def test_a_new_catalog_is_created_features_first_then_plans_then_add_ons_by_key() -> None:
    text = document([plan_entry("team"), plan_entry("pro")], [add_on_entry()])
    result = diff(text)
    assert summary(result) == [
        ("feature", "sso", 0, ("create",)),
        ("feature", "tokens", 0, ("create",)),
        ("plan", "pro", 1, ("create",)),
        ("plan", "team", 1, ("create",)),
        ("add_on", "boost", 1, ("create",)),
    ]
    steps = result.steps
    assert [type(s) for s in steps] == [CreateFeature] * 2 + [CreateVersion] * 3
    created = [s.version for s in steps if isinstance(s, CreateVersion)]
    assert all(v.status(NOW) is VersionStatus.DRAFT and v.version == 1 for v in created)
    assert all(c.changed_fields == () for c in result.changes)


def test_create_and_publish_when_the_document_gives_effective_from() -> None:
    result = diff(document([plan_entry(start=LATER)]))
    assert summary(result)[-1] == ("plan", "pro", 1, ("create", "publish"))
    publish = result.steps[-1]
    assert isinstance(publish, PublishVersion)
    assert publish.input.effective_from == LATER
    assert [v.status(NOW) for v in publish.versions] == [VersionStatus.SCHEDULED]


def test_applying_the_same_document_twice_changes_nothing() -> None:
    for text in (
        document([plan_entry()], [add_on_entry()]),
        document([plan_entry(start=LATER)], [add_on_entry(start=LATER)]),
    ):
        state = apply(CatalogState(meter_dimensions=DIMENSIONS), diff(text))
        assert_all_unchanged(diff(text, state))
        assert_all_unchanged(diff(text, state, now=LATER + timedelta(days=1)))  # once active, too


def test_a_changed_draft_is_updated_in_place_with_its_changed_fields() -> None:
    state = apply(CatalogState(meter_dimensions=DIMENSIONS), diff(document([plan_entry()])))
    result = diff(document([plan_entry(amount="0.003", extra="    description: New\n")]), state)
    (change,) = [c for c in result.changes if c.key == "pro"]
    assert (change.version, change.actions) == (1, (ChangeAction.UPDATE_DRAFT,))
    assert change.changed_fields == ("description", "phases[0].rate_cards[0].price.unit.amount")
    (step,) = change.steps
    assert isinstance(step, UpdateDraft) and step.version.update_time == NOW


def test_a_change_to_a_published_plan_makes_a_new_draft_version() -> None:
    state = apply(CatalogState(meter_dimensions=DIMENSIONS), diff(document([plan_entry(start=NOW)])))
    result = diff(document([plan_entry(amount="0.003")]), state, now=NOW + timedelta(hours=1))
    (change,) = [c for c in result.changes if c.key == "pro"]
    assert (change.version, change.actions) == (2, (ChangeAction.NEW_VERSION,))
    assert change.changed_fields == ("phases[0].rate_cards[0].price.unit.amount",)
    state = apply(state, result)
    assert [v.status(NOW + timedelta(hours=1)) for v in state.plans["pro"]] == [
        VersionStatus.ACTIVE,
        VersionStatus.DRAFT,
    ]
    # Further edits update that draft; giving effective_from then publishes it, ending version 1 then.
    result = diff(document([plan_entry(amount="0.004")]), state, now=NOW + timedelta(hours=2))
    assert summary(result)[-1] == ("plan", "pro", 2, ("update_draft",))
    state = apply(state, result)
    result = diff(document([plan_entry(amount="0.004", start=LATER)]), state, now=NOW + timedelta(hours=3))
    (change,) = [c for c in result.changes if c.key == "pro"]
    assert (change.version, change.actions, change.changed_fields) == (
        2,
        (ChangeAction.PUBLISH,),
        ("effective_from",),
    )
    (publish,) = change.steps
    assert isinstance(publish, PublishVersion)
    assert [(v.version, v.effective_from, v.effective_to) for v in publish.versions] == [
        (2, LATER, None),
        (1, NOW, LATER),
    ]
    state = apply(state, result)
    assert_all_unchanged(diff(document([plan_entry(amount="0.004", start=LATER)]), state))


def test_new_version_and_publish_in_one_apply() -> None:
    state = apply(CatalogState(meter_dimensions=DIMENSIONS), diff(document([plan_entry(start=NOW)])))
    result = diff(document([plan_entry(amount="0.003", start=LATER)]), state)
    assert summary(result)[-1] == ("plan", "pro", 2, ("new_version", "publish"))
    assert result.changes[-1].changed_fields == (
        "phases[0].rate_cards[0].price.unit.amount",
        "effective_from",
    )
    state = apply(state, result)
    assert_all_unchanged(diff(document([plan_entry(amount="0.003", start=LATER)]), state))


def test_the_same_content_from_another_time_is_a_new_version_published_then() -> None:
    state = apply(CatalogState(meter_dimensions=DIMENSIONS), diff(document([plan_entry(start=NOW)])))
    result = diff(document([plan_entry(start=LATER)]), state)
    (change,) = [c for c in result.changes if c.key == "pro"]
    assert (change.version, change.actions, change.changed_fields) == (
        2,
        (ChangeAction.NEW_VERSION, ChangeAction.PUBLISH),
        ("effective_from",),
    )


def test_a_published_version_is_recognised_by_its_effective_from_even_under_a_draft() -> None:
    state = apply(CatalogState(meter_dimensions=DIMENSIONS), diff(document([plan_entry(start=NOW)])))
    state = apply(state, diff(document([plan_entry(amount="0.009")]), state))  # draft version 2
    assert_all_unchanged(diff(document([plan_entry(start=NOW)]), state))  # describes version 1
    with pytest.raises(FailedPrecondition) as caught:
        diff(document([plan_entry(amount="0.005", start=NOW)]), state)
    assert caught.value.reason == "ERROR_REASON_IMMUTABLE"
    assert "document.plans[0].effective_from" in caught.value.message
    assert "phases[0].rate_cards[0].price.unit.amount" in caught.value.message


def test_publishing_follows_the_lifecycle_rules() -> None:
    with pytest.raises(InvalidArgument) as caught:
        diff(document([plan_entry(start=NOW - timedelta(days=1))]))
    assert [(v.field, v.description) for v in caught.value.violations] == [
        ("document.plans[0].effective_from", "must not be in the past (line 8)")
    ]
    state = apply(CatalogState(meter_dimensions=DIMENSIONS), diff(document([plan_entry(start=LATER)])))
    with pytest.raises(FailedPrecondition) as refused:
        diff(document([plan_entry(amount="0.003", start=LATER - timedelta(days=1))]), state)
    assert "already scheduled" in refused.value.message
    assert refused.value.metadata["fields"] == "document.plans[0].effective_from"


def test_an_equal_draft_is_published_when_the_document_gives_effective_from() -> None:
    state = apply(CatalogState(meter_dimensions=DIMENSIONS), diff(document([plan_entry()])))
    result = diff(document([plan_entry(start=LATER)]), state)
    assert summary(result)[-1] == ("plan", "pro", 1, ("publish",))


def test_a_new_version_follows_abandoned_drafts() -> None:
    state = apply(CatalogState(meter_dimensions=DIMENSIONS), diff(document([plan_entry()])))
    state = dataclasses.replace(state, plans={"pro": (archive_version(state.plans["pro"][0], NOW),)})
    result = diff(document([plan_entry()]), state)
    assert summary(result)[-1] == ("plan", "pro", 2, ("new_version",))


def test_a_changed_feature_is_a_conflict_naming_every_changed_field() -> None:
    state = apply(CatalogState(meter_dimensions=DIMENSIONS), diff(document([plan_entry()])))
    changed = "features:\n  - {key: tokens, meter_key: llm_tokens, meter_group_filters: {model: a}}\n  - {key: sso, name: SSO}\n"
    with pytest.raises(FailedPrecondition) as caught:
        diff(document([plan_entry()], features=changed), state)
    assert caught.value.reason == "ERROR_REASON_IMMUTABLE"
    assert caught.value.metadata["fields"] == "document.features[0],document.features[1]"
    assert "meter_group_filters[model]" in caught.value.message and "in name;" in caught.value.message


def test_an_archived_feature_may_describe_itself_but_not_be_used_by_a_new_version() -> None:
    state = apply(CatalogState(meter_dimensions=DIMENSIONS), diff(document([plan_entry(start=NOW)])))
    state = dataclasses.replace(
        state, features={**state.features, "sso": archive_feature(state.features["sso"], NOW)}
    )
    assert_all_unchanged(diff(document([plan_entry(start=NOW)]), state))
    with pytest.raises(InvalidArgument) as caught:
        diff(document([plan_entry(amount="0.5")]), state)
    assert [v.field for v in caught.value.violations] == [
        "document.plans[0].phases[0].rate_cards[1].feature_key"
    ]


def test_prune_archives_what_the_document_does_not_mention() -> None:
    full = document([plan_entry("pro", start=NOW), plan_entry("team")], [add_on_entry()])
    state = apply(CatalogState(meter_dimensions=DIMENSIONS), diff(full))
    state = apply(
        state, diff(document([plan_entry("pro", amount="0.5"), plan_entry("team")], [add_on_entry()]), state)
    )
    later = NOW + timedelta(hours=1)
    text = document([plan_entry("team")], features="features:\n  - {key: tokens, meter_key: llm_tokens}\n")
    assert summary(diff(text, state, now=later)) == [
        ("feature", "tokens", 0, ("unchanged",)),
        ("plan", "team", 1, ("unchanged",)),
    ]
    result = diff(text, state, prune=True, now=later)
    assert summary(result) == [
        ("feature", "sso", 0, ("unchanged",)),  # still used by team, a plan of the document...
        ("feature", "tokens", 0, ("unchanged",)),
        ("plan", "pro", 2, ("archive",)),
        ("plan", "team", 1, ("unchanged",)),
        ("add_on", "boost", 1, ("archive",)),
    ]
    assert [type(s) for s in result.steps] == [ArchiveVersion] * 3
    state = apply(state, result)
    assert {v.version: v.status(later) for v in state.plans["pro"]} == {
        1: VersionStatus.ARCHIVED,
        2: VersionStatus.ARCHIVED,
    }
    assert_all_unchanged(diff(text, state, prune=True, now=later))
    # ...until nothing live uses it: then it is archived, after the versions that used it.
    text = without_sso(document([plan_entry("team")]))
    result = diff(text, state, prune=True, now=later)
    assert summary(result) == [
        ("feature", "sso", 0, ("archive",)),
        ("feature", "tokens", 0, ("unchanged",)),
        ("plan", "team", 1, ("update_draft",)),
    ]
    assert [type(s) for s in result.steps] == [UpdateDraft, ArchiveFeature]
    assert_all_unchanged(diff(text, apply(state, result), prune=True, now=later))


def test_prune_keeps_a_feature_the_version_being_replaced_still_uses() -> None:
    state = apply(CatalogState(meter_dimensions=DIMENSIONS), diff(document([plan_entry(start=NOW)])))
    result = diff(without_sso(document([plan_entry()])), state, prune=True, now=NOW + timedelta(hours=1))
    # Version 1, still active, uses sso: archiving it would fail with ERROR_REASON_IN_USE.
    assert summary(result) == [
        ("feature", "sso", 0, ("unchanged",)),
        ("feature", "tokens", 0, ("unchanged",)),
        ("plan", "pro", 2, ("new_version",)),
    ]


def test_the_response_carries_the_diff_in_proto_form() -> None:
    result = diff(document([plan_entry(start=LATER)]))
    response = to_proto_apply_response(result, dry_run=True)
    assert response.dry_run
    last = response.changes[-1]
    assert last.resource_type == pb.CATALOG_RESOURCE_TYPE_PLAN
    assert (last.key, last.version) == ("pro", 1)
    assert list(last.actions) == [pb.CATALOG_CHANGE_ACTION_CREATE, pb.CATALOG_CHANGE_ACTION_PUBLISH]
    assert document_format_from_proto(pb.DOCUMENT_FORMAT_UNSPECIFIED) is DocumentFormat.YAML
    assert document_format_from_proto(pb.DOCUMENT_FORMAT_JSON) is DocumentFormat.JSON
    assert document_format_to_proto(DocumentFormat.JSON) == pb.DOCUMENT_FORMAT_JSON
    with pytest.raises(InvalidArgument) as caught:
        document_format_from_proto(7)
    assert caught.value.violations[0].field == "format"


# --- the examples --------------------------------------------------------------------------------------


def example_meters(name: str) -> dict[str, frozenset[str]]:
    """The meters of an example, each valid for ingest, with their dimensions."""
    meters = yaml.safe_load((ROOT / "examples" / f"{name}.meters.yaml").read_text())["meters"]
    dimensions = {}
    for entry in meters:
        meter = json_format.ParseDict(entry, ingest_pb2.Meter())
        ingest_convert.from_proto_create_meter(ingest_pb2.CreateMeterRequest(meter=meter)).validate()
        dimensions[meter.key] = frozenset(meter.group_by)
    return dimensions


def example(name: str) -> CatalogDocument:
    return parse_document((ROOT / "examples" / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_examples_parse_validate_apply_and_round_trip(name: str) -> None:
    dimensions = example_meters(name)
    document = example(name)
    features = {f.input.key: f.input.to_feature(NOW) for f in document.features}
    assert {f.meter_key for f in features.values() if f.meter_key} <= set(dimensions)
    document.validate(References(features=features, meter_dimensions=dimensions, plan_keys=frozenset()))
    empty = CatalogState(meter_dimensions=dimensions)
    result = diff_catalog(document, empty, now=NOW)
    assert all(c.actions == (ChangeAction.CREATE,) for c in result.changes)
    state = apply(empty, result)
    assert_all_unchanged(diff_catalog(document, state, now=NOW, prune=True))
    for format in DocumentFormat:
        exported = parse_document(export_catalog(state, now=NOW, format=format, include_drafts=True), format)
        assert_all_unchanged(diff_catalog(exported, state, now=NOW, prune=True))
        by_key = {p.content.key: p.content for p in document.plans}
        assert all(
            by_key[p.content.key].same_definition(state.plans[p.content.key][0]) for p in exported.plans
        )


def test_the_llm_example_models_the_offer() -> None:
    plans = {p.content.key: p.content for p in example("llm-provider").plans}
    assert set(plans) == {"developer", "scale", "enterprise"}

    def cards(plan: str) -> dict[str, RateCard]:
        return {c.key: c for c in plans[plan].phases[0].rate_cards}

    developer, scale, enterprise = cards("developer"), cards("scale"), cards("enterprise")
    assert developer["input_tokens"].price == UnitPrice(usd("0.000002"))  # $0.002 per 1K
    assert developer["output_tokens"].price == UnitPrice(usd("0.000006"))
    assert developer["input_tokens"].discounts == Discounts(UsageDiscount(D(10_000)))
    assert scale["input_tokens"].price == UnitPrice(usd("0.000001"))
    assert scale["output_tokens"].price == UnitPrice(usd("0.000003"))
    assert scale["fine_tuning"].price == UnitPrice(usd("3"))
    assert scale["priority_queue"].entitlement_template == BooleanEntitlementTemplate()
    assert scale["priority_queue"].price is None
    assert enterprise["output_tokens"].commitments.minimum_amount == usd("5000")


def test_the_api_platform_example_models_the_offer() -> None:
    (plan,) = [p.content for p in example("api-platform").plans]
    cards = {c.key: c for c in plan.phases[0].rate_cards}
    assert cards["platform_fee"].price == FlatPrice(usd("99"))
    requests = cards["api_requests"].price
    assert isinstance(requests, TieredPrice) and requests.mode is TieredMode.GRADUATED
    assert requests.tiers[0] == PriceTier(D(1_000_000), unit_amount=usd("0"))
    assert cards["storage"].discounts.usage == UsageDiscount(D(10))
    assert cards["sso"].entitlement_template == BooleanEntitlementTemplate()


def test_the_cloud_example_prices_uptime_per_region_and_provider() -> None:
    (plan,) = [p.content for p in example("cloud-infrastructure").plans]
    table = {}
    for card in plan.phases[0].rate_cards:
        assert isinstance(card.price, MatrixPrice) and card.price.dimensions == ("region", "provider")
        for entry in card.price.entries:
            assert isinstance(entry.price, UnitPrice)
            values = entry.dimension_values
            table[(card.key, values["region"], values["provider"])] = str(entry.price.amount.amount)
    rows = [
        (product, region, provider)
        for product in ("product_1_uptime", "product_2_uptime")
        for region in ("region-1", "region-2")
        for provider in ("aws", "azure")
    ]
    assert [table[row] for row in rows] == ["0.12", "0.14", "0.16", "0.18", "0.18", "0.22", "0.20", "0.24"]


def test_the_documented_example_is_a_valid_document() -> None:
    text = (ROOT / "docs" / "catalog-as-code.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    parse_document(block).validate(References(meter_dimensions={"llm_tokens": frozenset({"model"})}))


# --- export round trips, as a property over generated catalogs ------------------------------------------

POOL = {
    "tokens": Feature("tokens", "Tokens", NOW - timedelta(days=90), meter_key="llm_tokens"),
    "gpt4": Feature("gpt4", "gpt4", NOW - timedelta(days=90), "GPT-4 only", "llm_tokens", {"model": "gpt-4"}),
    "sso": Feature("sso", "SSO", NOW - timedelta(days=90), metadata={"kind": "boolean"}),
    "seats": Feature("seats", "seats", NOW - timedelta(days=90)),
}
METERED, UNMETERED = ("tokens", "gpt4"), ("sso", "seats")
texts = st.text(string.ascii_letters + string.digits + " .,:-'\"#é", max_size=12)
keys = st.text(string.ascii_lowercase + string.digits + "_-", min_size=1, max_size=8).filter(
    lambda k: k[0].isalnum()
)
cents = st.integers(0, 10**6).map(lambda n: usd(str(D(n) / 100)))
fine = st.integers(0, 10**9).map(lambda n: usd(str(D(n).scaleb(-7))))
quantities = st.integers(1, 10**9).map(lambda n: D(n).scaleb(-2))
percents = st.integers(0, 10_000).map(lambda n: D(n).scaleb(-2))


@st.composite
def tiered(draw: st.DrawFn) -> TieredPrice:
    bounds = sorted(draw(st.sets(st.integers(1, 10**6), max_size=3)))
    tiers = [PriceTier(D(b), draw(st.none() | fine), draw(st.none() | cents)) for b in bounds]
    tiers.append(PriceTier(None, draw(st.none() | fine), draw(st.none() | cents)))
    return TieredPrice(draw(st.sampled_from(TieredMode)), tuple(tiers))


@st.composite
def percentage(draw: st.DrawFn) -> PercentagePrice:
    low, high = sorted(draw(st.lists(st.integers(0, 10**4), min_size=2, max_size=2)))
    bounds = draw(st.booleans())
    return PercentagePrice(
        draw(percents),
        draw(st.none() | cents),
        usd(str(D(low) / 100)) if bounds else None,
        usd(str(D(high) / 100)) if bounds else None,
    )


usage_prices: st.SearchStrategy[UsagePrice] = st.one_of(
    st.builds(UnitPrice, fine),
    tiered(),
    st.builds(PackagePrice, cents, quantities),
    st.builds(DynamicPrice, percents),
    percentage(),
)


@st.composite
def matrix(draw: st.DrawFn) -> MatrixPrice:
    dims = tuple(draw(st.permutations(["model", "region"]))[: draw(st.integers(1, 2))])
    combos = draw(st.lists(st.tuples(*[texts for _ in dims]), unique=True, max_size=3))
    entries = tuple(
        MatrixPriceEntry(dict(zip(dims, combo, strict=True)), draw(usage_prices)) for combo in combos
    )
    return MatrixPrice(dims, entries, draw(usage_prices))


@st.composite
def rate_card(draw: st.DrawFn, key: str) -> RateCard:
    kind = draw(st.sampled_from(["flat", "usage", "matrix", "free"]))
    card = RateCard(
        key,
        name=draw(st.just("") | texts),
        description=draw(texts),
        tax=draw(
            st.none()
            | st.builds(
                TaxConfig, st.sampled_from(["", "txcd_10103000"]), st.none() | st.sampled_from(TaxBehavior)
            )
        ),
        metadata=draw(st.dictionaries(keys, texts, max_size=2)),
    )
    if kind == "flat":
        cadence = draw(st.sampled_from([None, MONTH, Cadence(months=12)]))
        feature = draw(st.sampled_from([None, *UNMETERED]))
        price: Price = FlatPrice(draw(cents), draw(st.sampled_from(PaymentTerm)))
        discount = draw(st.none() | st.builds(PercentageDiscount, percents.filter(lambda p: p > 0)))
        template: EntitlementTemplate | None = (
            draw(st.none() | st.just(BooleanEntitlementTemplate())) if feature else None
        )
        return dataclasses.replace(
            card,
            feature_key=feature,
            billing_cadence=cadence,
            price=price,
            discounts=Discounts(None, discount),
            entitlement_template=template,
        )
    if kind == "free":
        feature = draw(st.sampled_from([*METERED, *UNMETERED]))
        if feature in METERED:
            template = MeteredEntitlementTemplate(
                draw(quantities),
                draw(st.none() | st.just(MONTH)),
                draw(st.integers(1, 5)),
                draw(st.booleans()),
                draw(st.booleans()),
            )
        else:
            template = draw(
                st.sampled_from([BooleanEntitlementTemplate(), StaticEntitlementTemplate('{"seats": 10}')])
            )
        return dataclasses.replace(card, feature_key=feature, entitlement_template=template)
    feature = draw(st.sampled_from(METERED))
    price = draw(matrix()) if kind == "matrix" else draw(usage_prices)
    low, high = sorted(draw(st.lists(st.integers(0, 10**5), min_size=2, max_size=2)))
    commitments = draw(
        st.sampled_from(
            [Commitments(), Commitments(usd(str(low)), None), Commitments(usd(str(low)), usd(str(high)))]
        )
    )
    discounts = Discounts(
        draw(st.none() | st.builds(UsageDiscount, quantities)),
        draw(st.none() | st.builds(PercentageDiscount, percents.filter(lambda p: p > 0))),
    )
    template = draw(st.none() | st.builds(MeteredEntitlementTemplate, quantities))
    return dataclasses.replace(
        card,
        feature_key=feature,
        billing_cadence=MONTH,
        price=price,
        discounts=discounts,
        commitments=commitments,
        entitlement_template=template,
    )


@st.composite
def plan_content(draw: st.DrawFn, key: str) -> CreatePlanInput:
    phases = []
    count = draw(st.integers(1, 2))
    for index in range(count):
        card_keys = draw(st.lists(keys, unique=True, max_size=3))
        cards = tuple(draw(rate_card(k)) for k in card_keys)
        duration = Cadence(seconds=14 * 86_400) if index < count - 1 else None
        phases.append(PlanPhase(f"phase{index}", draw(st.just("") | texts), draw(texts), duration, cards))
    return CreatePlanInput(
        key,
        "USD",
        MONTH,
        tuple(phases),
        draw(st.just("") | texts),
        draw(texts),
        draw(st.dictionaries(keys, texts, max_size=2)),
    )


@st.composite
def add_on_content(draw: st.DrawFn, key: str, plan_keys: Sequence[str]) -> CreateAddOnInput:
    multiple = draw(st.booleans())
    cards = [draw(rate_card(k)) for k in draw(st.lists(keys, unique=True, min_size=1, max_size=2))]
    if multiple:
        cards = [
            c
            if not c.price or isinstance(c.price, FlatPrice)
            else dataclasses.replace(
                c, price=None, discounts=Discounts(), commitments=Commitments(), billing_cadence=None
            )
            for c in cards
        ]
    compatible = tuple(draw(st.lists(st.sampled_from(plan_keys), unique=True))) if plan_keys else ()
    kind = AddOnInstanceType.MULTIPLE if multiple else AddOnInstanceType.SINGLE
    return CreateAddOnInput(key, "USD", tuple(cards), draw(texts), draw(texts), kind, compatible)


LIFECYCLES = ["draft", "active", "active+draft", "active+scheduled", "archived", "abandoned+active"]


def versions_of(
    content: CreatePlanInput | CreateAddOnInput, other: CreatePlanInput | CreateAddOnInput, lifecycle: str
) -> tuple[Any, ...]:
    """The versions of one key in a lifecycle state at NOW, built with the domain's own rules."""

    def make(c: CreatePlanInput | CreateAddOnInput, number: int, at: datetime) -> Any:
        return c.to_plan(number, at) if isinstance(c, CreatePlanInput) else c.to_add_on(number, at)

    start = NOW - timedelta(days=60)
    if lifecycle == "draft":
        return (make(content, 1, start),)
    versions: tuple[Any, ...] = publish_version([make(other, 1, start)], 1, start, start)
    if lifecycle == "archived":
        return (archive_version(versions[0], start + timedelta(days=1)),)
    if lifecycle == "abandoned+active":
        versions = (*versions, archive_version(make(other, 2, start), start))
        versions = publish_version(
            [*versions, make(content, 3, start)], 3, start + timedelta(days=2), start + timedelta(days=2)
        )
    if lifecycle == "active+draft":
        versions = (*versions, make(content, 2, start))
    if lifecycle == "active+scheduled":
        versions = publish_version([*versions, make(content, 2, start)], 2, start, NOW + timedelta(days=5))
    return versions


@st.composite
def catalogs(draw: st.DrawFn) -> CatalogState:
    features = dict(POOL)
    for key in draw(st.sets(st.sampled_from(sorted(POOL)))):
        features[key] = archive_feature(POOL[key], NOW - timedelta(days=1))
    plan_keys = draw(st.lists(keys, unique=True, max_size=3))
    plans = {
        k: versions_of(draw(plan_content(k)), draw(plan_content(k)), draw(st.sampled_from(LIFECYCLES)))
        for k in plan_keys
    }
    add_on_keys = draw(st.lists(keys, unique=True, max_size=2))
    add_ons = {
        k: versions_of(
            draw(add_on_content(k, plan_keys)),
            draw(add_on_content(k, plan_keys)),
            draw(st.sampled_from(LIFECYCLES)),
        )
        for k in add_on_keys
    }
    return CatalogState(features, plans, add_ons, DIMENSIONS)


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(catalogs(), st.sampled_from(DocumentFormat), st.booleans(), st.booleans())
def test_an_export_applies_back_with_no_changes(
    state: CatalogState, format: DocumentFormat, drafts: bool, archived: bool
) -> None:
    text = export_catalog(state, now=NOW, format=format, include_drafts=drafts, include_archived=archived)
    assert (
        export_catalog(state, now=NOW, format=format, include_drafts=drafts, include_archived=archived)
        == text
    )
    assert_all_unchanged(diff_catalog(parse_document(text, format), state, now=NOW))


@settings(deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(catalogs(), st.data())
def test_apply_then_apply_again_changes_nothing(state: CatalogState, data: st.DataObject) -> None:
    state = dataclasses.replace(state, features={k: f for k, f in POOL.items() if data.draw(st.booleans())})
    # Keys the catalog has (so every action occurs) and new ones; times after every stored publication.
    plan_keys = data.draw(
        st.lists(st.sampled_from(sorted(state.plans) or ["p"]) | keys, unique=True, max_size=3)
    )
    add_on_keys = data.draw(
        st.lists(st.sampled_from(sorted(state.add_ons) or ["a"]) | keys, unique=True, max_size=2)
    )
    starts = st.none() | st.integers(20, 40).map(lambda d: NOW + timedelta(days=d))
    plans = [(data.draw(keep_or(plan_content(k), state.plans.get(k))), data.draw(starts)) for k in plan_keys]
    add_ons = [
        (data.draw(keep_or(add_on_content(k, plan_keys), state.add_ons.get(k))), data.draw(starts))
        for k in add_on_keys
    ]
    # The document's own features: every feature its rate cards use that the catalog lacks, and maybe more.
    cards = [card for p, _ in plans for _, card in p.rate_cards_with_paths()] + [
        card for a, _ in add_ons for card in a.rate_cards
    ]
    used = {card.feature_key for card in cards if card.feature_key}
    listed = {k for k in POOL if k in used - set(state.features) or data.draw(st.booleans())}
    text = write_document([POOL[k] for k in sorted(listed)], plans, add_ons)
    prune = data.draw(st.booleans())
    first = diff_catalog(parse_document(text), state, now=NOW, prune=prune)
    after = apply(state, first)
    assert_all_unchanged(
        diff_catalog(parse_document(text), after, now=NOW + timedelta(seconds=1), prune=prune)
    )


def keep_or(new: st.SearchStrategy[Any], versions: Sequence[Any] | None) -> st.SearchStrategy[Any]:
    """New content, or the content of one of the stored versions (so that UNCHANGED and PUBLISH occur)."""
    if not versions:
        return new
    stored = [
        CreatePlanInput.from_plan(v) if isinstance(v, Plan) else CreateAddOnInput.from_add_on(v)
        for v in versions
    ]
    return new | st.sampled_from(stored)


def write_document(
    features: Sequence[Feature],
    plans: Sequence[tuple[CreatePlanInput, datetime | None]],
    add_ons: Sequence[tuple[CreateAddOnInput, datetime | None]],
) -> str:
    """A YAML document of domain content, written through the export's own proto conversion."""
    from catalog.document import document_text, to_proto_document

    def published(content: Any, start: datetime | None) -> Any:
        made = content.to_plan(1, NOW) if isinstance(content, CreatePlanInput) else content.to_add_on(1, NOW)
        return made if start is None else dataclasses.replace(made, effective_from=start)

    return document_text(
        to_proto_document(
            features, [published(p, s) for p, s in plans], [published(a, s) for a, s in add_ons], now=NOW
        )
    )


def test_maps_have_a_stable_order_in_exports() -> None:
    feature = dataclasses.replace(
        POOL["gpt4"], meter_group_filters={"z": "1", "a": "2"}, metadata={"b": "x", "a": "y"}
    )
    text = export_catalog(CatalogState(features={"gpt4": feature}), now=NOW, format=DocumentFormat.JSON)
    data: Mapping[str, Any] = json.loads(text)
    (exported,) = data["features"]
    assert list(exported["meter_group_filters"]) == ["a", "z"] and list(exported["metadata"]) == ["a", "b"]
    assert "create_time" not in exported
    assert next(iter(exported)) == "key"
