"""`metering-catalog` / `python -m catalog`: serve, migrate, or check the configuration."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from catalog import MIGRATIONS_DIR, SCHEMA
from catalog.app import build
from catalog.config import Settings
from meterlib.cli import ServiceDefinition
from meterlib.cli import main as run_cli

DEFINITION = ServiceDefinition(
    name="catalog", settings_class=Settings, build=build, migrations_dir=MIGRATIONS_DIR, schema=SCHEMA
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    return run_cli(DEFINITION, argv)


if __name__ == "__main__":
    sys.exit(main())
