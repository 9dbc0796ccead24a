"""Usage queries as SQL over roll-ups and stored events: exact for every aggregation.

Values are read with PostgreSQL's SQL/JSON paths in strict mode (the same singular paths the meter
defines) and aggregated as ``numeric``, so results are exact decimals. Windows are computed in Python
(``meterlib.periods``, correct across DST in any IANA zone) and passed as boundaries; each event or
minute falls in its bucket by ``width_bucket``.

A meter whose aggregation adds up (COUNT, SUM, AVG, MIN, MAX) is read from its per-minute roll-ups
where they are complete: whole minutes under the roll-up watermark come from ``usage_minutes``; the
minutes a window edge cuts, and the events of transactions at or above the watermark, come from the
events table. Both sides produce partial aggregates (n, total, low, high) that combine exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ingest.domain import Aggregation, Meter

# SQL functions of the ingest schema (migration 0002) applying the rules of ingest.evaluation.
_NUMERIC = "meter_number({raw})"
_DISTINCT_KEY = "meter_distinct_key({raw})"
# Aggregations that do not add up, computed over the events in one pass.
_DIRECT = {
    Aggregation.UNIQUE_COUNT: "count(DISTINCT value)::numeric",
    Aggregation.LATEST: "(array_agg(value ORDER BY time DESC, seq DESC))[1]",
}
# Aggregations that add up, from partial aggregates (n, total, low, high) of minutes or events.
_COMBINED = {
    Aggregation.COUNT: "sum(n)::numeric",
    Aggregation.SUM: "sum(total)",
    Aggregation.AVG: "sum(total)",  # divided by n exactly in Python
    Aggregation.MIN: "min(low)",
    Aggregation.MAX: "max(high)",
}
_MINUTE = timedelta(minutes=1)


class SqlParams:
    """Numbered query parameters ($1, $2, ...), added as the SQL is written."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _raw(params: SqlParams, path_text: str) -> str:
    return f"jsonb_path_query_first(e.data, {params.add(path_text)}::jsonpath, '{{}}', true)"


def _group_value(raw: str) -> str:
    return f"meter_group_value({raw})"


def counts_condition(meter: Meter, params: SqlParams) -> str:
    """SQL true when ``meter`` can count event ``e`` (its value and group values are usable)."""
    parts = []
    path = meter.value_path
    if path is not None:
        template = _DISTINCT_KEY if meter.aggregation is Aggregation.UNIQUE_COUNT else _NUMERIC
        parts.append(f"({template.format(raw=_raw(params, 'strict ' + path.postgres))}) IS NOT NULL")
    for group_path in meter.group_paths.values():
        parts.append(f"({_group_value(_raw(params, 'strict ' + group_path.postgres))}) IS NOT NULL")
    return " AND ".join(parts) or "true"


def event_columns(meter: Meter, params: SqlParams) -> tuple[list[str], list[str]]:
    """The columns ``value`` and ``g0``, ``g1``... (group-bys in name order) that ``meter`` reads from
    event ``e``, and the conditions (over those columns) under which it counts the event."""
    columns, countable = [], []
    path = meter.value_path
    if path is None:
        columns.append("1::numeric AS value")
    else:
        template = _DISTINCT_KEY if meter.aggregation is Aggregation.UNIQUE_COUNT else _NUMERIC
        columns.append(f"{template.format(raw=_raw(params, 'strict ' + path.postgres))} AS value")
        countable.append("value IS NOT NULL")
    for i, name in enumerate(sorted(meter.group_by)):
        raw = _raw(params, "strict " + meter.group_paths[name].postgres)
        columns.append(f"{_group_value(raw)} AS g{i}")
        countable.append(f"g{i} IS NOT NULL")
    return columns, countable


def _floor_minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def _ceil_minute(at: datetime) -> datetime:
    floor = _floor_minute(at)
    return floor if floor == at else floor + _MINUTE


@dataclass(frozen=True)
class Rollup:
    """The roll-ups a query may read, as seen in its snapshot: the meter's generation whose minutes
    are complete, and the watermark (a transaction id) under which events are in them."""

    generation: int
    watermark: int


@dataclass
class UsageQuery:
    """One QueryUsage, resolved: range, window boundaries, grouping and filters."""

    namespace: str
    meter: Meter
    boundaries: list[datetime]
    subjects: list[str] = field(default_factory=list)
    group_by: list[str] = field(default_factory=list)
    group_filters: dict[str, list[str]] = field(default_factory=dict)

    def whole_minutes(self) -> tuple[datetime, datetime] | None:
        """The span of whole UTC minutes that roll-ups can serve, or None when there is none: a
        window boundary inside it that is not on a minute (a zone with an offset in seconds) would
        cut a minute, so then every event is read."""
        first, last = _ceil_minute(self.boundaries[0]), _floor_minute(self.boundaries[-1])
        if last <= first:
            return None
        if any(b != _floor_minute(b) for b in self.boundaries if first < b < last):
            return None
        return first, last

    def sql(self, rollup: Rollup | None = None) -> tuple[str, list[Any]]:
        """The statement and its parameters; rows are (bucket, [subject], [group values...], value, n).

        With ``rollup`` (only for a meter whose aggregation adds up), whole minutes under its
        watermark are read from the roll-ups.
        """
        params = SqlParams()
        meter = self.meter
        dimensions = sorted(meter.group_by)
        columns, countable = event_columns(meter, params)
        ns, event_type = params.add(self.namespace), params.add(meter.event_type)
        where = [f"e.namespace = {ns}", f"e.type = {event_type}"]
        if meter.archive_time is not None:
            # An archived meter keeps what it counted and counts nothing ingested afterwards.
            where.append(f"e.ingest_time <= {params.add(meter.archive_time)}")
        subjects = params.add(self.subjects) if self.subjects else None
        if subjects:
            where.append(f"e.subject = ANY({subjects}::text[])")
        filters = {name: params.add(allowed) for name, allowed in sorted(self.group_filters.items())}
        countable += [f"g{dimensions.index(name)} = ANY({p}::text[])" for name, p in filters.items()]
        keys = ["bucket"]
        if "subject" in self.group_by:
            keys.append("subject")
        keys += [f"g{dimensions.index(name)}" for name in self.group_by if name != "subject"]
        bounds = params.add(self.boundaries)
        start, end = self.boundaries[0], self.boundaries[-1]
        select = (
            f"SELECT e.subject, e.time, e.seq, {', '.join(columns)} FROM events e WHERE {' AND '.join(where)}"
        )
        minutes = self.whole_minutes() if rollup is not None else None

        def in_range(low: datetime, high: datetime) -> str:
            return f"{select} AND e.time >= {params.add(low)} AND e.time < {params.add(high)}"

        if meter.aggregation in _DIRECT:
            assert rollup is None, "only aggregations that add up have roll-ups"
            return self._direct(in_range(start, end), bounds, keys, countable), params.values
        if rollup is None or minutes is None:
            events = [in_range(start, end)]
        else:
            # Edge minutes and the events not yet rolled up; the rest is in usage_minutes.
            first, last = minutes
            events = [in_range(low, high) for low, high in ((start, first), (last, end)) if low < high]
            events.append(f"{in_range(first, last)} AND e.txid >= {params.add(rollup.watermark)}::xid8")
        parts = [
            f"""
            SELECT width_bucket(time, {bounds}::timestamptz[]) AS bucket, {", ".join([*keys[1:], ""])}
                   count(*) AS n, sum(value) AS total, min(value) AS low, max(value) AS high
            FROM ({" UNION ALL ".join(events)}) ev
            WHERE {" AND ".join(countable) or "true"}
            GROUP BY {", ".join(keys)}
            """
        ]
        if rollup is not None and minutes is not None:
            parts.append(self._minutes_sql(params, ns, rollup, minutes, bounds, keys, subjects, filters))
        combined = _COMBINED[meter.aggregation]
        sql = f"""
            SELECT {", ".join(keys)}, {combined} AS value, sum(n)::bigint AS n
            FROM ({" UNION ALL ".join(parts)}) parts
            GROUP BY {", ".join(keys)}
            ORDER BY {", ".join(keys)}
        """
        return sql, params.values

    def _direct(self, events: str, bounds: str, keys: list[str], countable: list[str]) -> str:
        return f"""
            WITH ev AS ({events})
            SELECT width_bucket(time, {bounds}::timestamptz[]) AS bucket, {", ".join([*keys[1:], ""])}
                   {_DIRECT[self.meter.aggregation]} AS value, count(*) AS n
            FROM ev
            WHERE {" AND ".join(countable) or "true"}
            GROUP BY {", ".join(keys)}
            ORDER BY {", ".join(keys)}
        """

    def _minutes_sql(
        self,
        params: SqlParams,
        ns: str,
        rollup: Rollup,
        minutes: tuple[datetime, datetime],
        bounds: str,
        keys: list[str],
        subjects: str | None,
        filters: dict[str, str],
    ) -> str:
        """Partial aggregates of the whole minutes, under the same keys as the events'."""
        dimensions = sorted(self.meter.group_by)

        def group_value(name: str) -> str:
            return f"(u.group_values ->> {params.add(name)})"

        columns = [f"width_bucket(u.minute, {bounds}::timestamptz[]) AS bucket"]
        for key in keys[1:]:
            columns.append(
                "u.subject" if key == "subject" else f"{group_value(dimensions[int(key[1:])])} AS {key}"
            )
        where = [
            f"u.namespace = {ns}",
            f"u.meter = {params.add(self.meter.key)}",
            f"u.generation = {params.add(rollup.generation)}",
            f"u.minute >= {params.add(minutes[0])}",
            f"u.minute < {params.add(minutes[1])}",
        ]
        if subjects:
            where.append(f"u.subject = ANY({subjects}::text[])")
        where += [f"{group_value(name)} = ANY({p}::text[])" for name, p in filters.items()]
        return f"""
            SELECT {", ".join(columns)}, u.n, u.total, u.low, u.high
            FROM usage_minutes u
            WHERE {" AND ".join(where)}
        """


def rollup_insert_sql(
    namespace: str, meter: Meter, generation: int, low: int, high: int
) -> tuple[str, list[Any]]:
    """Add to ``meter``'s roll-ups of ``generation`` the events of transactions in ``[low, high)``
    (transaction ids) that it counts, minute by minute."""
    params = SqlParams()
    columns, countable = event_columns(meter, params)
    dimensions = sorted(meter.group_by)
    ns = params.add(namespace)
    group_values = ", ".join(f"{params.add(name)}::text, g{i}" for i, name in enumerate(dimensions))
    group_columns = "".join(f", g{i}" for i in range(len(dimensions)))
    sql = f"""
        INSERT INTO usage_minutes AS u (namespace, meter, generation, subject, group_values, minute, n, total, low, high)
        SELECT {ns}, {params.add(meter.key)}, {params.add(generation)}, subject, jsonb_build_object({group_values}),
               minute, count(*), sum(value), min(value), max(value)
        FROM (
            SELECT e.subject, date_trunc('minute', e.time, 'UTC') AS minute, {", ".join(columns)}
            FROM events e
            WHERE e.namespace = {ns} AND e.type = {params.add(meter.event_type)}
              AND e.txid >= {params.add(low)}::xid8 AND e.txid < {params.add(high)}::xid8
        ) ev
        WHERE {" AND ".join(countable) or "true"}
        GROUP BY subject, minute{group_columns}
        ON CONFLICT (namespace, meter, generation, subject, minute, group_values) DO UPDATE
            SET n = u.n + excluded.n, total = u.total + excluded.total,
                low = least(u.low, excluded.low), high = greatest(u.high, excluded.high)
    """
    return sql, params.values
