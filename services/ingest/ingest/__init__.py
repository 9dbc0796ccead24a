"""The ingest service: owns meters, raw events, usage roll-ups and dedupe keys."""

from pathlib import Path

SCHEMA = "ingest"
"""The Postgres schema this service owns; it reads and writes no other."""

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
"""This service's SQL migrations, applied in order by `metering-ingest migrate`."""
