"""The command line every service shares: ``metering-<service> [serve|migrate] [--check-config]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meterlib.config import ConfigError, ServiceSettings
from meterlib.logs import configure_logging, get_logger
from meterlib.migrations import MigrationError, migrate
from meterlib.server import ServiceApp, serve


@dataclass(frozen=True)
class ServiceDefinition:
    """What the shared command line needs to know about one service."""

    name: str
    settings_class: type[ServiceSettings]
    build: Callable[[Any], Awaitable[ServiceApp]]
    migrations_dir: Path
    schema: str


def main(service: ServiceDefinition, argv: Sequence[str] | None = None) -> int:
    """Parse arguments, read settings, then serve or migrate; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog=f"metering-{service.name}", description=f"The {service.name} service."
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "migrate"],
        help="serve gRPC until SIGTERM (default), or apply this service's database migrations and exit",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the settings, print them as JSON (secrets masked), exit",
    )
    args = parser.parse_args(argv)

    try:
        settings = service.settings_class.from_env(os.environ)
    except ConfigError as exc:
        print(f"metering-{service.name}: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print(json.dumps(settings.redacted(), default=str))
        return 0

    configure_logging(service.name, settings.log_level, settings.log_format)
    log = get_logger()
    try:
        if args.command == "migrate":
            if not settings.database_url:
                raise ConfigError(
                    [f"{settings.env_name('DATABASE_URL', shared=True)}: must be set to migrate"]
                )
            applied = asyncio.run(migrate(settings.database_url, service.schema, service.migrations_dir))
            log.info("migrations.done", schema=service.schema, applied=[m.version for m in applied])
            return 0
        settings.require_backends()

        async def run() -> None:
            await serve(await service.build(settings), settings)

        asyncio.run(run())
        return 0
    except ConfigError as exc:
        print(f"metering-{service.name}: {exc}", file=sys.stderr)
        return 2
    except MigrationError as exc:
        log.error("migrations.failed", error=str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
