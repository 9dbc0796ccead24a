"""Calendar arithmetic: cadences, anchored billing periods with month-end clamping, windows, proration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterlib.errors import InvalidArgument
from meterlib.money import MONEY_CONTEXT, Money
from meterlib.periods import (
    Cadence,
    Period,
    WindowSize,
    nth_period,
    parse_time_zone,
    period_containing,
    period_index,
    period_start,
    periods_between,
    prorate,
    window_containing,
    window_end,
    window_start,
    windows,
)

US = timedelta(microseconds=1)

# Property tests run without hypothesis' per-example deadline: timing belongs in `make bench`, not tests.


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


# --- the worked examples of SEMANTICS.md (subscriptions and proration) ---------------------------------


def test_flat_9_in_arrears_quarterly_cancelled_after_one_month_bills_31_of_91_days() -> None:
    anchor, cancelled = utc(2024, 1, 1), utc(2024, 2, 1)
    quarter = period_containing(anchor, Cadence.from_iso("P3M", "cadence"), cancelled)
    assert quarter == Period(utc(2024, 1, 1), utc(2024, 4, 1))
    assert quarter.duration == timedelta(days=91)  # 31 + 29 (leap year) + 31
    fraction = prorate(quarter, Period(quarter.start, cancelled))
    assert fraction == MONEY_CONTEXT.divide(Decimal(31), Decimal(91))
    assert Money(Decimal(9), "USD").times(fraction).rounded() == Money(Decimal("3.07"), "USD")


def test_flat_20_in_advance_monthly_started_mid_month_bills_the_remaining_fraction() -> None:
    anchor, started = utc(2024, 1, 1), utc(2024, 1, 21, 21, 55, 18)
    month = period_containing(anchor, Cadence.from_iso("P1M", "cadence"), started)
    assert month == Period(utc(2024, 1, 1), utc(2024, 2, 1))
    remaining = month.end - started
    assert remaining == timedelta(days=10, hours=2, minutes=4, seconds=42)  # 871 482 s of 2 678 400 s
    fraction = prorate(month, Period(started, month.end))
    assert fraction == MONEY_CONTEXT.divide(Decimal(871_482), Decimal(31 * 86_400))
    amount = Money(Decimal(20), "USD").times(fraction)
    assert Decimal("6.5074") < amount.amount < Decimal("6.5075")  # 6.50748..., so rounds up
    assert amount.rounded() == Money(Decimal("6.51"), "USD")


# --- cadences -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "months", "days", "canonical"),
    [
        ("P1D", 0, 1, "P1D"), ("P1W", 0, 7, "P1W"), ("P2W", 0, 14, "P2W"), ("P4W", 0, 28, "P4W"),
        ("P7D", 0, 7, "P1W"), ("P10D", 0, 10, "P10D"), ("P1M", 1, 0, "P1M"), ("P3M", 3, 0, "P3M"),
        ("P6M", 6, 0, "P6M"), ("P1Y", 12, 0, "P1Y"), ("P12M", 12, 0, "P1Y"), ("P1Y6M", 18, 0, "P18M"),
    ],
)  # fmt: skip
def test_cadences_parse_and_print_canonically(text: str, months: int, days: int, canonical: str) -> None:
    cadence = Cadence.from_iso(text, "cadence")
    assert (cadence.months, cadence.seconds) == (months, days * 86_400)
    assert cadence.to_iso() == canonical
    assert Cadence.from_iso(canonical, "cadence") == cadence


@pytest.mark.parametrize(
    "text",
    [
        "PT1H", "P0D", "P0M", "P0Y", "P0Y0M", "-P1M", "P-1M", "P1.5M", "P0,5Y", "P", "PT", "1M", "p1m",
        "P1m", "P1M1D", "P1W1D", "P1Y1W", "PT30M", "P1DT1H", "P1Y2M3D", " P1M", "P1M ", "P101Y",
        "P1300M", "P99999999999D", "P\uff11M", "",
    ],
)  # fmt: skip
def test_other_durations_are_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        Cadence.from_iso(text, "rate_cards[1].billing_cadence")
    assert [v.field for v in raised.value.violations] == ["rate_cards[1].billing_cadence"]


def test_whole_hours_only_where_allowed() -> None:
    assert Cadence.from_iso("PT1H", "usage_period.interval", allow_hours=True) == Cadence(seconds=3600)
    assert Cadence.from_iso("PT36H", "interval", allow_hours=True).to_iso() == "PT36H"
    assert Cadence.from_iso("PT24H", "interval", allow_hours=True) == Cadence.from_iso("P1D", "interval")
    for text in ("PT0H", "PT30M", "PT1.5H"):
        with pytest.raises(InvalidArgument):
            Cadence.from_iso(text, "interval", allow_hours=True)


def test_cadence_construction_is_validated() -> None:
    for months, seconds in ((0, 0), (1, 86_400), (-1, 0), (0, -5), (1201, 0)):
        with pytest.raises(ValueError):
            Cadence(months=months, seconds=seconds)


@pytest.mark.parametrize(
    ("longer", "shorter", "compatible"),
    [
        ("P3M", "P1M", True), ("P1Y", "P1M", True), ("P1Y", "P3M", True), ("P1Y", "P6M", True),
        ("P1M", "P1M", True), ("P2W", "P1W", True), ("P1W", "P1D", True), ("P4W", "P2W", True),
        ("P1M", "P3M", False), ("P1M", "P1W", False), ("P4W", "P1M", False), ("P1M", "P1D", False),
        ("P1Y", "P5M", False), ("P3W", "P2W", False), ("P1W", "P1M", False),
    ],
)  # fmt: skip
def test_a_cadence_is_a_multiple_of_another_only_in_whole_steps_of_the_same_kind(
    longer: str, shorter: str, compatible: bool
) -> None:
    assert Cadence.from_iso(longer, "a").is_multiple_of(Cadence.from_iso(shorter, "b")) is compatible


# --- anchored periods -----------------------------------------------------------------------------


MONTHLY = Cadence(months=1)


def test_month_end_clamping_from_jan_31_returns_to_the_31st_in_a_leap_year() -> None:
    anchor = utc(2024, 1, 31, 10, 30)
    days = [period_start(anchor, MONTHLY, n).date().isoformat() for n in range(14)]
    assert days == [
        "2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31", "2024-06-30", "2024-07-31",
        "2024-08-31", "2024-09-30", "2024-10-31", "2024-11-30", "2024-12-31", "2025-01-31", "2025-02-28",
    ]  # fmt: skip
    assert all(period_start(anchor, MONTHLY, n).time().isoformat() == "10:30:00" for n in range(14))


def test_month_end_clamping_in_a_non_leap_year_and_backwards() -> None:
    anchor = utc(2023, 1, 31)
    assert period_start(anchor, MONTHLY, 1) == utc(2023, 2, 28)
    assert period_start(anchor, MONTHLY, 2) == utc(2023, 3, 31)  # not Mar 28: counted from the anchor
    assert period_start(anchor, MONTHLY, -1) == utc(2022, 12, 31)
    assert period_start(anchor, MONTHLY, -11) == utc(2022, 2, 28)
    assert period_start(anchor, Cadence(months=3), 1) == utc(2023, 4, 30)


def test_a_leap_day_anchor_clamps_in_other_years() -> None:
    yearly = Cadence(months=12)
    assert [period_start(utc(2024, 2, 29), yearly, n).date().isoformat() for n in (-1, 1, 4)] == [
        "2023-02-28", "2025-02-28", "2028-02-29",
    ]  # fmt: skip


def test_period_containing_an_instant_before_the_anchor() -> None:
    anchor = utc(2024, 3, 31)
    assert period_containing(anchor, MONTHLY, utc(2024, 2, 15)) == Period(utc(2024, 1, 31), utc(2024, 2, 29))
    assert period_containing(anchor, MONTHLY, utc(2024, 3, 1)) == Period(utc(2024, 2, 29), utc(2024, 3, 31))
    assert period_index(anchor, MONTHLY, utc(2024, 3, 30, 23, 59)) == -1
    assert period_index(anchor, MONTHLY, anchor) == 0
    weekly = Cadence.from_iso("P1W", "cadence")
    assert period_containing(anchor, weekly, utc(2024, 3, 24)) == Period(utc(2024, 3, 24), utc(2024, 3, 31))


def test_periods_between_yields_whole_overlapping_periods() -> None:
    anchor = utc(2024, 1, 15)
    got = list(periods_between(anchor, MONTHLY, utc(2024, 2, 1), utc(2024, 4, 15)))
    assert got == [
        Period(utc(2024, 1, 15), utc(2024, 2, 15)),
        Period(utc(2024, 2, 15), utc(2024, 3, 15)),
        Period(utc(2024, 3, 15), utc(2024, 4, 15)),
    ]
    assert list(periods_between(anchor, MONTHLY, utc(2024, 2, 1), utc(2024, 2, 1))) == []
    assert got[0].intersect(Period(utc(2024, 2, 1), utc(2024, 4, 15))) == Period(
        utc(2024, 2, 1), utc(2024, 2, 15)
    )


def test_naive_datetimes_are_refused_and_other_zones_converted() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        period_start(datetime(2024, 1, 1), MONTHLY, 1)
    with pytest.raises(ValueError):
        Period(datetime(2024, 1, 1), utc(2024, 2, 1))
    with pytest.raises(ValueError):
        window_start(datetime(2024, 1, 1), WindowSize.DAY, "UTC")
    # Month arithmetic happens on the UTC calendar: 2024-01-31T23:00-02:00 is Feb 1 01:00 in UTC.
    assert period_start(datetime(2024, 1, 31, 23, tzinfo=timezone(timedelta(hours=-2))), MONTHLY, 1) == utc(
        2024, 3, 1, 1
    )


def test_prorate_by_exact_duration() -> None:
    full = Period(utc(2024, 1, 1), utc(2024, 1, 2))
    assert prorate(full, full) == 1
    assert prorate(full, Period(utc(2024, 1, 1, 6), utc(2024, 1, 1, 12))) == Decimal("0.25")
    assert prorate(full, Period(utc(2024, 1, 1, 6), utc(2024, 1, 1, 6))) == 0
    with pytest.raises(ValueError):
        prorate(full, Period(utc(2023, 12, 31), utc(2024, 1, 1, 1)))
    with pytest.raises(ValueError):
        prorate(Period(utc(2024, 1, 1), utc(2024, 1, 1)), Period(utc(2024, 1, 1), utc(2024, 1, 1)))
    with pytest.raises(ValueError):
        Period(utc(2024, 1, 2), utc(2024, 1, 1))


instants = st.datetimes(
    min_value=datetime(1975, 1, 1), max_value=datetime(2065, 1, 1), timezones=st.just(UTC)
)
cadences = st.one_of(
    st.integers(1, 36).map(lambda m: Cadence(months=m)),
    st.integers(1, 400).map(lambda d: Cadence(seconds=d * 86_400)),
    st.integers(6, 72).map(lambda h: Cadence(seconds=h * 3600)),
)


@settings(deadline=None)
@given(instants, cadences, instants)
def test_every_instant_lies_in_the_period_containing_it_and_its_neighbours_adjoin(
    anchor: datetime, cadence: Cadence, at: datetime
) -> None:
    period = period_containing(anchor, cadence, at)
    assert at in period
    assert period.start < period.end
    assert period == nth_period(anchor, cadence, period_index(anchor, cadence, at))
    assert period_containing(anchor, cadence, period.end).start == period.end
    assert period_containing(anchor, cadence, period.start - US).end == period.start


@settings(deadline=None)
@given(instants, cadences, st.integers(-300, 300))
def test_consecutive_periods_tile_time_and_clamp_to_month_ends(
    anchor: datetime, cadence: Cadence, n: int
) -> None:
    this, following = nth_period(anchor, cadence, n), nth_period(anchor, cadence, n + 1)
    assert this.end == following.start and this.start < this.end
    if cadence.months:
        start = this.start
        next_month = start.replace(day=28) + timedelta(days=4)
        last_day = (next_month - timedelta(days=next_month.day)).day
        assert start.day == min(anchor.day, last_day)
        assert start.time() == anchor.time()


@settings(deadline=None)
@given(instants, cadences, instants, st.integers(0, 120 * 86_400))
def test_periods_between_cover_the_range_without_gap_or_overlap(
    anchor: datetime, cadence: Cadence, start: datetime, span_seconds: int
) -> None:
    end = start + timedelta(seconds=span_seconds)
    got = list(periods_between(anchor, cadence, start, end))
    if start == end:
        assert got == []
        return
    assert got[0].start <= start < got[0].end
    assert got[-1].start < end <= got[-1].end
    assert all(a.end == b.start for a, b in pairwise(got))


# --- usage windows in time zones ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "day", "start", "end", "hours"),
    [
        ("Europe/Berlin", utc(2024, 3, 31, 12), utc(2024, 3, 30, 23), utc(2024, 3, 31, 22), 23),
        ("Europe/Berlin", utc(2024, 10, 27, 12), utc(2024, 10, 26, 22), utc(2024, 10, 27, 23), 25),
        ("America/New_York", utc(2024, 3, 10, 12), utc(2024, 3, 10, 5), utc(2024, 3, 11, 4), 23),
        ("America/New_York", utc(2024, 11, 3, 12), utc(2024, 11, 3, 4), utc(2024, 11, 4, 5), 25),
        ("Europe/Berlin", utc(2024, 7, 1, 12), utc(2024, 6, 30, 22), utc(2024, 7, 1, 22), 24),
    ],
)
def test_day_windows_last_23_or_25_hours_across_dst(
    tz: str, day: datetime, start: datetime, end: datetime, hours: int
) -> None:
    window = window_containing(day, WindowSize.DAY, tz)
    assert window == Period(start, end)
    assert window.duration == timedelta(hours=hours)
    assert (window_start(day, WindowSize.DAY, tz), window_end(day, WindowSize.DAY, tz)) == (start, end)
    local = window.start.astimezone(ZoneInfo(tz))
    assert (local.hour, local.minute) == (0, 0)


def test_hour_windows_repeat_the_local_hour_when_clocks_fall_back() -> None:
    got = list(windows(utc(2024, 10, 27, 0), utc(2024, 10, 27, 2), WindowSize.HOUR, "Europe/Berlin"))
    assert got == [
        Period(utc(2024, 10, 27, 0), utc(2024, 10, 27, 1)),
        Period(utc(2024, 10, 27, 1), utc(2024, 10, 27, 2)),
    ]
    assert {w.start.astimezone(ZoneInfo("Europe/Berlin")).hour for w in got} == {2}


def test_hour_windows_in_kolkata_start_at_half_past_in_utc() -> None:
    assert window_start(utc(2024, 5, 1, 10, 10), WindowSize.HOUR, "Asia/Kolkata") == utc(2024, 5, 1, 9, 30)
    assert window_end(utc(2024, 5, 1, 10, 10), WindowSize.HOUR, "Asia/Kolkata") == utc(2024, 5, 1, 10, 30)
    got = list(windows(utc(2024, 5, 1), utc(2024, 5, 2), WindowSize.HOUR, "Asia/Kolkata"))
    assert len(got) == 25  # the partial first and last hour around the range
    assert all(w.start.minute == 30 and w.duration == timedelta(hours=1) for w in got)
    assert {
        w.start.minute for w in windows(utc(2024, 5, 1), utc(2024, 5, 2), WindowSize.HOUR, "Asia/Kathmandu")
    } == {15}


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney"])
def test_month_windows_start_at_local_midnight_of_the_first(tz: str) -> None:
    got = list(windows(utc(2024, 1, 15), utc(2025, 1, 15), WindowSize.MONTH, tz))
    assert len(got) == 13
    for window in got:
        local = window.start.astimezone(ZoneInfo(tz))
        assert (local.day, local.hour, local.minute) == (1, 0, 0)
    assert (
        got[1].start
        == {
            "Europe/Berlin": utc(2024, 1, 31, 23),
            "America/New_York": utc(2024, 2, 1, 5),
            "Asia/Kolkata": utc(2024, 1, 31, 18, 30),
            "Australia/Sydney": utc(2024, 1, 31, 13),
        }[tz]
    )


def test_minute_windows_and_the_utc_default() -> None:
    at = utc(2024, 5, 1, 10, 10, 42, 5)
    assert window_containing(at, WindowSize.MINUTE) == Period(
        utc(2024, 5, 1, 10, 10), utc(2024, 5, 1, 10, 11)
    )
    assert window_containing(at, WindowSize.MONTH) == Period(utc(2024, 5, 1), utc(2024, 6, 1))
    assert len(list(windows(utc(2024, 5, 1), utc(2024, 5, 1, 1), WindowSize.MINUTE, "Asia/Kathmandu"))) == 60


def test_a_day_skipped_by_the_calendar_has_no_window() -> None:
    # Samoa moved across the date line: 2011-12-30 never happened in Pacific/Apia.
    got = list(windows(utc(2011, 12, 29, 12), utc(2011, 12, 31, 12), WindowSize.DAY, "Pacific/Apia"))
    local_days = [w.start.astimezone(ZoneInfo("Pacific/Apia")).date().isoformat() for w in got]
    assert local_days == ["2011-12-29", "2011-12-31", "2012-01-01"]
    assert got[0].end == got[1].start


def test_unknown_time_zones() -> None:
    with pytest.raises(ValueError):
        window_start(utc(2024, 1, 1), WindowSize.DAY, "Mars/Olympus_Mons")
    with pytest.raises(ValueError):
        window_start(utc(2024, 1, 1), WindowSize.DAY, "../../etc/passwd")
    assert parse_time_zone("", "time_zone") == ZoneInfo("UTC")
    with pytest.raises(InvalidArgument) as raised:
        parse_time_zone("Europe/Nowhere", "time_zone")
    assert [v.field for v in raised.value.violations] == ["time_zone"]


ZONES = [
    "UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe",
    "America/Sao_Paulo", "Pacific/Apia", "Pacific/Chatham", "America/St_Johns", "Africa/Casablanca",
    "Africa/Monrovia", "Europe/London", "Asia/Tehran",
]  # fmt: skip
window_instants = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(window_instants, st.sampled_from(list(WindowSize)), st.sampled_from(ZONES))
def test_every_instant_lies_in_one_window_and_windows_adjoin(at: datetime, size: WindowSize, tz: str) -> None:
    start, end = window_start(at, size, tz), window_end(at, size, tz)
    assert start <= at < end
    assert window_start(end, size, tz) == end  # the next window begins where this one ends
    assert window_end(start - US, size, tz) == start  # and the previous one ends where this one begins
    assert end - start <= {"MINUTE": timedelta(minutes=2), "HOUR": timedelta(hours=2)}.get(
        size, timedelta(days=33)
    )


spans = {
    WindowSize.MINUTE: timedelta(hours=3),
    WindowSize.HOUR: timedelta(days=5),
    WindowSize.DAY: timedelta(days=150),
    WindowSize.MONTH: timedelta(days=1500),
}


@settings(deadline=None)
@given(window_instants, st.floats(0, 1), st.sampled_from(list(WindowSize)), st.sampled_from(ZONES))
def test_windows_cover_the_range_without_gap_or_overlap(
    at: datetime, share: float, size: WindowSize, tz: str
) -> None:
    end = at + spans[size] * share
    got = list(windows(at, end, size, tz))
    if at == end:
        assert got == []
        return
    assert got[0].start <= at < got[0].end
    assert got[-1].start < end <= got[-1].end
    assert all(a.end == b.start and a.start < a.end for a, b in pairwise(got))
    assert all(window_containing(w.start, size, tz) == w for w in got[:50])
