"""The port to usage: ingest's QueryUsage, for the charges of many customers at once.

An invoice run needs, for every usage charge, the usage of one customer's subject keys on one meter (with
the feature's group filters) over one service period, grouped by a matrix price's dimensions. Asking
ingest once per charge would make a run of 10,000 customers 30,000 round trips; instead the queries that
differ only in their subjects are answered together: one QueryUsage over all their subjects, grouped by
``subject`` as well, whose rows are then combined per customer.

Combining a customer's subjects is exact for SUM and COUNT (add), MIN and MAX (the extreme); for the
other aggregations (AVG, UNIQUE_COUNT, LATEST) a customer with several subjects is asked on its own,
ungrouped by subject, so ingest aggregates its events together.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from billing.invoicing.usage import GroupValues
from billing.plans import MeterRef
from metering.common.v1 import common_pb2
from metering.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from meterlib.errors import FailedPrecondition
from meterlib.money import money_context
from meterlib.remote import RemoteService
from meterlib.wire import to_timestamp

SUBJECTS_PER_QUERY = 1_000
"""Subjects per QueryUsage request: keeps each request far below the message size limit."""
ROWS_PER_PAGE = 10_000
"""QueryUsage's largest page."""


@dataclass(frozen=True)
class UsageQuery:
    """The usage one charge needs: a meter with filters, a customer's subjects, a range, a grouping."""

    meter: MeterRef
    subjects: tuple[str, ...]
    start: datetime
    end: datetime
    group_by: tuple[str, ...] = ()


UsageRows = dict[GroupValues, Decimal]
"""A query's answer: the value per combination of group values (one key, ``()``, when ungrouped)."""


class UsageReader(Protocol):
    """Where usage is read from."""

    async def read(self, namespace: str, queries: Sequence[UsageQuery]) -> list[UsageRows]:
        """Each query's rows, in order. Unavailable when ingest cannot answer; FailedPrecondition when a
        meter is unknown to ingest."""
        ...


_Combine = Callable[[Decimal, Decimal], Decimal]


def _add(a: Decimal, b: Decimal) -> Decimal:
    with money_context():
        return a + b


_COMBINERS: Mapping[int, _Combine] = {
    ingest_pb2.AGGREGATION_SUM: _add,
    ingest_pb2.AGGREGATION_COUNT: _add,
    ingest_pb2.AGGREGATION_MIN: min,
    ingest_pb2.AGGREGATION_MAX: max,
}


def _batch_key(query: UsageQuery) -> tuple[object, ...]:
    return (query.meter.meter_key, query.meter.group_filters, query.start, query.end, query.group_by)


class IngestUsageReader:
    """UsageReader over gRPC: ingest's QueryUsage, batched over subjects."""

    def __init__(self, address: str, *, deadline_seconds: float, attempts: int) -> None:
        # Lazily connected: billing starts, and serves what needs no usage, while ingest is down.
        self._ingest = RemoteService("ingest", address, deadline_seconds=deadline_seconds, attempts=attempts)
        self._stub = ingest_pb2_grpc.IngestServiceStub(self._ingest.channel)

    async def close(self) -> None:
        """Close the channel."""
        await self._ingest.close()

    async def read(self, namespace: str, queries: Sequence[UsageQuery]) -> list[UsageRows]:
        """Each query's rows; queries differing only in their subjects share QueryUsage calls."""
        answers: list[UsageRows] = [{} for _ in queries]
        batches: dict[tuple[object, ...], list[int]] = defaultdict(list)
        for i, query in enumerate(queries):
            if query.subjects:  # no subject keys, no usage (an empty list would mean every subject)
                batches[_batch_key(query)].append(i)
        for indexes in batches.values():
            await self._read_batch(namespace, [queries[i] for i in indexes], [answers[i] for i in indexes])
        return answers

    async def _read_batch(
        self, namespace: str, queries: Sequence[UsageQuery], answers: Sequence[UsageRows]
    ) -> None:
        first = queries[0]
        subjects = sorted({s for q in queries for s in q.subjects})
        by_subject: dict[str, list[tuple[GroupValues, Decimal]]] = defaultdict(list)
        aggregation: int = ingest_pb2.AGGREGATION_SUM
        for start in range(0, len(subjects), SUBJECTS_PER_QUERY):
            chunk = subjects[start : start + SUBJECTS_PER_QUERY]
            aggregation, rows = await self._query(namespace, first, chunk, ("subject", *first.group_by))
            for row in rows:
                by_subject[row.subject].append((_group_values(row), Decimal(row.value.value)))
        combine = _COMBINERS.get(aggregation)
        for query, answer in zip(queries, answers, strict=True):
            if combine is None and len(query.subjects) > 1:
                # Not combinable across subjects: ingest aggregates this customer's events together.
                _, rows = await self._query(namespace, query, list(query.subjects), query.group_by)
                for row in rows:
                    answer[_group_values(row)] = Decimal(row.value.value)
                continue
            for subject in query.subjects:
                for values, value in by_subject.get(subject, ()):
                    previous = answer.get(values)
                    answer[values] = (
                        value if previous is None or combine is None else combine(previous, value)
                    )

    async def _query(
        self, namespace: str, query: UsageQuery, subjects: Sequence[str], group_by: Iterable[str]
    ) -> tuple[int, list[ingest_pb2.UsageRow]]:
        request = ingest_pb2.QueryUsageRequest(
            meter_key=query.meter.meter_key,
            time_range=common_pb2.TimeRange(
                start_time=to_timestamp(query.start), end_time=to_timestamp(query.end)
            ),
            subjects=list(subjects),
            group_by=list(group_by),
            group_filters={
                name: ingest_pb2.GroupValues(values=[value]) for name, value in query.meter.group_filters
            },
            page=common_pb2.PageRequest(page_size=ROWS_PER_PAGE),
        )
        rows: list[ingest_pb2.UsageRow] = []
        aggregation: int = ingest_pb2.AGGREGATION_SUM
        while True:
            reply: ingest_pb2.QueryUsageResponse | None = await self._ingest.find(
                self._stub.QueryUsage,
                request,
                namespace=namespace,
                what=f"usage of meter {query.meter.meter_key!r}",
            )
            if reply is None:
                raise FailedPrecondition(
                    f"meter {query.meter.meter_key!r} of feature {query.meter.feature_key!r} is not"
                    " known to the ingest service",
                    metadata={"meter_key": query.meter.meter_key},
                )
            aggregation = int(reply.aggregation)
            rows.extend(reply.rows)
            if not reply.page.next_page_token:
                return aggregation, rows
            request.page.page_token = reply.page.next_page_token


def _group_values(row: ingest_pb2.UsageRow) -> GroupValues:
    return tuple(sorted(row.group_values.items()))
