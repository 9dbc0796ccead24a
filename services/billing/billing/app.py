"""Composition root of the billing service: wires settings, Postgres and the clock into servicers."""

from __future__ import annotations

import asyncpg

from billing import SCHEMA
from billing.config import Settings
from meterlib.clock import Clock
from meterlib.resources import open_pool
from meterlib.server import ServiceApp


async def build(
    settings: Settings, *, pool: asyncpg.Pool | None = None, clock: Clock | None = None
) -> ServiceApp:
    """Build the service; a pool passed in (tests share theirs) is not closed by it."""
    app = ServiceApp(name="billing")
    pool = pool or await open_pool(app, settings, SCHEMA)
    return app
