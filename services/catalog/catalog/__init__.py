"""The catalog service: owns features, plans and their versions, phases, rate cards, prices and add-ons."""

from pathlib import Path

SCHEMA = "catalog"
"""The Postgres schema this service owns; it reads and writes no other."""

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
"""This service's SQL migrations, applied in order by `metering-catalog migrate`."""
