"""Money: exact decimal amounts in ISO 4217 currencies, their wire form, and rounding to minor units.

Amounts are :class:`decimal.Decimal`, never float. On the wire an amount is a plain decimal string (see
``metering.common.v1.Money``): an optional leading ``-``, digits, and an optional ``.`` followed by
fraction digits. Exponent forms (``1e5``), ``NaN``/``Infinity``, signs other than a leading ``-``, digit
grouping (``1_000``), non-ASCII digits and surrounding whitespace are all rejected: ``Decimal()`` would
accept most of them, and an exponent like ``1e999999999`` would let one request ask for a number with a
billion digits. At most 38 significant digits are accepted.

Arithmetic on amounts runs in :data:`MONEY_CONTEXT` (38 significant digits) so that rating keeps full
precision whatever the process-wide decimal context says; this module never changes the global context.
Rounding to a currency's minor unit is half away from zero (``ROUND_HALF_UP`` in ``decimal`` terms) and
happens once per invoice line, never during rating.

Currency minor units come from the ``iso4217`` package, which ships the ISO 4217 maintenance agency's
"list one" table (published 2026-01-01 in version 1.16.20260101) and is re-released when it is amended.
"""

from __future__ import annotations

import decimal
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Final

from iso4217 import Currency

from meterlib.errors import FieldViolation, InvalidArgument, Violations

#: Significant digits kept by money arithmetic. 38 is the widest SQL ``NUMERIC`` most databases index
#: efficiently and far beyond any price * quantity a rating produces (a 20-digit quantity times an
#: 18-digit unit price still fits exactly).
MONEY_PRECISION: Final = 38

#: The decimal context for money arithmetic: 38 digits, half away from zero, and every condition that
#: would silently lose an amount (an invalid operation, a division by zero, an overflow) raises.
MONEY_CONTEXT: Final = decimal.Context(
    prec=MONEY_PRECISION,
    rounding=ROUND_HALF_UP,
    Emin=-999_999,
    Emax=999_999,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)

# The longest wire amount accepted; a bound before the regex so that a megabyte of digits costs nothing.
_MAX_WIRE_LENGTH: Final = 100
# ASCII digits only: r"\d" would also match Arabic-Indic and other digits that Decimal() happily reads.
_WIRE_DECIMAL: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def money_context() -> AbstractContextManager[decimal.Context]:
    """A ``with`` block whose decimal arithmetic runs in :data:`MONEY_CONTEXT` (for rating code)."""
    return decimal.localcontext(MONEY_CONTEXT)


def parse_decimal(text: str, field: str) -> Decimal:
    """Parse a wire decimal string strictly; raise InvalidArgument naming ``field`` if it is malformed.

    A float (or any other non-string) is a programming error, not a bad request, and raises TypeError.
    """
    if not isinstance(text, str):
        raise TypeError(f"{field}: a decimal must be given as a string, not {type(text).__name__}")
    reason = _decimal_text_problem(text)
    if reason is not None:
        raise InvalidArgument.fields([FieldViolation(field, reason)])
    return Decimal(text)


def _decimal_text_problem(text: str) -> str | None:
    """Why ``text`` is not an acceptable wire decimal, or None if it is."""
    if not text:
        return "must not be empty"
    if len(text) > _MAX_WIRE_LENGTH:
        return f"must be at most {_MAX_WIRE_LENGTH} characters"
    if _WIRE_DECIMAL.fullmatch(text) is None:
        return "must be a plain decimal: optional '-', digits, optional '.' and digits (no exponent)"
    if _significant_digits(Decimal(text)) > MONEY_PRECISION:
        return f"must have at most {MONEY_PRECISION} significant digits"
    return None


def _significant_digits(value: Decimal) -> int:
    """Digits from the first to the last non-zero one (0 for zero)."""
    digits = value.as_tuple().digits
    stripped = "".join(map(str, digits)).strip("0")
    return len(stripped)


def format_decimal(value: Decimal) -> str:
    """The canonical wire string: plain notation, no trailing fraction zeros, ``"0"`` for any zero.

    ``parse_decimal(format_decimal(d)) == d`` for every finite ``d`` of at most 38 significant digits.
    """
    if not isinstance(value, Decimal):
        raise TypeError(f"format_decimal takes a Decimal, not {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{value} has no wire form")
    if value.is_zero():
        return "0"  # also for -0 and 0.000, which are the same amount
    # format(..., "f") writes the exact digits in plain notation; normalize() would round to a context.
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


# Codes with a numeric minor unit. ISO lists some "X" codes (gold XAU, SDR XDR, test XTS, XXX) with minor
# unit "N.A."; amounts in them cannot be rounded for an invoice, so they are not currencies here.
_EXPONENTS: Final = MappingProxyType(
    {c.code: c.exponent for c in Currency if c.exponent is not None},
)


def is_currency(code: str) -> bool:
    """Whether ``code`` is an active ISO 4217 alphabetic code (upper case) with a defined minor unit."""
    return code in _EXPONENTS


def currency_exponent(code: str) -> int:
    """The number of minor-unit digits of a currency: USD 2, JPY 0, BHD 3, CLF 4; ValueError if unknown."""
    try:
        return _EXPONENTS[code]
    except KeyError:
        raise ValueError(f"{code!r} is not an ISO 4217 currency code") from None


def currencies() -> frozenset[str]:
    """Every currency code this module knows."""
    return frozenset(_EXPONENTS)


def parse_currency(code: str, field: str) -> str:
    """Validate a wire currency code; raise InvalidArgument naming ``field`` unless it is ISO 4217."""
    if not is_currency(code):
        raise InvalidArgument.fields([FieldViolation(field, _currency_problem(code))])
    return code


def _currency_problem(code: str) -> str:
    if code.upper() != code and is_currency(code.upper()):
        return f"currency codes are upper case: {code.upper()!r}"
    return "must be an ISO 4217 currency code such as 'USD' or 'EUR'"


def _minor_unit(currency: str) -> Decimal:
    """One minor unit as a quantize template: Decimal('0.01') for USD, Decimal('1') for JPY."""
    return Decimal(1).scaleb(-currency_exponent(currency))


def round_to_minor_unit(amount: Decimal, currency: str) -> Decimal:
    """Round to the currency's minor unit, half away from zero: USD 2.345 → 2.35, -2.345 → -2.35."""
    return amount.quantize(_minor_unit(currency), rounding=ROUND_HALF_UP, context=MONEY_CONTEXT)


def fits_minor_unit(amount: Decimal, currency: str) -> bool:
    """Whether ``amount`` has no more fraction digits than the currency's minor unit allows.

    A check to offer, not a rule: unit prices may need finer precision ($0.002 per token), only
    invoice lines and totals are whole minor units.
    """
    return round_to_minor_unit(amount, currency) == amount


@dataclass(frozen=True)
class Money:
    """An exact amount in one currency; ``+`` and ``-`` only between amounts of the same currency."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise TypeError(f"Money amount must be a Decimal, not {type(self.amount).__name__}")
        if not self.amount.is_finite():
            raise ValueError(f"Money amount must be finite, not {self.amount}")
        if not is_currency(self.currency):
            raise ValueError(f"{self.currency!r} is not an ISO 4217 currency code")

    @classmethod
    def zero(cls, currency: str) -> Money:
        """Nothing, in ``currency``."""
        return cls(Decimal(0), currency)

    @classmethod
    def from_wire(cls, amount: str, currency: str, field: str) -> Money:
        """Parse a wire Money; violations name ``{field}.amount`` and ``{field}.currency``, all at once."""
        if not isinstance(amount, str):
            raise TypeError(
                f"{field}.amount: a decimal must be given as a string, not {type(amount).__name__}"
            )
        violations = Violations()
        amount_problem = _decimal_text_problem(amount)
        if amount_problem is not None:
            violations.add(f"{field}.amount", amount_problem)
        if not is_currency(currency):
            violations.add(f"{field}.currency", _currency_problem(currency))
        violations.raise_if_any()
        return cls(Decimal(amount), currency)

    def to_wire(self) -> tuple[str, str]:
        """The wire form: (canonical decimal string, currency code)."""
        return format_decimal(self.amount), self.currency

    def rounded(self) -> Money:
        """This amount rounded to the currency's minor unit, half away from zero."""
        return Money(round_to_minor_unit(self.amount, self.currency), self.currency)

    def fits_minor_unit(self) -> bool:
        """Whether this amount is a whole number of minor units."""
        return fits_minor_unit(self.amount, self.currency)

    def _same_currency(self, other: Money, op: str) -> None:
        if self.currency != other.currency:
            raise ValueError(f"cannot {op} {other.currency} and {self.currency}")

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "add")
        return Money(MONEY_CONTEXT.add(self.amount, other.amount), self.currency)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "subtract")
        return Money(MONEY_CONTEXT.subtract(self.amount, other.amount), self.currency)

    def __neg__(self) -> Money:
        return Money(MONEY_CONTEXT.minus(self.amount), self.currency)

    def times(self, factor: Decimal) -> Money:
        """This amount multiplied by a decimal (a quantity, a proration fraction), at full precision."""
        if not isinstance(factor, Decimal):
            raise TypeError(f"Money can only be multiplied by a Decimal, not {type(factor).__name__}")
        return Money(MONEY_CONTEXT.multiply(self.amount, factor), self.currency)

    def __str__(self) -> str:
        return f"{format_decimal(self.amount)} {self.currency}"
