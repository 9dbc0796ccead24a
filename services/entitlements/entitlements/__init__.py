"""The entitlements service: owns entitlements, grants and usage periods (hot balances live in Redis)."""

from pathlib import Path

SCHEMA = "entitlements"
"""The Postgres schema this service owns; it reads and writes no other."""

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
"""This service's SQL migrations, applied in order by `metering-entitlements migrate`."""
