"""The truth of a metered entitlement: its burn-down computed from Postgres (grants, resets, the customer's
subject keys) and ingest's QueryUsage, through the pure engine.

The engine asks its usage source synchronously, once per segment; the segments depend only on the
definitions (resets, grant changes, the instants to split at), never on usage. So a computation runs the
engine twice: once with a source that records the ranges asked for (and answers 0), then, after reading
those ranges from ingest concurrently, with a source that looks the answers up.

This is the function the hot path builds its states with: :meth:`Truth.burn_down`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

from entitlements.burndown import BurnDown, MeteredEntitlement, compute
from entitlements.burndown import Grant as EngineGrant
from entitlements.domain import Entitlement, canonical_id, not_metered
from entitlements.store import EntitlementsStore
from entitlements.usage import MeasuredUsage, UsageReader, UsageSubject
from meterlib.errors import FailedPrecondition, NotFound
from meterlib.money import money_context
from meterlib.periods import as_utc
from meterlib.remote import gather_all

_ZERO: Final = Decimal(0)


@dataclass(frozen=True)
class ComputedBurnDown:
    """A metered entitlement's burn-down at an instant, and the usage it was computed from.

    ``reads`` are the ranges read from ingest, in time order, each with its value and the database
    snapshot it was read in. ``segment_usage`` is the usage counted in the segment containing ``at``
    (``burn_down.segment``) and ``snapshot`` the snapshot it was read in: a hot copy installing
    ``burn_down.segment_snapshot`` plus ``segment_usage`` applies exactly the stream deltas whose
    transaction ``snapshot`` does not see. ``snapshot`` is "" when nothing was read for the segment (the
    customer has no subject keys, or ``at`` is the segment's start and ``through_segment_end`` was not
    asked), and then every delta of the segment is to be applied.
    """

    entitlement: Entitlement
    burn_down: BurnDown
    reads: tuple[MeasuredUsage, ...]
    segment_usage: Decimal
    snapshot: str
    definition: MeteredEntitlement
    """The engine's view of the entitlement and its resets, as computed with."""
    grants: tuple[EngineGrant, ...]
    """The engine's grants, as computed with."""

    @property
    def snapshots(self) -> tuple[str, ...]:
        """Every snapshot a read was made in, in time order of the ranges."""
        return tuple(r.snapshot for r in self.reads)

    def usage_in(self, start: datetime, end: datetime) -> Decimal:
        """Usage of ``[start, end)`` from the reads, which must cut time at ``start`` and ``end``: the
        source to run the engine again on coarser segments (the history's true segments)."""
        with money_context():
            inside = [r for r in self.reads if start <= r.start and r.end <= end]
            covered = sum(((r.end - r.start) for r in inside), start - start)
            if covered != end - start:
                raise KeyError(f"the reads do not cover [{start.isoformat()}, {end.isoformat()}) exactly")
            return sum((r.value for r in inside), _ZERO)


class Truth:
    """Computes burn-downs from the truth."""

    def __init__(self, store: EntitlementsStore, usage: UsageReader, *, concurrency: int) -> None:
        self._store = store
        self._usage = usage
        # Shared by every computation of the process: a burst of them never floods ingest.
        self._slots = asyncio.Semaphore(concurrency)

    async def _entitlement(self, namespace: str, entitlement: str | Entitlement) -> Entitlement:
        if isinstance(entitlement, Entitlement):
            return entitlement
        entitlement_id = canonical_id(entitlement)
        found = (
            None if entitlement_id is None else await self._store.entitlements.get(namespace, entitlement_id)
        )
        if found is None:
            raise NotFound(
                f"entitlement {entitlement!r} not found",
                resource_type="entitlement",
                resource_name=entitlement,
            )
        return found

    async def _read(self, namespace: str, of: UsageSubject, start: datetime, end: datetime) -> MeasuredUsage:
        if not of.subjects:
            return MeasuredUsage(start, end, _ZERO, "")
        async with self._slots:
            read = await self._usage.usage(namespace, of, start, end)
        if read.value < 0:
            raise FailedPrecondition(
                f"meter {of.meter_key!r} reports negative usage ({read.value}) in "
                f"[{start.isoformat()}, {end.isoformat()}); a burn-down needs usage that only grows",
                metadata={"meter": of.meter_key},
            )
        return read

    async def burn_down(
        self,
        namespace: str,
        entitlement: str | Entitlement,
        at: datetime,
        *,
        split_at: Iterable[datetime] = (),
        through_segment_end: bool = False,
    ) -> ComputedBurnDown:
        """The burn-down of a metered entitlement (by id, deleted ones too, or as loaded) at ``at``.

        Grants (voided and expired ones included) and manual resets come from Postgres, usage from
        ingest for the customer's current subject keys and the feature's group filters (a customer
        without subject keys, or a deleted one, has none). ``split_at`` cuts segments at extra instants
        (history windows); it never changes the result.

        ``through_segment_end`` reads the segment containing ``at`` up to the segment's end instead of
        up to ``at``: events already stored with a later time in the segment count as if they had
        happened by ``at`` (within a segment the order of usage does not change the burn-down). That is
        the state a hot copy shows once every stored delta of the segment is applied. When ``at`` is the
        segment's start, the read is reported in ``segment_usage`` only.

        Raises NotFound for an unknown id, FailedPrecondition for an entitlement that is not metered or
        whose meter cannot be burned down, Unavailable when ingest cannot answer.
        """
        at = as_utc(at, "at")
        splits = tuple(split_at)
        found = await self._entitlement(namespace, entitlement)
        metered = found.metered
        if metered is None:
            raise not_metered(found)
        grants, resets, customer = await asyncio.gather(
            self._store.grants.of_entitlement(namespace, found.id),
            self._store.entitlements.resets(namespace, found.id),
            self._store.customers.get(namespace, found.customer_key),
        )
        definition = found.engine(resets)
        engine_grants = [g.engine() for g in grants]

        asked: list[tuple[datetime, datetime]] = []

        def record(start: datetime, end: datetime) -> Decimal:
            asked.append((start, end))
            return _ZERO

        plan = compute(definition, engine_grants, at, record, split_at=splits)
        segment = plan.segment
        reads_for: list[tuple[datetime, datetime]] = list(asked)
        extra: tuple[datetime, datetime] | None = None
        if through_segment_end and segment.end > at:
            if asked and asked[-1][0] >= segment.start:
                reads_for[-1] = (asked[-1][0], segment.end)
            else:
                extra = (at, segment.end)
        subject = UsageSubject(
            meter_key=metered.meter_key,
            subjects=() if customer is None else customer.subject_keys,
            group_filters=dict(metered.meter_group_filters),
        )
        wanted = reads_for + ([extra] if extra is not None else [])
        reads = await gather_all(self._read(namespace, subject, start, end) for start, end in wanted)
        answers = {engine: read.value for engine, read in zip(asked, reads, strict=False)}

        def lookup(start: datetime, end: datetime) -> Decimal:
            return answers[(start, end)]

        result = compute(definition, engine_grants, at, lookup, split_at=splits)
        in_segment = [r for r in reads if r.start >= segment.start]
        with money_context():
            segment_usage = sum((r.value for r in in_segment), _ZERO)
        return ComputedBurnDown(
            entitlement=found,
            burn_down=result,
            reads=tuple(reads),
            segment_usage=segment_usage,
            snapshot=in_segment[-1].snapshot if in_segment else "",
            definition=definition,
            grants=tuple(engine_grants),
        )
