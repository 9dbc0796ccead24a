"""Money: strict wire decimals, ISO 4217 minor units, rounding half away from zero, same-currency sums."""

from __future__ import annotations

import decimal
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterlib.errors import InvalidArgument
from meterlib.money import (
    MONEY_CONTEXT,
    Money,
    currencies,
    currency_exponent,
    fits_minor_unit,
    format_decimal,
    is_currency,
    money_context,
    parse_currency,
    parse_decimal,
    round_to_minor_unit,
)

# Property tests run without hypothesis' per-example deadline: timing belongs in `make bench`, not tests.
# Decimals the wire accepts: at most 38 significant digits, exponents that stay within 100 characters.
wire_decimals = st.builds(
    lambda coefficient, exponent: Decimal(coefficient).scaleb(exponent, MONEY_CONTEXT),
    st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1),
    st.integers(min_value=-30, max_value=30),
)


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", "0"), ("-3", "-3"), ("12.50", "12.5"), ("0.000125", "0.000125"), ("007", "7"), ("-0", "0")],
)
def test_wire_decimals_parse_exactly(text: str, value: str) -> None:
    assert parse_decimal(text, "price.amount") == Decimal(value)


@pytest.mark.parametrize(
    "text",
    [
        "", " 1", "1 ", "+1", "1e5", "1E-2", "NaN", "nan", "Infinity", "-inf", "sNaN", "1_000", "1,5",
        ".5", "5.", "--1", "0x10", "١٢", "abc", "1.2.3", "9" * 39, "1" + "0" * 120,
    ],
)  # fmt: skip
def test_malformed_wire_decimals_name_the_field(text: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        parse_decimal(text, "items[2].price.amount")
    assert [v.field for v in raised.value.violations] == ["items[2].price.amount"]
    assert "items[2].price.amount" in raised.value.message


def test_thirty_eight_significant_digits_are_accepted_with_zeros_around_them() -> None:
    text = "0.000" + "9" * 38 + "000"
    assert parse_decimal(text, "amount") == Decimal(text)


@pytest.mark.parametrize("value", [1.5, 2, Decimal("1"), None, b"1"])
def test_anything_but_a_string_is_a_type_error(value: object) -> None:
    with pytest.raises(TypeError, match="amount"):
        parse_decimal(value, "amount")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("0", "0"), ("-0.00", "0"), ("0E-8", "0"), ("1E+5", "100000"), ("12.500", "12.5"),
        ("-3.10", "-3.1"), ("1.23E-7", "0.000000123"), ("100", "100"), ("2.000", "2"),
    ],
)  # fmt: skip
def test_format_writes_canonical_plain_strings(value: str, text: str) -> None:
    assert format_decimal(Decimal(value)) == text


def test_format_refuses_floats_and_non_finite_values() -> None:
    with pytest.raises(TypeError):
        format_decimal(1.5)  # type: ignore[arg-type]
    for value in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(ValueError):
            format_decimal(Decimal(value))


@settings(deadline=None)
@given(wire_decimals)
def test_format_then_parse_round_trips(value: Decimal) -> None:
    text = format_decimal(value)
    assert parse_decimal(text, "amount") == value
    assert format_decimal(parse_decimal(text, "amount")) == text
    assert "e" not in text.lower()
    assert text == "0" or not (text.endswith("0") and "." in text)


def test_iso_4217_minor_units() -> None:
    expected = {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0, "KRW": 0, "CLP": 0, "BHD": 3, "KWD": 3, "CLF": 4}
    assert {code: currency_exponent(code) for code in expected} == expected
    assert len(currencies()) > 150


@pytest.mark.parametrize("code", ["usd", "US", "USDX", "", "XXX", "XAU", "XTS", "ABC"])
def test_unknown_codes_and_codes_without_minor_unit_are_not_currencies(code: str) -> None:
    assert not is_currency(code)
    with pytest.raises(ValueError):
        currency_exponent(code)
    with pytest.raises(InvalidArgument) as raised:
        parse_currency(code, "customer.currency")
    assert [v.field for v in raised.value.violations] == ["customer.currency"]


def test_lower_case_code_gets_a_hint() -> None:
    with pytest.raises(InvalidArgument) as raised:
        parse_currency("eur", "currency")
    assert "'EUR'" in raised.value.violations[0].description


@pytest.mark.parametrize(
    ("amount", "currency", "rounded"),
    [
        ("2.345", "USD", "2.35"), ("-2.345", "USD", "-2.35"), ("2.344", "USD", "2.34"),
        ("-2.344", "USD", "-2.34"), ("0.005", "USD", "0.01"), ("-0.005", "USD", "-0.01"),
        ("2.5", "JPY", "3"), ("-2.5", "JPY", "-3"), ("3.5", "JPY", "4"), ("2.4999", "JPY", "2"),
        ("1.2345", "BHD", "1.235"), ("-1.2345", "BHD", "-1.235"), ("1.23449", "BHD", "1.234"),
        ("0.00005", "CLF", "0.0001"), ("7", "USD", "7.00"),
    ],
)  # fmt: skip
def test_rounding_is_half_away_from_zero_per_exponent(amount: str, currency: str, rounded: str) -> None:
    result = round_to_minor_unit(Decimal(amount), currency)
    assert result == Decimal(rounded)
    assert result.as_tuple().exponent == -currency_exponent(currency)


@settings(deadline=None)
@given(wire_decimals, st.sampled_from(["USD", "JPY", "BHD", "CLF"]))
def test_rounding_is_symmetric_and_within_half_a_minor_unit(value: Decimal, currency: str) -> None:
    if abs(value) >= Decimal(10) ** 30:
        return  # 38 digits leave no room for the minor unit of numbers this large
    rounded = round_to_minor_unit(value, currency)
    half_unit = Decimal(1).scaleb(-currency_exponent(currency)) / 2
    assert round_to_minor_unit(-value, currency) == -rounded
    assert abs(rounded - value) <= half_unit
    assert fits_minor_unit(rounded, currency)


def test_fits_minor_unit_allows_finer_unit_prices_to_be_detected_not_refused() -> None:
    assert fits_minor_unit(Decimal("12.50"), "USD")
    assert fits_minor_unit(Decimal("12.5000"), "USD")
    assert not fits_minor_unit(Decimal("0.002"), "USD")
    assert not fits_minor_unit(Decimal("1.5"), "JPY")
    assert Money(Decimal("0.002"), "USD").amount == Decimal("0.002")  # a per-token price is fine


def test_money_adds_and_subtracts_within_one_currency() -> None:
    a, b = Money(Decimal("10.25"), "EUR"), Money(Decimal("0.75"), "EUR")
    assert a + b == Money(Decimal("11"), "EUR")
    assert a - b == Money(Decimal("9.5"), "EUR")
    assert -a == Money(Decimal("-10.25"), "EUR")
    assert Money.zero("JPY") + Money(Decimal("5"), "JPY") == Money(Decimal(5), "JPY")


def test_money_refuses_mixed_currencies() -> None:
    usd, eur = Money(Decimal(1), "USD"), Money(Decimal(1), "EUR")
    with pytest.raises(ValueError, match="EUR"):
        usd + eur
    with pytest.raises(ValueError, match="EUR"):
        usd - eur


def test_money_validates_its_parts() -> None:
    with pytest.raises(TypeError):
        Money(1.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Money(Decimal("NaN"), "USD")
    with pytest.raises(ValueError):
        Money(Decimal(1), "usd")


def test_money_keeps_full_precision_and_rounds_on_request() -> None:
    per_token = Money(Decimal("0.000002"), "USD")
    cost = per_token.times(Decimal("1234567"))
    assert cost.amount == Decimal("2.469134")
    assert cost.rounded() == Money(Decimal("2.47"), "USD")
    assert not cost.fits_minor_unit()
    assert cost.rounded().fits_minor_unit()


def test_money_wire_round_trip() -> None:
    money = Money.from_wire("12.50", "USD", "price")
    assert money == Money(Decimal("12.5"), "USD")
    assert money.to_wire() == ("12.5", "USD")
    assert Money.from_wire(*money.to_wire(), "price") == money


def test_money_from_wire_reports_every_bad_part_at_once() -> None:
    with pytest.raises(InvalidArgument) as raised:
        Money.from_wire("1e3", "usd", "rate_cards[0].price")
    fields = [v.field for v in raised.value.violations]
    assert fields == ["rate_cards[0].price.amount", "rate_cards[0].price.currency"]
    with pytest.raises(TypeError):
        Money.from_wire(1.5, "USD", "price")  # type: ignore[arg-type]


def test_money_arithmetic_ignores_the_global_decimal_context() -> None:
    with decimal.localcontext() as ctx:
        ctx.prec = 3
        ctx.rounding = decimal.ROUND_FLOOR
        total = Money(Decimal("1234.5678"), "USD") + Money(Decimal("0.0001"), "USD")
        assert total.amount == Decimal("1234.5679")
        assert round_to_minor_unit(Decimal("1234.565"), "USD") == Decimal("1234.57")
    assert decimal.getcontext().prec != 3


def test_money_context_is_local() -> None:
    before = decimal.getcontext().prec
    with money_context():
        assert decimal.getcontext().prec == 38
        assert Decimal(1) / Decimal(3) == Decimal("0." + "3" * 38)
    assert decimal.getcontext().prec == before
