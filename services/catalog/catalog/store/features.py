"""SQL of features."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

import asyncpg

from catalog.domain import Feature
from meterlib.errors import AlreadyExists
from meterlib.stores import Executor

FEATURE_COLUMNS = (
    "key, name, description, meter_key, meter_group_filters, metadata, create_time, archive_time"
)


def feature_from_row(row: asyncpg.Record) -> Feature:
    return Feature(
        key=row["key"],
        name=row["name"],
        description=row["description"],
        meter_key=row["meter_key"],
        meter_group_filters=dict(row["meter_group_filters"]),
        metadata=dict(row["metadata"]),
        create_time=row["create_time"],
        archive_time=row["archive_time"],
    )


class FeatureStore:
    """Features, by namespace and key."""

    def __init__(self, db: Executor) -> None:
        self._db = db

    async def insert(self, namespace: str, feature: Feature) -> None:
        """Store a new feature; AlreadyExists (ERROR_REASON_KEY_CONFLICT) when the key is taken."""
        try:
            await self._db.execute(
                f"INSERT INTO features (namespace, {FEATURE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                namespace,
                feature.key,
                feature.name,
                feature.description,
                feature.meter_key,
                feature.meter_group_filters,
                feature.metadata,
                feature.create_time,
                feature.archive_time,
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(
                f"feature {feature.key!r} already exists with another definition",
                reason="ERROR_REASON_KEY_CONFLICT",
            ) from None

    async def all(self, namespace: str) -> dict[str, Feature]:
        """Every feature of the namespace, archived ones included, by key."""
        rows = await self._db.fetch(
            f"SELECT {FEATURE_COLUMNS} FROM features WHERE namespace = $1 ORDER BY key", namespace
        )
        return {feature.key: feature for feature in map(feature_from_row, rows)}

    async def get(self, namespace: str, key: str, *, for_update: bool = False) -> Feature | None:
        """The feature, archived or not; None when there is none. ``for_update`` locks its row until the
        transaction ends (archiving waits for versions being written that reference it, and they for it)."""
        lock = "FOR UPDATE" if for_update else ""
        row = await self._db.fetchrow(
            f"SELECT {FEATURE_COLUMNS} FROM features WHERE namespace = $1 AND key = $2 {lock}", namespace, key
        )
        return feature_from_row(row) if row else None

    async def get_many(
        self, namespace: str, keys: Collection[str], *, for_share: bool = False
    ) -> dict[str, Feature]:
        """The features among ``keys`` that exist, by key. ``for_share`` keeps them from being archived
        until the transaction ends."""
        if not keys:
            return {}
        lock = "FOR SHARE" if for_share else ""
        rows = await self._db.fetch(
            f"SELECT {FEATURE_COLUMNS} FROM features WHERE namespace = $1 AND key = ANY($2) ORDER BY key {lock}",
            namespace,
            sorted(keys),
        )
        return {row["key"]: feature_from_row(row) for row in rows}

    async def list_page(
        self,
        namespace: str,
        *,
        meter_keys: Sequence[str],
        include_archived: bool,
        after_key: str | None,
        limit: int,
    ) -> list[Feature]:
        """Features ordered by key, after ``after_key``."""
        rows = await self._db.fetch(
            f"""
            SELECT {FEATURE_COLUMNS} FROM features
            WHERE namespace = $1
              AND (cardinality($2::text[]) = 0 OR meter_key = ANY($2))
              AND ($3 OR archive_time IS NULL)
              AND ($4::text IS NULL OR key > $4)
            ORDER BY key
            LIMIT $5
            """,
            namespace,
            list(meter_keys),
            include_archived,
            after_key,
            limit,
        )
        return [feature_from_row(row) for row in rows]

    async def archive(self, namespace: str, key: str, at: datetime) -> Feature | None:
        """Archive the feature at ``at`` unless it already is; None when it does not exist."""
        row = await self._db.fetchrow(
            f"""
            UPDATE features SET archive_time = coalesce(archive_time, $3)
            WHERE namespace = $1 AND key = $2
            RETURNING {FEATURE_COLUMNS}
            """,
            namespace,
            key,
            at,
        )
        return feature_from_row(row) if row else None
