"""What the stores run SQL on: the pool (one statement, its own transaction) or one transaction's
connection."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg

Executor: TypeAlias = "asyncpg.Pool[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
