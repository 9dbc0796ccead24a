"""SQL of plan and add-on versions: one table each, the same shape, one store class per table.

A version's content is a jsonb column (see ``catalog.store.content``); its lifecycle is in columns, and
its status at an instant is the SQL function ``version_status`` (migration 0002), the twin of
``catalog.domain.status.version_status``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

import asyncpg

from catalog.domain import AddOn, Plan, VersionStatus
from catalog.store.content import (
    add_on_content,
    feature_keys,
    plan_content,
    read_add_on_content,
    read_plan_content,
)
from meterlib.errors import AlreadyExists, FailedPrecondition
from meterlib.stores import Executor

V = TypeVar("V", Plan, AddOn)

_LIFECYCLE = "effective_from, effective_to, archive_time, create_time, update_time"


@dataclass(frozen=True)
class VersionFilter:
    """What a ListPlans / ListAddOns request selects; empty collections select everything."""

    keys: Sequence[str] = ()
    statuses: Sequence[VersionStatus] = ()
    latest_only: bool = False
    currency: str = ""
    """Plans only: versions in this currency."""
    compatible_plan_key: str = ""
    """Add-ons only: versions that may be bought with this plan."""


@dataclass(frozen=True)
class VersionRef:
    """A version by key and number."""

    key: str
    version: int


class VersionStore(ABC, Generic[V]):
    """The versions of one kind (plans or add-ons), by namespace, key and version number."""

    TABLE: ClassVar[str]
    RESOURCE: ClassVar[str]
    EXTRA_COLUMNS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, db: Executor) -> None:
        self._db = db

    # --- row mapping, per kind -------------------------------------------------------------------------

    @abstractmethod
    def _values(self, version: V) -> tuple[Any, ...]:
        """currency, content, feature_keys, then EXTRA_COLUMNS."""
        ...

    @abstractmethod
    def _from_row(self, row: asyncpg.Record) -> V: ...

    @property
    def _columns(self) -> str:
        extra = "".join(f", {c}" for c in self.EXTRA_COLUMNS)
        return f"key, version, currency, content, feature_keys{extra}, {_LIFECYCLE}"

    # --- statements ------------------------------------------------------------------------------------

    async def insert(self, namespace: str, version: V) -> None:
        """Store a new version. AlreadyExists (ERROR_REASON_KEY_CONFLICT) when the number is taken;
        FailedPrecondition when it is a DRAFT and the key already has one."""
        values = (
            version.key,
            version.version,
            *self._values(version),
            version.effective_from,
            version.effective_to,
            version.archive_time,
            version.create_time,
            version.update_time,
        )
        placeholders = ", ".join(f"${i}" for i in range(2, len(values) + 2))
        try:
            await self._db.execute(
                f"INSERT INTO {self.TABLE} (namespace, {self._columns}) VALUES ($1, {placeholders})",
                namespace,
                *values,
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == f"{self.TABLE}_one_draft":
                raise FailedPrecondition(
                    f"{self.RESOURCE} {version.key!r} already has a draft",
                    reason="ERROR_REASON_INVALID_STATE_TRANSITION",
                ) from None
            raise AlreadyExists(
                f"{self.RESOURCE} {version.key!r} version {version.version} already exists",
                reason="ERROR_REASON_KEY_CONFLICT",
            ) from None

    async def save(self, namespace: str, version: V) -> None:
        """Write back a changed version (a DRAFT's content, or any version's lifecycle)."""
        extra = "".join(f", {c} = ${i}" for i, c in enumerate(self.EXTRA_COLUMNS, start=7))
        n = 7 + len(self.EXTRA_COLUMNS)
        values = self._values(version)
        await self._db.execute(
            f"""
            UPDATE {self.TABLE}
            SET currency = $4, content = $5, feature_keys = $6{extra},
                effective_from = ${n}, effective_to = ${n + 1}, archive_time = ${n + 2},
                update_time = ${n + 3}
            WHERE namespace = $1 AND key = $2 AND version = $3
            """,
            namespace,
            version.key,
            version.version,
            *values,
            version.effective_from,
            version.effective_to,
            version.archive_time,
            version.update_time,
        )

    async def get(self, namespace: str, key: str, number: int, *, for_update: bool = False) -> V | None:
        """One version; None when there is none. ``for_update`` locks it until the transaction ends."""
        lock = "FOR UPDATE" if for_update else ""
        row = await self._db.fetchrow(
            f"SELECT {self._columns} FROM {self.TABLE} WHERE namespace = $1 AND key = $2 AND version = $3 {lock}",
            namespace,
            key,
            number,
        )
        return self._from_row(row) if row else None

    async def all_versions(self, namespace: str, key: str, *, for_update: bool = False) -> list[V]:
        """Every version of a key, oldest first. ``for_update`` serializes lifecycle changes of the key
        (publish, new draft) until the transaction ends: a transaction-scoped advisory lock on the key,
        taken before the rows are read, so the read sees versions a previous holder added (row locks
        alone would not: a blocked statement keeps the snapshot it started with); then the rows."""
        if for_update:
            await self._db.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{self.TABLE}/{namespace}/{key}"
            )
        lock = "FOR UPDATE" if for_update else ""
        rows = await self._db.fetch(
            f"SELECT {self._columns} FROM {self.TABLE} WHERE namespace = $1 AND key = $2 ORDER BY version {lock}",
            namespace,
            key,
        )
        return [self._from_row(row) for row in rows]

    async def lock_keys(self, namespace: str, keys: Collection[str]) -> None:
        """Serialize lifecycle changes of these keys until the transaction ends: the advisory locks of
        ``all_versions(for_update=True)``, taken in key order so that two holders never deadlock."""
        for key in sorted(set(keys)):
            await self._db.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{self.TABLE}/{namespace}/{key}"
            )

    async def keys(self, namespace: str) -> list[str]:
        """Every key of the namespace."""
        rows = await self._db.fetch(
            f"SELECT DISTINCT key FROM {self.TABLE} WHERE namespace = $1 ORDER BY key", namespace
        )
        return [row["key"] for row in rows]

    async def all_in_namespace(self, namespace: str) -> dict[str, list[V]]:
        """Every version of every key of the namespace, by key, oldest first."""
        rows = await self._db.fetch(
            f"SELECT {self._columns} FROM {self.TABLE} WHERE namespace = $1 ORDER BY key, version", namespace
        )
        versions: dict[str, list[V]] = {}
        for row in rows:
            version = self._from_row(row)
            versions.setdefault(version.key, []).append(version)
        return versions

    async def effective_at(self, namespace: str, key: str, at: datetime) -> list[V]:
        """The published versions whose effective range holds ``at`` (at most one: ranges never overlap)."""
        rows = await self._db.fetch(
            f"""
            SELECT {self._columns} FROM {self.TABLE}
            WHERE namespace = $1 AND key = $2
              AND effective_from <= $3 AND (effective_to IS NULL OR $3 < effective_to)
            ORDER BY version DESC
            """,
            namespace,
            key,
            at,
        )
        return [self._from_row(row) for row in rows]

    async def exists(self, namespace: str, key: str) -> bool:
        """Whether the key has any version."""
        found = await self._db.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {self.TABLE} WHERE namespace = $1 AND key = $2)", namespace, key
        )
        return bool(found)

    async def existing_keys(self, namespace: str, keys: Sequence[str]) -> frozenset[str]:
        """Those of ``keys`` that have at least one version."""
        if not keys:
            return frozenset()
        rows = await self._db.fetch(
            f"SELECT DISTINCT key FROM {self.TABLE} WHERE namespace = $1 AND key = ANY($2)",
            namespace,
            list(keys),
        )
        return frozenset(row["key"] for row in rows)

    async def referencing(
        self, namespace: str, feature_key: str, now: datetime, limit: int
    ) -> list[VersionRef]:
        """Versions that reference a feature and are not archived at ``now`` (DRAFT, SCHEDULED, ACTIVE)."""
        rows = await self._db.fetch(
            f"""
            SELECT key, version FROM {self.TABLE}
            WHERE namespace = $1 AND feature_keys @> ARRAY[$2::text]
              AND version_status(effective_from, effective_to, archive_time, $3) <> 'archived'
            ORDER BY key, version
            LIMIT $4
            """,
            namespace,
            feature_key,
            now,
            limit,
        )
        return [VersionRef(row["key"], row["version"]) for row in rows]

    async def list_page(
        self,
        namespace: str,
        selection: VersionFilter,
        *,
        now: datetime,
        after: VersionRef | None,
        limit: int,
    ) -> list[V]:
        """Versions ordered by key, then version descending, after ``after``. With ``latest_only`` only
        the highest version of each key among those the other filters select."""
        extra_sql, extra_args = self._extra_filter(selection, first_parameter=10)
        rows = await self._db.fetch(
            f"""
            SELECT {self._columns} FROM (
                SELECT *, row_number() OVER (PARTITION BY key ORDER BY version DESC) AS rank
                FROM {self.TABLE}
                WHERE namespace = $1
                  AND (cardinality($2::text[]) = 0 OR key = ANY($2))
                  AND (cardinality($3::text[]) = 0
                       OR version_status(effective_from, effective_to, archive_time, $4) = ANY($3))
                  AND ($5 = '' OR currency = $5)
                  {extra_sql}
            ) matching
            WHERE (NOT $6 OR rank = 1)
              AND ($7::text IS NULL OR key > $7 OR (key = $7 AND version < $8))
            ORDER BY key, version DESC
            LIMIT $9
            """,
            namespace,
            list(selection.keys),
            [status.value for status in selection.statuses],
            now,
            selection.currency,
            selection.latest_only,
            None if after is None else after.key,
            0 if after is None else after.version,
            limit,
            *extra_args,
        )
        return [self._from_row(row) for row in rows]

    def _extra_filter(self, selection: VersionFilter, first_parameter: int) -> tuple[str, tuple[Any, ...]]:
        """Kind-specific conditions of list_page and their arguments."""
        return "", ()


class PlanStore(VersionStore[Plan]):
    """Plan versions."""

    TABLE = "plan_versions"
    RESOURCE = "plan"

    def _values(self, version: Plan) -> tuple[Any, ...]:
        cards = [card for phase in version.phases for card in phase.rate_cards]
        return version.currency, plan_content(version), feature_keys(cards)

    def _from_row(self, row: asyncpg.Record) -> Plan:
        content = read_plan_content(row["key"], row["content"])
        assert content.billing_cadence is not None  # read_plan_content insists
        return Plan(
            key=row["key"],
            version=row["version"],
            name=content.name,
            currency=content.currency,
            billing_cadence=content.billing_cadence,
            phases=content.phases,
            description=content.description,
            metadata=content.metadata,
            effective_from=row["effective_from"],
            effective_to=row["effective_to"],
            archive_time=row["archive_time"],
            create_time=row["create_time"],
            update_time=row["update_time"],
        )


class AddOnStore(VersionStore[AddOn]):
    """Add-on versions."""

    TABLE = "add_on_versions"
    RESOURCE = "add-on"
    EXTRA_COLUMNS = ("compatible_plan_keys",)

    def _values(self, version: AddOn) -> tuple[Any, ...]:
        return (
            version.currency,
            add_on_content(version),
            feature_keys(list(version.rate_cards)),
            list(version.compatible_plan_keys),
        )

    def _from_row(self, row: asyncpg.Record) -> AddOn:
        content = read_add_on_content(row["key"], row["content"])
        return AddOn(
            key=row["key"],
            version=row["version"],
            name=content.name,
            currency=content.currency,
            rate_cards=content.rate_cards,
            description=content.description,
            instance_type=content.instance_type,
            compatible_plan_keys=content.compatible_plan_keys,
            metadata=content.metadata,
            effective_from=row["effective_from"],
            effective_to=row["effective_to"],
            archive_time=row["archive_time"],
            create_time=row["create_time"],
            update_time=row["update_time"],
        )

    def _extra_filter(self, selection: VersionFilter, first_parameter: int) -> tuple[str, tuple[Any, ...]]:
        # An add-on without compatible plans may be bought with every plan in its currency; a plan key
        # may have had versions in several currencies, so any of them will do.
        p = f"${first_parameter}"
        sql = f"""
                  AND ({p} = ''
                       OR {p} = ANY(compatible_plan_keys)
                       OR (cardinality(compatible_plan_keys) = 0
                           AND currency IN (SELECT currency FROM plan_versions
                                            WHERE namespace = $1 AND key = {p})))"""
        return sql, (selection.compatible_plan_key,)
