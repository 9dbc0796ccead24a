"""Load for the `ingest.*` benchmarks: the Ingest call factory run by `bench.loadgen`, and the raw-insert reference.

* `make_ingest_call(channel)` is the `bench.rpcload` call factory: each call sends one `IngestRequest` of
  `BATCH_SIZE` events, `DUPLICATES` of them (spread through the batch) copies of events of the previous
  completed batch of this process, so that 95% are new and 5% are answered DUPLICATE by the dedupe keys.
  The request is encoded by hand from precomputed bytes (only the ids change), so that the generator spends
  ~1 ms per batch instead of ~4 ms building protobuf messages: it shares the 2 cores with the server.
* `python -m bench.ingest_load raw --dsn URL ...` is the reference: the same rows (same columns, same values,
  1,000 per statement, `INSERT ... SELECT ... FROM unnest(...)`) inserted with asyncpg into a bare table
  without index or constraint, `--concurrency` statements in flight, each on its own connection. It prints
  one JSON object {"rows", "seconds", "statements"} of the rows inserted in the measured window.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bench.empty_server import start_watchdog

if TYPE_CHECKING:
    import grpc

BATCH_SIZE = 1000
DUPLICATES = 50  # 5% of a batch
NAMESPACE = "bench"
SOURCE = "api-gateway/eu-1"
EVENT_TYPE = "llm.request"
METER_KEY = "llm_tokens"
SUBJECTS = 1000  # events of a batch spread over this many subjects
MODELS = ("gpt-4", "gpt-4o-mini", "claude-3")
INGEST_METHOD = "/metering.ingest.v1.IngestService/Ingest"
METADATA = (("x-metering-namespace", NAMESPACE),)
RAW_TABLE = "bench_raw.events"


def payload(i: int) -> str:
    """The `data` of the i-th event of a batch: a small realistic JSON object."""
    return f'{{"tokens": {100 + (i * 37) % 900}, "model": "{MODELS[i % len(MODELS)]}"}}'


def subject(i: int) -> str:
    """The subject of the i-th event of a batch."""
    return f"customer-{i % SUBJECTS}"


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, value: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _timestamp(at: datetime) -> bytes:
    seconds = int(at.timestamp())
    nanos = at.microsecond * 1000
    return _varint(1 << 3) + _varint(seconds) + (_varint(2 << 3) + _varint(nanos) if nanos else b"")


class BatchMaker:
    """Encodes `IngestRequest`s of BATCH_SIZE events whose ids are unique to this maker (and process).

    Every event of a maker has the same `time` (when it was made: a producer's clock, and later than any
    window the query benchmark reads); slot i always has the same subject and data, only ids change.
    """

    def __init__(self, at: datetime | None = None) -> None:
        self.prefix = uuid.uuid4().hex[:12]
        self.at = at or datetime.now(UTC)
        # Fields 2..6 of Event (source, type, subject, time, data) per slot, after the id (field 1).
        time_field = _field(5, _timestamp(self.at))
        self._rest = [
            _field(2, SOURCE.encode())
            + _field(3, EVENT_TYPE.encode())
            + _field(4, subject(i).encode())
            + time_field
            + _field(6, payload(i).encode())
            for i in range(BATCH_SIZE)
        ]
        self._counter = itertools.count()
        self._duplicate_slots = range(0, BATCH_SIZE, BATCH_SIZE // DUPLICATES)
        self.last_done: list[str] | None = None  # ids of the last batch whose call completed

    def ids(self) -> list[str]:
        """Ids of the next batch: new ones, and DUPLICATES from the last completed batch (if any)."""
        base = next(self._counter) * BATCH_SIZE
        ids = [f"{self.prefix}-{base + i}" for i in range(BATCH_SIZE)]
        if self.last_done is not None:
            for slot in self._duplicate_slots:
                # Slots that were new in that batch (a duplicate slot then held an older id).
                ids[slot] = self.last_done[slot + 1]
        return ids

    def encode(self, ids: Sequence[str]) -> bytes:
        """The serialized `IngestRequest` of these ids, in slot order."""
        parts = []
        for event_id, rest in zip(ids, self._rest, strict=True):
            event = _field(1, event_id.encode()) + rest
            parts.append(b"\x0a" + _varint(len(event)) + event)
        return b"".join(parts)


def make_ingest_call(channel: grpc.aio.Channel) -> Callable[[], Awaitable[object]]:
    """The `bench.rpcload` call factory: one call sends one batch of BATCH_SIZE events."""
    from metering.ingest.v1 import ingest_pb2

    maker = BatchMaker()
    # request_serializer None: the request is already bytes.
    ingest = channel.unary_unary(INGEST_METHOD, response_deserializer=ingest_pb2.IngestResponse.FromString)

    async def call() -> object:
        ids = maker.ids()
        response = await ingest(maker.encode(ids), metadata=METADATA)
        maker.last_done = ids
        return response

    return call


# The statement of the reference: the events columns of ingest.store.EventStore.insert, nothing else.
RAW_INSERT = f"""
    INSERT INTO {RAW_TABLE} (namespace, source, id, type, subject, time, data, ingest_time)
    SELECT $1, source, id, type, subject, time, data::jsonb, $7
    FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $8::text[])
        AS t(source, id, type, subject, time, data)
"""
RAW_TABLE_DDL = f"""
    CREATE SCHEMA IF NOT EXISTS {RAW_TABLE.split(".")[0]};
    CREATE TABLE IF NOT EXISTS {RAW_TABLE} (
        namespace text, source text, id text, type text, subject text,
        time timestamptz, data jsonb, ingest_time timestamptz
    );
"""


async def raw_insert(dsn: str, concurrency: int, warmup: float, duration: float) -> dict[str, float]:
    """Insert batches of BATCH_SIZE rows on `concurrency` connections; rows/s over the window."""
    import asyncpg

    conns = [await asyncpg.connect(dsn) for _ in range(concurrency)]
    try:
        await conns[0].execute(RAW_TABLE_DDL)
        maker = BatchMaker()
        sources = [SOURCE] * BATCH_SIZE
        types = [EVENT_TYPE] * BATCH_SIZE
        subjects = [subject(i) for i in range(BATCH_SIZE)]
        times = [maker.at] * BATCH_SIZE
        datas = [payload(i) for i in range(BATCH_SIZE)]
        t_start = time.perf_counter() + warmup
        t_end = t_start + duration
        rows = statements = 0

        async def worker(conn: asyncpg.Connection) -> None:
            nonlocal rows, statements
            stmt = await conn.prepare(RAW_INSERT)
            while time.perf_counter() < t_end:
                ids = maker.ids()
                await stmt.fetch(NAMESPACE, sources, ids, types, subjects, times, datetime.now(UTC), datas)
                if t_start <= time.perf_counter() < t_end:
                    rows += BATCH_SIZE
                    statements += 1

        await asyncio.gather(*(worker(c) for c in conns))
        return {"rows": rows, "statements": statements, "seconds": duration}
    finally:
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.ingest_load raw ...`: the raw-insert reference, one JSON line on stdout."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_load")
    parser.add_argument("command", choices=["raw"])
    parser.add_argument("--dsn", required=True, help="PostgreSQL URL on 127.0.0.1")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    if "@127.0.0.1:" not in args.dsn:
        parser.error("the reference only connects to 127.0.0.1")
    start_watchdog(args.max_seconds)
    report = asyncio.run(raw_insert(args.dsn, args.concurrency, args.warmup, args.duration))
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
