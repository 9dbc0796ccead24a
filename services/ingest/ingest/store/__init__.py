"""All SQL of the ingest service (asyncpg, literal SQL, numbered parameters), by table."""

from ingest.store.events import EventFilter, EventStore
from ingest.store.meters import MeterStore
from ingest.store.outbox import OutboxEntry, OutboxStore
from ingest.store.usage import RollupStep, UsageStore

__all__ = [
    "EventFilter",
    "EventStore",
    "MeterStore",
    "OutboxEntry",
    "OutboxStore",
    "RollupStep",
    "UsageStore",
]
