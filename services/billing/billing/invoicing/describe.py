"""Human-readable line descriptions, e.g. "Jan 21 \u2013 Feb 1, 10.09 of 31 days" (with an en dash)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from meterlib.periods import Period

_DAY = timedelta(days=1)
_DASH = "\u2013"  # an en dash, as between the dates of a range in print


def period_text(period: Period) -> str:
    """``Jan 1 \u2013 Feb 1``, with the years when the period spans two of them (dates in UTC)."""
    start, end = period.start, period.end
    if start.year != end.year:
        return f"{_date(start)}, {start.year} {_DASH} {_date(end)}, {end.year}"
    return f"{_date(start)} {_DASH} {_date(end)}"


def days_text(used: Period, full: Period) -> str:
    """``12 of 31 days``; fractions of a day to two decimals (``10.09 of 31 days``)."""
    return f"{_days(used.duration)} of {_days(full.duration)} days"


def _date(at: datetime) -> str:
    return f"{at:%b} {at.day}"


def _days(duration: timedelta) -> str:
    days = Decimal(duration // timedelta(microseconds=1)) / Decimal(_DAY // timedelta(microseconds=1))
    text = format(days.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
