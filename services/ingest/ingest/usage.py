"""Usage queries as SQL over stored events: values, groups and windows, exact for every aggregation.

Values are read with PostgreSQL's SQL/JSON paths in strict mode (the same singular paths the meter
defines) and aggregated as ``numeric``, so results are exact decimals. Windows are computed in Python
(``meterlib.periods``, correct across DST in any IANA zone) and passed as boundaries; each event falls
in its bucket by ``width_bucket``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ingest.domain import Aggregation, Meter

# SQL functions of the ingest schema (migration 0002) applying the rules of ingest.evaluation.
_NUMERIC = "meter_number({raw})"
_DISTINCT_KEY = "meter_distinct_key({raw})"
_AGGREGATE = {
    Aggregation.COUNT: "count(*)::numeric",
    Aggregation.SUM: "sum(value)",
    Aggregation.AVG: "sum(value)",  # divided by n exactly in Python
    Aggregation.MIN: "min(value)",
    Aggregation.MAX: "max(value)",
    Aggregation.UNIQUE_COUNT: "count(DISTINCT value)::numeric",
    Aggregation.LATEST: "(array_agg(value ORDER BY time DESC, seq DESC))[1]",
}


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


@dataclass
class UsageQuery:
    """One QueryUsage, resolved: range, window boundaries, grouping and filters."""

    namespace: str
    meter: Meter
    boundaries: list[datetime]
    subjects: list[str] = field(default_factory=list)
    group_by: list[str] = field(default_factory=list)
    group_filters: dict[str, list[str]] = field(default_factory=dict)

    def sql(self) -> tuple[str, list[Any]]:
        """The statement and its parameters; rows are (bucket, [subject], [group values...], value, n)."""
        params = SqlParams()
        meter = self.meter
        ns, event_type = params.add(self.namespace), params.add(meter.event_type)
        start, end = params.add(self.boundaries[0]), params.add(self.boundaries[-1])
        columns = ["e.subject", "e.time", "e.seq"]
        valid = []
        path = meter.value_path
        if path is None:
            columns.append("1::numeric AS value")
        else:
            template = _DISTINCT_KEY if meter.aggregation is Aggregation.UNIQUE_COUNT else _NUMERIC
            columns.append(f"{template.format(raw=_raw(params, 'strict ' + path.postgres))} AS value")
            valid.append("value IS NOT NULL")
        dimensions = sorted(meter.group_by)
        for i, name in enumerate(dimensions):
            raw = _raw(params, "strict " + meter.group_paths[name].postgres)
            columns.append(f"{_group_value(raw)} AS g{i}")
            valid.append(f"g{i} IS NOT NULL")
        where = [f"e.namespace = {ns}", f"e.type = {event_type}", f"e.time >= {start}", f"e.time < {end}"]
        if meter.archive_time is not None:
            # An archived meter keeps what it counted and counts nothing ingested afterwards.
            where.append(f"e.ingest_time <= {params.add(meter.archive_time)}")
        if self.subjects:
            where.append(f"e.subject = ANY({params.add(self.subjects)}::text[])")
        for name, allowed in sorted(self.group_filters.items()):
            valid.append(f"g{dimensions.index(name)} = ANY({params.add(allowed)}::text[])")
        keys = ["bucket"]
        if "subject" in self.group_by:
            keys.append("subject")
        keys += [f"g{dimensions.index(name)}" for name in self.group_by if name != "subject"]
        bounds = params.add(self.boundaries)
        sql = f"""
            WITH ev AS (
                SELECT {", ".join(columns)} FROM events e WHERE {" AND ".join(where)}
            )
            SELECT width_bucket(time, {bounds}::timestamptz[]) AS bucket, {", ".join([*keys[1:], ""])}
                   {_AGGREGATE[meter.aggregation]} AS value, count(*) AS n
            FROM ev
            WHERE {" AND ".join(valid) or "true"}
            GROUP BY {", ".join(keys)}
            ORDER BY {", ".join(keys)}
        """
        return sql, params.values
