"""Calendar arithmetic, in one place: billing cadences, anchored periods, usage windows and proration.

Billing periods and usage periods are counted from an anchor instant on the **UTC calendar** (as
OpenMeter does): period ``n`` is ``[anchor + n * cadence, anchor + (n + 1) * cadence)``, each bound
computed from the anchor, never by stepping from the previous bound, so that month-end clamping cannot
drift. Adding months keeps the anchor's day and time of day and clamps the day to the end of shorter
months: from Jan 31 a month gives Feb 29 (Feb 28 outside leap years), two months give Mar 31.

Usage query windows (``MINUTE``, ``HOUR``, ``DAY``, ``MONTH``) follow the wall clock of an IANA time zone
instead, so a day in Europe/Berlin lasts 23 hours when clocks spring forward and 25 when they fall back.

Every datetime taken must be timezone-aware (naive ones raise ValueError) and is converted to UTC;
every datetime returned is in UTC.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from meterlib.errors import FieldViolation, InvalidArgument
from meterlib.money import MONEY_CONTEXT

_DAY_SECONDS: Final = 86_400
_WEEK_SECONDS: Final = 7 * _DAY_SECONDS
_MICROSECOND: Final = timedelta(microseconds=1)

# The longest cadence accepted; more would be a typo, and bounds keep datetime arithmetic in range.
MAX_CADENCE_YEARS: Final = 100
_MAX_MONTHS: Final = 12 * MAX_CADENCE_YEARS
_MAX_SECONDS: Final = 366 * _DAY_SECONDS * MAX_CADENCE_YEARS

# ASCII digits only; a year-and-month combination such as P1Y6M is one calendar cadence of 18 months.
_CALENDAR_CADENCE: Final = re.compile(r"P(?:(?P<years>[0-9]{1,4})Y)?(?:(?P<months>[0-9]{1,5})M)?")
_FIXED_CADENCE: Final = re.compile(r"P(?:(?P<weeks>[0-9]{1,5})W|(?P<days>[0-9]{1,6})D)")
_HOURS_CADENCE: Final = re.compile(r"PT(?P<hours>[0-9]{1,7})H")


def as_utc(value: datetime, name: str = "datetime") -> datetime:
    """``value`` as a UTC datetime; ValueError if it is naive (its time zone would be a guess)."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class Cadence:
    """A billing cadence or usage period length: a number of calendar months, or a fixed duration.

    Exactly one of ``months`` (P1M, P3M, P1Y = 12 months) and ``seconds`` (P1D, P1W, PT1H) is positive.
    Months and fixed durations never mix: a month is not a whole number of days, so ``P1M1D`` is refused.
    """

    months: int = 0
    seconds: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.months, int) and isinstance(self.seconds, int)):
            raise TypeError("Cadence months and seconds are integers")
        if (self.months > 0) == (self.seconds > 0) or self.months < 0 or self.seconds < 0:
            raise ValueError("a Cadence is a positive number of months or of seconds, not both")
        if self.months > _MAX_MONTHS or self.seconds > _MAX_SECONDS:
            raise ValueError(f"a Cadence is at most {MAX_CADENCE_YEARS} years")

    @classmethod
    def from_iso(cls, text: str, field: str, *, allow_hours: bool = False) -> Cadence:
        """Parse an ISO 8601 duration: PnY, PnM, PnYnM, PnW or PnD (and PTnH with ``allow_hours``).

        Anything else (zero, negative, fractions, PT30M, P1M1D, lower case) raises InvalidArgument
        naming ``field``. Billing cadences are whole days or more; usage periods may allow whole hours.
        """
        if not isinstance(text, str):
            raise TypeError(f"{field}: a duration must be given as a string, not {type(text).__name__}")
        cadence = _parse_cadence(text, allow_hours)
        if isinstance(cadence, str):
            raise InvalidArgument.fields([FieldViolation(field, cadence)])
        return cadence

    def to_iso(self) -> str:
        """The canonical ISO 8601 form: P1Y rather than P12M, P1W rather than P7D, P18M for P1Y6M."""
        if self.months:
            return f"P{self.months // 12}Y" if self.months % 12 == 0 else f"P{self.months}M"
        if self.seconds % _WEEK_SECONDS == 0:
            return f"P{self.seconds // _WEEK_SECONDS}W"
        if self.seconds % _DAY_SECONDS == 0:
            return f"P{self.seconds // _DAY_SECONDS}D"
        return f"PT{self.seconds // 3600}H"

    def __str__(self) -> str:
        return self.to_iso()

    @property
    def is_calendar(self) -> bool:
        """Whether this cadence counts calendar months (and so clamps at month ends)."""
        return self.months > 0

    def is_multiple_of(self, other: Cadence) -> bool:
        """Whether this cadence is a whole number (≥ 1) of ``other`` cadences, back to back.

        The rule for compatible cadences: P3M is 3 * P1M and P1Y is 12 * P1M; P2W is 2 * P1W and P1W is
        7 * P1D. A month-based cadence and a fixed one are never multiples of each other (P1M vs P4W),
        because months vary in length and their periods would drift apart.
        """
        if self.months and other.months:
            return self.months % other.months == 0
        if self.seconds and other.seconds:
            return self.seconds % other.seconds == 0
        return False


def _parse_cadence(text: str, allow_hours: bool) -> Cadence | str:
    """The cadence ``text`` spells, or why it is refused."""
    usage = "must be an ISO 8601 duration such as P1D, P1W, P1M, P3M or P1Y"
    if allow_hours:
        usage += " (or PTnH)"
    if len(text) > 20:
        return usage
    calendar_match = _CALENDAR_CADENCE.fullmatch(text)
    if calendar_match is not None and text != "P":
        months = 12 * int(calendar_match["years"] or 0) + int(calendar_match["months"] or 0)
        return _bounded(months=months)
    fixed_match = _FIXED_CADENCE.fullmatch(text)
    if fixed_match is not None:
        days = 7 * int(fixed_match["weeks"]) if fixed_match["weeks"] else int(fixed_match["days"])
        return _bounded(seconds=days * _DAY_SECONDS)
    hours_match = _HOURS_CADENCE.fullmatch(text)
    if hours_match is not None:
        if not allow_hours:
            return "must be whole days, weeks, months or years (e.g. P1D, P1W, P1M, P1Y), not hours"
        return _bounded(seconds=int(hours_match["hours"]) * 3600)
    return usage


def _bounded(months: int = 0, seconds: int = 0) -> Cadence | str:
    if months == 0 and seconds == 0:
        return "must be a positive duration"
    if months > _MAX_MONTHS or seconds > _MAX_SECONDS:
        return f"must be at most {MAX_CADENCE_YEARS} years"
    return Cadence(months=months, seconds=seconds)


@dataclass(frozen=True)
class Period:
    """A half-open interval of time ``[start, end)`` in UTC (a billing period, a usage window)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        # Normalised to UTC so that equal instants compare and hash alike whatever zone they came in.
        object.__setattr__(self, "start", as_utc(self.start, "start"))
        object.__setattr__(self, "end", as_utc(self.end, "end"))
        if self.end < self.start:
            raise ValueError(f"a period cannot end ({self.end}) before it starts ({self.start})")

    @property
    def duration(self) -> timedelta:
        """How long the period lasts."""
        return self.end - self.start

    def __contains__(self, at: datetime) -> bool:
        return self.start <= as_utc(at, "at") < self.end

    def covers(self, other: Period) -> bool:
        """Whether ``other`` lies entirely within this period."""
        return self.start <= other.start and other.end <= self.end

    def intersect(self, other: Period) -> Period | None:
        """The part of time both periods share, or None if they do not overlap (to clip windows)."""
        start, end = max(self.start, other.start), min(self.end, other.end)
        return Period(start, end) if start < end else None


def _add_months(at: datetime, months: int) -> datetime:
    """``at`` moved by whole calendar months, its day clamped to the end of a shorter month."""
    year, month_index = divmod(at.year * 12 + at.month - 1 + months, 12)
    day = min(at.day, calendar.monthrange(year, month_index + 1)[1])
    return at.replace(year=year, month=month_index + 1, day=day)


def period_start(anchor: datetime, cadence: Cadence, n: int) -> datetime:
    """The start of period ``n``: the anchor advanced by ``n`` cadences (``n`` may be negative)."""
    anchor = as_utc(anchor, "anchor")
    if cadence.months:
        return _add_months(anchor, n * cadence.months)
    return anchor + timedelta(seconds=n * cadence.seconds)


def nth_period(anchor: datetime, cadence: Cadence, n: int) -> Period:
    """Period ``n`` counted from the anchor (period 0 starts at the anchor)."""
    return Period(period_start(anchor, cadence, n), period_start(anchor, cadence, n + 1))


def period_index(anchor: datetime, cadence: Cadence, at: datetime) -> int:
    """The number ``n`` of the period containing ``at``; negative for instants before the anchor."""
    anchor, at = as_utc(anchor, "anchor"), as_utc(at, "at")
    if cadence.seconds:
        return (at - anchor) // timedelta(seconds=cadence.seconds)
    # A first guess from the month numbers, off by at most one period because of day and time of day.
    n = ((at.year - anchor.year) * 12 + at.month - anchor.month) // cadence.months
    while period_start(anchor, cadence, n) > at:
        n -= 1
    while period_start(anchor, cadence, n + 1) <= at:
        n += 1
    return n


def period_containing(anchor: datetime, cadence: Cadence, at: datetime) -> Period:
    """The anchored period ``[start, end)`` that contains ``at``, before or after the anchor."""
    return nth_period(anchor, cadence, period_index(anchor, cadence, at))


def periods_between(anchor: datetime, cadence: Cadence, start: datetime, end: datetime) -> Iterator[Period]:
    """The whole anchored periods that overlap ``[start, end)``, in order; clip them with ``intersect``."""
    start, end = as_utc(start, "start"), as_utc(end, "end")
    if end < start:
        raise ValueError("periods_between needs start <= end")
    n = period_index(anchor, cadence, start)
    while start < end and (period := nth_period(anchor, cadence, n)).start < end:
        yield period
        n += 1


def prorate(full: Period, used: Period) -> Decimal:
    """The fraction of ``full`` that ``used`` lasts, by exact duration (to the microsecond).

    ``used`` must lie within ``full``. The fraction keeps 38 significant digits; multiply the full
    amount by it and round the resulting line, never the fraction.
    """
    if full.duration <= timedelta(0):
        raise ValueError("cannot prorate over an empty period")
    if not full.covers(used):
        raise ValueError(f"the used period {used} is not within {full}")
    return MONEY_CONTEXT.divide(
        Decimal(used.duration // _MICROSECOND), Decimal(full.duration // _MICROSECOND)
    )


class WindowSize(StrEnum):
    """The size of the windows usage is aggregated in, on the wall clock of a time zone."""

    MINUTE = "MINUTE"
    HOUR = "HOUR"
    DAY = "DAY"
    MONTH = "MONTH"


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone called ``name`` (e.g. "Europe/Berlin"); ValueError if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"{name!r} is not an IANA time zone") from None


def parse_time_zone(name: str, field: str) -> ZoneInfo:
    """Validate a wire time zone name (empty means UTC); raise InvalidArgument naming ``field``."""
    try:
        return time_zone(name or "UTC")
    except ValueError:
        raise InvalidArgument.fields(
            [FieldViolation(field, "must be an IANA time zone name such as 'UTC' or 'Europe/Berlin'")]
        ) from None


def _floor_wall(wall: datetime, size: WindowSize) -> datetime:
    """The wall-clock start of the window containing the naive local time ``wall``."""
    if size is WindowSize.MINUTE:
        return wall.replace(second=0, microsecond=0)
    if size is WindowSize.HOUR:
        return wall.replace(minute=0, second=0, microsecond=0)
    midnight = wall.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.replace(day=1) if size is WindowSize.MONTH else midnight


def _next_wall(wall: datetime, size: WindowSize) -> datetime:
    """The wall-clock start of the window after the one starting at ``wall``."""
    if size is WindowSize.MONTH:
        return _add_months(wall, 1)
    step = {WindowSize.MINUTE: timedelta(minutes=1), WindowSize.HOUR: timedelta(hours=1)}
    return wall + step.get(size, timedelta(days=1))


def _local_wall(at: datetime, zone: ZoneInfo) -> datetime:
    return at.astimezone(zone).replace(tzinfo=None)


def _wall_to_utc(wall: datetime, zone: ZoneInfo, fold: int) -> datetime:
    """The instant the zone's clock reads ``wall`` (``fold`` picks the repeat after clocks go back).

    A wall time the clocks jump over (02:30 on a spring-forward night) maps to the jump itself: the
    first instant whose wall time is at or after it.
    """
    utc = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
    if _local_wall(utc, zone) == wall:
        return utc
    # In a gap, fold=1 reads the wall time with the offset after the jump (an instant before it) and
    # fold=0 with the offset before it (an instant after it): the jump lies between.
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    return _first_instant(low, high, lambda t: _local_wall(t, zone) >= wall)


def _first_instant(low: datetime, high: datetime, reached: Callable[[datetime], bool]) -> datetime:
    """The first instant in ``(low, high]`` at which a predicate, false at low and true at high, holds."""
    while high - low > _MICROSECOND:
        middle = low + (high - low) // 2
        if reached(middle):
            high = middle
        else:
            low = middle
    return high


def _window_start(at: datetime, size: WindowSize, zone: ZoneInfo) -> datetime:
    local = at.astimezone(zone)
    # Days and months start the first time the clock shows their midnight; minutes and hours repeated
    # after clocks go back are windows of their own, so they keep the fold of the instant.
    fold = local.fold if size in (WindowSize.MINUTE, WindowSize.HOUR) else 0
    return _wall_to_utc(_floor_wall(local.replace(tzinfo=None), size), zone, fold)


def window_start(at: datetime, size: WindowSize, tz: str = "UTC") -> datetime:
    """The UTC start of the ``size`` window of time zone ``tz`` that contains ``at``."""
    return _window_start(as_utc(at, "at"), WindowSize(size), time_zone(tz))


def _window_end(at: datetime, size: WindowSize, zone: ZoneInfo) -> datetime:
    start = _window_start(at, size, zone)
    wall = _floor_wall(at.astimezone(zone).replace(tzinfo=None), size)

    def after_start(t: datetime) -> bool:
        return _window_start(t, size, zone) > start

    # The next window usually starts at the next wall boundary, or at the same wall time read a second
    # time once clocks went back; any such candidate past ``at`` bounds the end from above.
    candidates = sorted(
        {_wall_to_utc(_next_wall(wall, size), zone, fold) for fold in (0, 1)} | {_wall_to_utc(wall, zone, 1)}
    )
    bound = next((c for c in candidates if c > at and after_start(c)), None)
    probe = timedelta(hours=1)
    while bound is None:  # never seen in tzdata; kept so that no zone can loop or fail here
        if after_start(at + probe):
            bound = at + probe
        probe *= 2
    if _window_start(bound, size, zone) == bound and not after_start(bound - _MICROSECOND):
        return bound
    # Clocks went back by more than a window: search for the first instant of the next window.
    return _first_instant(at, bound, after_start)


def window_end(at: datetime, size: WindowSize, tz: str = "UTC") -> datetime:
    """The UTC end (exclusive) of the ``size`` window of time zone ``tz`` that contains ``at``."""
    return _window_end(as_utc(at, "at"), WindowSize(size), time_zone(tz))


def window_containing(at: datetime, size: WindowSize, tz: str = "UTC") -> Period:
    """The ``size`` window of time zone ``tz`` that contains ``at``, as a UTC period."""
    at, size, zone = as_utc(at, "at"), WindowSize(size), time_zone(tz)
    return Period(_window_start(at, size, zone), _window_end(at, size, zone))


def windows(start: datetime, end: datetime, size: WindowSize, tz: str = "UTC") -> Iterator[Period]:
    """The whole windows that overlap ``[start, end)``, in order; clip them with ``intersect``."""
    start, end, size, zone = as_utc(start, "start"), as_utc(end, "end"), WindowSize(size), time_zone(tz)
    if end < start:
        raise ValueError("windows needs start <= end")
    cursor = _window_start(start, size, zone)
    while start < end and cursor < end:
        following = _window_end(cursor, size, zone)
        yield Period(cursor, following)
        cursor = following
