"""The entitlement rows of SEMANTICS.md through the public APIs: usage ingested through ingest, grants and
resets through entitlements, balances read from ListGrants and GetEntitlementHistory (the truth)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from tests.integration.entitlements.helpers import (
    JUNE,
    NOW,
    Catalog,
    Ent,
    Ingest,
    balances,
    create_entitlement,
    create_grant,
    d,
    entitlement,
    grant,
    history,
    metered_config,
    reset_usage,
    tokens_feature,
    upsert_customer,
    use,
    utc,
)


async def _metered(ent: Ent, ingest: Ingest, catalog: Catalog, **config: object) -> str:
    await tokens_feature(ingest, catalog)
    await upsert_customer(ent)
    made = await create_entitlement(ent, entitlement(config=metered_config(**config)))  # type: ignore[arg-type]
    return made.id


async def _totals(ent: Ent, entitlement_id: str, start: datetime = JUNE) -> tuple[Decimal, Decimal, Decimal]:
    """(usage, balance, overage) of ``[start, now)`` (``start`` the period's), from one history window."""
    [window] = (await history(ent, entitlement_id, start)).windows
    return d(window.usage), d(window.balance_at_end), d(window.overage_at_end)


async def test_usage_burns_the_lower_priority_number_first(
    ent: Ent, ingest: Ingest, catalog: Catalog
) -> None:
    entitlement_id = await _metered(ent, ingest, catalog)
    await create_grant(ent, entitlement_id, grant(100, priority=2))
    await create_grant(ent, entitlement_id, grant(100, priority=1))
    await use(ingest, 70, at=utc(2024, 6, 3))
    await use(ingest, 50, at=utc(2024, 6, 10))

    assert await balances(ent, entitlement_id) == [Decimal(0), Decimal(80)]  # priority 1 listed first
    assert await _totals(ent, entitlement_id) == (Decimal(120), Decimal(80), Decimal(0))


async def test_usage_beyond_every_grant_is_overage_under_a_hard_limit(
    ent: Ent, ingest: Ingest, catalog: Catalog
) -> None:
    entitlement_id = await _metered(ent, ingest, catalog)
    await create_grant(ent, entitlement_id, grant(100))
    await use(ingest, 130)

    assert await balances(ent, entitlement_id) == [Decimal(0)]
    assert await _totals(ent, entitlement_id) == (Decimal(130), Decimal(0), Decimal(30))


async def test_a_soft_limit_counts_overage_alike(ent: Ent, ingest: Ingest, catalog: Catalog) -> None:
    entitlement_id = await _metered(ent, ingest, catalog, soft=True)
    await create_grant(ent, entitlement_id, grant(100))
    await use(ingest, 130)

    assert await balances(ent, entitlement_id) == [Decimal(0)]
    assert await _totals(ent, entitlement_id) == (Decimal(130), Decimal(0), Decimal(30))


async def test_a_reset_keeps_at_most_the_max_rollover(ent: Ent, ingest: Ingest, catalog: Catalog) -> None:
    entitlement_id = await _metered(ent, ingest, catalog)
    await create_grant(ent, entitlement_id, grant(100, max_rollover="50"))
    await use(ingest, 10, at=utc(2024, 6, 5))
    assert await balances(ent, entitlement_id) == [Decimal(90)]

    await reset_usage(ent, entitlement_id, utc(2024, 6, 10))

    assert await balances(ent, entitlement_id) == [Decimal(50)]
    assert await _totals(ent, entitlement_id, utc(2024, 6, 10)) == (Decimal(0), Decimal(50), Decimal(0))


async def test_preserved_overage_is_burned_from_the_rolled_over_balance(
    ent: Ent, ingest: Ingest, catalog: Catalog
) -> None:
    entitlement_id = await _metered(ent, ingest, catalog, preserve_overage=True)
    await create_grant(ent, entitlement_id, grant(100, min_rollover="50", max_rollover="50"))
    await use(ingest, 110, at=utc(2024, 6, 5))
    assert await balances(ent, entitlement_id) == [Decimal(0)]

    await reset_usage(ent, entitlement_id, utc(2024, 6, 10))

    assert await balances(ent, entitlement_id) == [Decimal(40)]
    [before, after] = (await history(ent, entitlement_id, JUNE, NOW)).segments
    assert (d(before.usage), d(before.overage), d(before.balance_at_end)) == (Decimal(110), Decimal(10), 0)
    assert after.starts_with_reset
    assert (d(after.balance_at_start), d(after.balance_at_end)) == (Decimal(50), Decimal(40))


async def test_without_preserving_overage_a_reset_drops_it(
    ent: Ent, ingest: Ingest, catalog: Catalog
) -> None:
    entitlement_id = await _metered(ent, ingest, catalog)
    await create_grant(ent, entitlement_id, grant(100, min_rollover="50", max_rollover="50"))
    await use(ingest, 110, at=utc(2024, 6, 5))

    await reset_usage(ent, entitlement_id, utc(2024, 6, 10))

    assert await balances(ent, entitlement_id) == [Decimal(50)]
