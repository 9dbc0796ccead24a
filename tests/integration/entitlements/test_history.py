"""GetEntitlementHistory through the public API: windows with usage and balances, and the burn-down
segments that explain them, computed from ingest's usage."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import grpc
import pytest

from metering.common.v1 import common_pb2
from metering.entitlements.v1 import entitlements_pb2 as pb
from tests.integration.entitlements.helpers import (
    JUNE,
    NOW,
    Catalog,
    Ent,
    Ingest,
    assert_violations,
    by_id,
    create_entitlement,
    create_grant,
    d,
    dt,
    entitlement,
    grant,
    history,
    metered_config,
    plain_feature,
    reason,
    rpc_error,
    tokens_feature,
    upsert_customer,
    use,
    utc,
)

DAY = common_pb2.WINDOW_SIZE_DAY
MINUTE = common_pb2.WINDOW_SIZE_MINUTE


@pytest.fixture
async def metered(ent: Ent, ingest: Ingest, catalog: Catalog) -> str:
    await tokens_feature(ingest, catalog)
    await upsert_customer(ent)
    return (await create_entitlement(ent)).id


def _window(w: pb.HistoryWindow) -> tuple[object, ...]:
    return (
        dt(w.window.start_time).day,
        dt(w.window.end_time).day,
        d(w.usage),
        d(w.balance_at_start),
        d(w.balance_at_end),
        d(w.overage_at_end),
    )


async def test_daily_windows_show_usage_balances_and_overage(ent: Ent, ingest: Ingest, metered: str) -> None:
    await create_grant(ent, metered, grant(100))
    await create_grant(ent, metered, grant(50, effective_at=utc(2024, 6, 3, 12)))
    await use(ingest, 60, at=utc(2024, 6, 1, 8))
    await use(ingest, 70, at=utc(2024, 6, 2, 9))  # 30 beyond the first grant: overage
    await use(ingest, 10, at=utc(2024, 6, 3, 18))

    reply = await history(ent, metered, JUNE, utc(2024, 6, 5), window=DAY)

    assert [_window(w) for w in reply.windows] == [
        (1, 2, 60, 100, 40, 0),
        (2, 3, 70, 40, 0, 30),
        # The grant of June 3rd pays the overage off at 12:00, then 10 more are used.
        (3, 4, 10, 0, 10, 0),
        (4, 5, 0, 10, 10, 0),
    ]
    segments = reply.segments
    assert [(dt(s.period.start_time), dt(s.period.end_time)) for s in segments] == [
        (JUNE, utc(2024, 6, 3, 12)),
        (utc(2024, 6, 3, 12), utc(2024, 6, 5)),
    ]
    first, second = segments
    assert (d(first.usage), d(first.overage), d(first.balance_at_start), d(first.balance_at_end)) == (
        130,
        30,
        100,
        0,
    )
    assert (d(second.usage), d(second.overage), d(second.balance_at_start), d(second.balance_at_end)) == (
        10,
        0,
        50,
        10,
    )
    # The new grant covered the carried overage (30) and the segment's usage (10).
    assert [d(u.usage) for u in second.grant_usages] == [40]
    assert first.starts_with_reset  # June 1st starts a usage period
    assert not second.starts_with_reset


async def test_the_default_range_is_from_measure_usage_from_to_now(
    ent: Ent, ingest: Ingest, metered: str
) -> None:
    await create_grant(ent, metered, grant(100))
    await use(ingest, 25)

    reply = await history(ent, metered)

    [window] = reply.windows
    assert (dt(window.window.start_time), dt(window.window.end_time)) == (JUNE, NOW)
    assert (d(window.usage), d(window.balance_at_end)) == (25, 75)
    # A range starting before usage is measured starts where it is.
    [early] = (await history(ent, metered, utc(2024, 5, 1))).windows
    assert dt(early.window.start_time) == JUNE


async def test_windows_follow_the_time_zone(ent: Ent, ingest: Ingest, metered: str) -> None:
    await use(ingest, 5, at=utc(2024, 6, 9, 23))  # June 10th in Berlin

    reply = await history(
        ent, metered, utc(2024, 6, 8, 22), utc(2024, 6, 10, 22), window=DAY, time_zone="Europe/Berlin"
    )

    assert [(dt(w.window.start_time), d(w.usage)) for w in reply.windows] == [
        (utc(2024, 6, 8, 22), Decimal(0)),
        (utc(2024, 6, 9, 22), Decimal(5)),
    ]


async def test_issue_after_reset_and_resets_show_in_segments(
    ent: Ent, ingest: Ingest, catalog: Catalog
) -> None:
    await tokens_feature(ingest, catalog)
    await upsert_customer(ent)
    made = await create_entitlement(
        ent, entitlement(config=metered_config(interval="P1D", issue_after_reset="10", preserve_overage=True))
    )
    await use(ingest, 12, at=utc(2024, 6, 13, 6))
    await use(ingest, 3, at=utc(2024, 6, 14, 6))

    reply = await history(ent, made.id, utc(2024, 6, 13), utc(2024, 6, 15), window=DAY)

    assert [_window(w) for w in reply.windows] == [
        (13, 14, 12, 10, 0, 2),
        # 2 carried over the reset and paid from the new 10; then 3 used.
        (14, 15, 3, 8, 5, 0),
    ]
    thirteenth, fourteenth = reply.segments
    assert thirteenth.starts_with_reset and fourteenth.starts_with_reset
    [used] = fourteenth.grant_usages
    assert used.grant_id == "issue_after_reset@2024-06-14T00:00:00+00:00"
    assert d(used.usage) == 5


async def test_bad_requests(ent: Ent, catalog: Catalog, metered: str) -> None:
    error = await rpc_error(history(ent, metered, NOW, NOW - timedelta(hours=1), time_zone="Mars/Olympus"))
    assert_violations(error, "time_range.end_time", "time_zone")
    error = await rpc_error(history(ent, metered, NOW - timedelta(days=1), NOW, window=MINUTE))
    assert_violations(error, "window_size")  # 1440 windows
    reply = await history(ent, metered, NOW - timedelta(minutes=1000), NOW, window=MINUTE)
    assert len(reply.windows) == 1000
    assert_violations(
        await rpc_error(ent.GetEntitlementHistory(pb.GetEntitlementHistoryRequest())), "entitlement"
    )

    await plain_feature(catalog, "sso")
    boolean = await create_entitlement(
        ent, pb.Entitlement(customer_key="acme", feature_key="sso", boolean={})
    )
    assert (await rpc_error(history(ent, boolean.id))).code() == grpc.StatusCode.FAILED_PRECONDITION
    missing = "00000000-0000-4000-8000-000000000000"
    assert (await rpc_error(history(ent, missing))).code() == grpc.StatusCode.NOT_FOUND


async def test_history_of_a_deleted_entitlement_stays_readable(
    ent: Ent, ingest: Ingest, metered: str
) -> None:
    await create_grant(ent, metered, grant(100))
    await use(ingest, 40)
    await ent.DeleteEntitlement(pb.DeleteEntitlementRequest(entitlement=by_id(metered)))

    [window] = (await history(ent, metered, JUNE, utc(2024, 6, 11))).windows

    assert (d(window.usage), d(window.balance_at_end)) == (40, 60)


async def test_an_unreachable_ingest_is_unavailable(ent: Ent, ent_without_ingest: Ent, metered: str) -> None:
    error = await rpc_error(history(ent_without_ingest, metered))

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert reason(error) == "ERROR_REASON_DEPENDENCY_UNAVAILABLE"
