"""The Lua decimal library adds, subtracts and compares exactly as Python's Decimal does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal, localcontext

import pytest
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entitlements.hot.scripts import with_decimals
from meterlib.money import format_decimal

_OPS = with_decimals(
    """
    local a, b = ARGV[1], ARGV[2]
    return {dec_add(a, b), dec_sub(a, b), dec_cmp(a, b)}
    """
)

_decimals = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=6, min_value=-(10**12), max_value=10**12),
    st.integers(min_value=-(10**30), max_value=10**30).map(Decimal),
    st.decimals(allow_nan=False, allow_infinity=False, min_value=-1, max_value=1, places=20),
    st.sampled_from([Decimal(0), Decimal("0.000"), Decimal("-0"), Decimal("1E+3"), Decimal("100.100")]),
)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    connection = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    yield connection
    await connection.aclose()


def _plain(value: Decimal) -> str:
    return format_decimal(value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=_decimals, b=_decimals)
async def test_add_sub_cmp_agree_with_python(client: redis.asyncio.Redis, a: Decimal, b: Decimal) -> None:
    added, subtracted, compared = await client.eval(_OPS, 0, _plain(a), _plain(b))  # type: ignore[misc]
    with localcontext(prec=200):  # exact, as the strings are
        assert Decimal(added) == a + b and added == _plain(a + b)
        assert Decimal(subtracted) == a - b and subtracted == _plain(a - b)
    assert compared == (a > b) - (a < b)


async def test_results_are_normalised(client: redis.asyncio.Redis) -> None:
    assert await client.eval(_OPS, 0, "0.50", "-0.5") == ["0", "1", 1]  # type: ignore[misc]
    assert await client.eval(_OPS, 0, "007.10", "2.9") == ["10", "4.2", 1]  # type: ignore[misc]
    assert await client.eval(_OPS, 0, "-1", "1") == ["0", "-2", -1]  # type: ignore[misc]


async def test_anything_else_is_an_error(client: redis.asyncio.Redis) -> None:
    with pytest.raises(redis.exceptions.ResponseError, match="not a decimal"):
        await client.eval(_OPS, 0, "1e3", "1")  # type: ignore[misc]
