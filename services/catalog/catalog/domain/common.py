"""Rules every catalog resource shares: keys, texts, labels, money amounts and field paths.

Field paths name proto fields exactly as ``metering.catalog.v1`` spells them, with indices for repeated
fields and ``[key]`` for map entries: ``plan.phases[0].rate_cards[1].price.tiered.tiers[2].up_to``. A
money amount (a ``metering.common.v1.Money`` message) is named by its field for rules about its presence or
its relation to another amount, by ``<field>.amount`` for rules about the number itself (the wire text
lives there too) and by ``<field>.currency`` for the currency.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Final

from meterlib.errors import Violations
from meterlib.money import Money, currency_exponent, fits_minor_unit, is_currency
from meterlib.validation import MAX_METADATA, MAX_METADATA_KEY, MAX_METADATA_VALUE, check_text
from meterlib.validation import Collector as SharedCollector

DIMENSION_PATTERN: Final = re.compile(r"^[a-z0-9_]{1,64}$")
"""Meter dimension (group-by) names, as the ingest service accepts them."""
DIMENSION_RULE: Final = "must be a meter dimension name: 1-64 characters of a-z, 0-9 and '_'"
MAX_NAME: Final = 256
MAX_DESCRIPTION: Final = 4096
MAX_GROUP_VALUE: Final = 256
"""Longest meter dimension value a feature filter or a matrix entry may name."""

_ZERO: Final = Decimal(0)
_HUNDRED: Final = Decimal(100)


def _related(a: str, b: str) -> bool:
    """Whether one path is the other or lies inside it (``x.price`` and ``x.price.flat.amount``)."""
    if a == b:
        return True
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return long.startswith(short) and long[len(short)] in ".["


class Collector(SharedCollector):
    """Violations of one request, starting with what could not even be decoded from the wire.

    A value that could not be decoded reaches the domain as ``None`` (or not at all); a domain rule about
    the same field, or about a field inside or around it, would only repeat the problem in other words,
    so it is dropped. Every other rule still reports, so the caller sees every problem at once.
    """

    def undecodable_at(self, path: str) -> bool:
        """Whether decoding failed for ``path``, a field inside it or a field that contains it."""
        return any(_related(path, d.field) for d in self.undecodable)


def check_metadata(v: Violations, metadata: Mapping[str, str], path: str) -> None:
    """Free-form labels: at most 32 entries, keys 1-64 and values up to 512 characters."""
    if len(metadata) > MAX_METADATA:
        v.add(path, f"must have at most {MAX_METADATA} entries")
    for key, value in sorted(metadata.items()):
        where = f"{path}[{key}]"
        if not 1 <= len(key) <= MAX_METADATA_KEY or "\x00" in key:
            v.add(where, f"keys must be 1 to {MAX_METADATA_KEY} characters without NUL")
        check_text(v, value, where, MAX_METADATA_VALUE)


def check_currency(v: Violations, currency: str, path: str) -> None:
    """A required ISO 4217 code."""
    if not currency:
        v.add(path, "is required")
    elif not is_currency(currency):
        if currency.upper() != currency and is_currency(currency.upper()):
            v.add(path, f"currency codes are upper case: {currency.upper()!r}")
        else:
            v.add(path, "must be an ISO 4217 currency code such as 'USD' or 'EUR'")


def check_money(
    v: Violations, money: Money | None, path: str, currency: str | None, *, whole_minor_units: bool
) -> None:
    """An amount that must not be negative, must be in ``currency`` and, when it is charged as it is
    (not multiplied by a quantity), must be a whole number of the currency's minor units.

    ``currency`` is None when the owner's own currency is invalid: then only the number is checked.
    """
    if money is None:
        return
    if currency is not None and money.currency != currency:
        v.add(f"{path}.currency", f"must be {currency}, the currency of every amount here")
    if money.amount < _ZERO:
        v.add(f"{path}.amount", "must not be negative")
    elif whole_minor_units and not fits_minor_unit(money.amount, money.currency):
        digits = currency_exponent(money.currency)
        v.add(
            f"{path}.amount",
            f"must be a whole number of {money.currency} minor units (at most {digits} fraction digits)",
        )


def check_not_above(v: Violations, low: Money | None, high: Money | None, path: str, what: str) -> None:
    """``high`` (at ``path``) must not be below ``low`` when both are given in the same currency."""
    if low is not None and high is not None and low.currency == high.currency and high.amount < low.amount:
        v.add(path, f"must not be below the {what} ({low})")


def check_percent(v: Violations, value: Decimal, path: str, *, allow_zero: bool) -> None:
    """A percentage: 0 (or above 0) to 100."""
    if value > _HUNDRED or value < _ZERO or (value == _ZERO and not allow_zero):
        low = "from 0" if allow_zero else "above 0"
        v.add(path, f"must be {low} and at most 100")


def check_unique(v: Violations, keys: Iterable[str], path: str, what: str = "key") -> None:
    """Every key of a repeated field is given once; a repeat is reported at its own index."""
    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key in first:
            v.add(f"{path}[{index}]", f"{what} {key!r} repeats {path}[{first[key]}]")
        else:
            first[key] = index


def check_unique_keys(v: Violations, keys: Iterable[str], path: str) -> None:
    """Keys of a repeated message are unique: a repeat is reported at ``path[i].key``."""
    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key and key in first:
            v.add(f"{path}[{index}].key", f"{key!r} is already the key of {path}[{first[key]}]")
        elif key:
            first[key] = index
