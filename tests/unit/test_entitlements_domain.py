"""The entitlements domain without I/O: defaults, fingerprints, the JSON of recorded responses, history
windows cut from a burn-down, and when a reset may happen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from entitlements.burndown import Grant as EngineGrant
from entitlements.burndown import compute
from entitlements.domain import (
    EntitlementInput,
    EntitlementRef,
    EntitlementType,
    Feature,
    Grant,
    MeteredConfigInput,
    Outcome,
    Recurrence,
    Reset,
    ResetUsageInput,
    balance_after_opening,
    fingerprint,
    history_windows,
    segment_overage,
)
from entitlements.store.codec import outcome_from_json, outcome_to_json
from meterlib.errors import FailedPrecondition, InvalidArgument
from meterlib.periods import Cadence, Period

NOW = datetime(2024, 6, 15, 12, tzinfo=UTC)
JUNE = datetime(2024, 6, 1, tzinfo=UTC)
MONTHLY = Cadence(months=1)
FEATURE = Feature("tokens", meter_key="tokens", meter_group_filters={"model": "gpt-4"})


def _input(**changes: object) -> EntitlementInput:
    fields: dict[str, object] = {
        "request_id": "r-1",
        "customer_key": "acme",
        "feature_key": "tokens",
        "type": EntitlementType.METERED,
        "metered": MeteredConfigInput(usage_period=MONTHLY),
        "metadata": {"b": "2", "a": "1"},
    }
    fields.update(changes)
    return EntitlementInput(**fields)  # type: ignore[arg-type]


def test_unset_times_default_to_the_creation_and_active_from() -> None:
    made = _input(active_from=JUNE).to_entitlement("e-1", FEATURE, NOW)

    assert made.active_from == JUNE
    assert made.metered is not None
    assert (made.metered.anchor, made.metered.measure_usage_from) == (NOW, JUNE)
    assert (made.metered.meter_key, dict(made.metered.meter_group_filters)) == ("tokens", {"model": "gpt-4"})
    assert made.metered.issue_after_reset_priority == 1


def test_a_fingerprint_is_of_the_request_as_sent() -> None:
    one = fingerprint("CreateEntitlement", _input().request_fields())

    assert fingerprint("CreateEntitlement", _input(metadata={"a": "1", "b": "2"}).request_fields()) == one
    assert fingerprint("CreateEntitlement", _input(request_id="other").request_fields()) == one
    assert fingerprint("OverrideEntitlement", _input().request_fields()) != one
    assert fingerprint("CreateEntitlement", _input(active_from=NOW).request_fields()) != one


def test_validation_reports_every_field() -> None:
    bad = _input(
        request_id="",
        customer_key="Bad",
        metered=MeteredConfigInput(
            usage_period=None, issue_after_reset=Decimal(0), issue_after_reset_priority=-1
        ),
        active_to=NOW,
    )
    with pytest.raises(InvalidArgument) as raised:
        bad.validate(NOW)
    assert {v.field for v in raised.value.violations} == {
        "request_id",
        "entitlement.customer_key",
        "entitlement.metered.usage_period.interval",
        "entitlement.metered.issue_after_reset",
        "entitlement.metered.issue_after_reset_priority",
        "entitlement.active_to",
    }


def test_recorded_responses_round_trip_through_json() -> None:
    entitlement = _input(active_from=JUNE, active_to=NOW + timedelta(days=30)).to_entitlement(
        "e-1", FEATURE, NOW
    )
    viewed = entitlement.viewed_at([Reset(NOW - timedelta(days=1))], NOW)
    grant = Grant(
        id="g-1",
        entitlement_id="e-1",
        amount=Decimal("100.25"),
        priority=3,
        effective_at=JUNE,
        create_time=NOW,
        expires_at=NOW + timedelta(days=9),
        min_rollover=Decimal(1),
        max_rollover=Decimal("2.5"),
        recurrence=Recurrence(Cadence(seconds=3600), JUNE),
        metadata={"k": "v"},
        void_time=NOW,
        balance=Decimal(0),
    )
    for outcome in (
        Outcome(entitlement=viewed),
        Outcome(entitlement=viewed, replaced_entitlement_id="e-0"),
        Outcome(grant=grant),
    ):
        assert outcome_from_json(outcome_to_json(outcome)) == outcome
    assert viewed.last_reset_time == NOW - timedelta(days=1)


def test_a_reset_follows_the_last_one_and_usage_measurement() -> None:
    entitlement = _input(active_from=JUNE).to_entitlement("e-1", FEATURE, NOW)
    ref = EntitlementRef.of_id("e-1")

    def reset(at: datetime, resets: list[Reset]) -> Reset:
        return ResetUsageInput("r", ref, effective_at=at).to_reset(entitlement, resets, NOW)

    assert reset(NOW, []).at == NOW
    earlier = [Reset(datetime(2024, 6, 10, tzinfo=UTC))]
    with pytest.raises(FailedPrecondition):
        reset(datetime(2024, 6, 9, tzinfo=UTC), earlier)
    with pytest.raises(FailedPrecondition):
        reset(datetime(2024, 6, 10, tzinfo=UTC), earlier)
    with pytest.raises(FailedPrecondition):
        reset(datetime(2024, 5, 31, tzinfo=UTC), [])


def test_history_windows_are_cut_from_split_segments() -> None:
    definition = _input(active_from=JUNE).to_entitlement("e-1", FEATURE, NOW).engine()
    grants = [
        EngineGrant(id="a", amount=Decimal(100), effective_at=JUNE),
        EngineGrant(id="b", amount=Decimal(50), effective_at=datetime(2024, 6, 3, 12, tzinfo=UTC)),
    ]
    usage = {1: Decimal(60), 2: Decimal(70), 3: Decimal(10)}  # at midnight of these days of June
    days = [
        Period(datetime(2024, 6, d, tzinfo=UTC), datetime(2024, 6, d + 1, tzinfo=UTC)) for d in (1, 2, 3, 4)
    ]

    def source(start: datetime, stop: datetime) -> Decimal:
        return sum(
            (v for day, v in usage.items() if start <= datetime(2024, 6, day, tzinfo=UTC) < stop), Decimal(0)
        )

    result = compute(definition, grants, days[-1].end, source, split_at=[p.start for p in days])
    windows = history_windows(result.segments, days)

    assert [(w.usage, w.balance_at_start, w.balance_at_end, w.overage_at_end) for w in windows] == [
        (60, 100, 40, 0),
        (70, 40, 0, 30),
        (10, 0, 10, 0),  # 10 more overage at midnight; the grant of the 3rd at noon pays all 40 of it
        (0, 10, 10, 0),
    ]
    paying = next(s for s in result.segments if s.period.start == grants[1].effective_at)
    assert (paying.balance_at_start, paying.overage_at_start) == (Decimal(50), Decimal(40))
    assert (balance_after_opening(paying), segment_overage(paying)) == (Decimal(10), Decimal(0))
