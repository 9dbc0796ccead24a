"""The billing service: owns customers, subscriptions, invoices, invoice lines and credits."""

from pathlib import Path

SCHEMA = "billing"
"""The Postgres schema this service owns; it reads and writes no other."""

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
"""This service's SQL migrations, applied in order by `metering-billing migrate`."""
