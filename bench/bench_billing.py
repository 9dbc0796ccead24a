"""`billing.*`: the pure rating engine's throughput, and the invoice run through a real billing server.

* `billing.rate_lines_per_s`: rate cards rated per second by `billing.rating.rate` in this process, on a
  mix of what plans price with (a unit price with free quantity, graduated and volume tiers, a package
  with a cap, a dynamic price, a three-model matrix with a percentage discount, and the progressive
  difference of a graduated price), each with a quantity drawn once from a fixed seed. Median of
  RUNS runs of LINES rate cards each.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from decimal import Decimal

from bench.harness import BenchContext, Result, benchmark
from billing.rating import (
    Commitments,
    Discounts,
    DynamicPrice,
    GroupedUsage,
    MatrixEntry,
    MatrixPrice,
    PackagePrice,
    Tier,
    TieredMode,
    TieredPrice,
    UnitPrice,
    combination,
    rate,
)

LINES = 20_000
RUNS = 5
SEED = 20241121

_GRADUATED = TieredPrice(
    TieredMode.GRADUATED,
    (
        Tier(Decimal(5), flat_amount=Decimal(100)),
        Tier(Decimal(10), flat_amount=Decimal(50)),
        Tier(Decimal(15), unit_amount=Decimal(5)),
        Tier(None, unit_amount=Decimal(1)),
    ),
)
_VOLUME = TieredPrice(
    TieredMode.VOLUME,
    (
        Tier(Decimal(5), flat_amount=Decimal(100)),
        Tier(Decimal(10), flat_amount=Decimal(150)),
        Tier(Decimal(15), unit_amount=Decimal(10)),
        Tier(None, unit_amount=Decimal(5)),
    ),
)
_MATRIX = MatrixPrice(
    ("model",),
    (
        MatrixEntry(combination({"model": "large"}), UnitPrice(Decimal("0.000003"))),
        MatrixEntry(combination({"model": "small"}), UnitPrice(Decimal("0.0000005"))),
    ),
    default_price=UnitPrice(Decimal("0.000001")),
)

Rating = Callable[[], object]


def _mix(rng: random.Random) -> list[Rating]:
    """One rate card of each kind, with quantities from ``rng``."""
    tokens = Decimal(rng.randint(0, 5_000_000))
    units = Decimal(rng.randint(0, 40))
    grouped = GroupedUsage.of(
        ({"model": model}, Decimal(rng.randint(0, 2_000_000))) for model in ("large", "small", "tiny")
    )
    return [
        lambda: rate(
            UnitPrice(Decimal("0.000002")), tokens, discounts=Discounts(free_quantity=Decimal(10_000))
        ),
        lambda: rate(_GRADUATED, units),
        lambda: rate(_VOLUME, units, commitments=Commitments(maximum_amount=Decimal(125))),
        lambda: rate(
            PackagePrice(Decimal(15), Decimal(10)),
            units * 10,
            commitments=Commitments(maximum_amount=Decimal(100)),
        ),
        lambda: rate(DynamicPrice(Decimal("1.33333")), units),
        lambda: rate(_MATRIX, grouped, discounts=Discounts(percent=Decimal(10))),
        lambda: rate(_GRADUATED, units, already_billed=Decimal(12)),
    ]


def _one_run(ratings: list[Rating]) -> float:
    started = time.perf_counter()
    for rating in ratings:
        rating()
    return len(ratings) / (time.perf_counter() - started)


@benchmark("billing.rate_lines_per_s")
async def bench_rate_lines(ctx: BenchContext) -> list[Result]:
    """Rate cards rated per second by the pure rating engine, on a mix of price models."""
    rng = random.Random(SEED)
    lines = LINES // 10 if ctx.quick else LINES
    ratings: list[Rating] = []
    while len(ratings) < lines:
        ratings.extend(_mix(rng))
    _one_run(ratings[:500])  # warm up
    runs = [_one_run(ratings) for _ in range(2 if ctx.quick else RUNS)]
    ctx.log(f"rate lines: runs {', '.join(f'{r:,.0f}/s' for r in runs)}")
    return [Result("billing.rate_lines_per_s", statistics.median(runs), "lines/s")]
