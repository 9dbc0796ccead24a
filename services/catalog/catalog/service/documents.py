"""Catalog as code: ApplyCatalog and ExportCatalog over the store, around the pure ``catalog.document``.

An apply runs in one transaction that first locks every key it may touch (the document's and, with
prune, the stored ones), in key order, with the same per-key locks the other lifecycle RPCs take; so it
reads a state no other change can move under it, and a dry run reports exactly what a real apply would
do at that moment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from catalog.document import (
    ArchiveFeature,
    ArchiveVersion,
    CatalogDiff,
    CatalogDocument,
    CatalogState,
    CreateFeature,
    CreateVersion,
    DocumentFormat,
    PublishVersion,
    Step,
    UpdateDraft,
    diff_catalog,
    export_catalog,
    parse_document,
)
from catalog.domain import AddOn, Feature, Plan
from catalog.meters import MeterDirectory
from catalog.store import CatalogStore, Stores
from meterlib.clock import Clock
from meterlib.logs import get_logger

log = get_logger("catalog.documents")


class CatalogDocuments:
    """Apply and export whole catalogs."""

    def __init__(self, store: CatalogStore, meters: MeterDirectory, clock: Clock) -> None:
        self._store = store
        self._meters = meters
        self._clock = clock

    async def apply(
        self, namespace: str, text: str, format: DocumentFormat, *, dry_run: bool, prune: bool
    ) -> CatalogDiff:
        """The changes applying the document makes (or, in a dry run, would make); written unless a dry run."""
        # Parsing a large document takes seconds of CPU: off the event loop.
        document = await asyncio.to_thread(parse_document, text, format)
        dimensions, unknown = await self._meter_dimensions(
            namespace, document, await self._store.features.all(namespace)
        )
        async with self._store.transaction() as tx:
            await self._lock(tx, namespace, document, prune)
            state = CatalogState(
                features=await tx.features.all(namespace),
                plans=await tx.plans.all_in_namespace(namespace),
                add_ons=await tx.add_ons.all_in_namespace(namespace),
                meter_dimensions=dimensions,
                unknown_meters=unknown,
            )
            diff = diff_catalog(document, state, now=self._clock.now(), prune=prune)
            if not dry_run:
                for step in diff.steps:
                    await _write(tx, namespace, step)
        if not dry_run and diff.steps:
            log.info("catalog.applied", writes=len(diff.steps), changes=len(diff.changes))
        return diff

    async def export(
        self, namespace: str, format: DocumentFormat, *, include_archived: bool, include_drafts: bool
    ) -> str:
        """The namespace's catalog as a document that applies back without changes."""
        async with self._store.transaction() as tx:  # one consistent read
            state = CatalogState(
                features=await tx.features.all(namespace),
                plans=await tx.plans.all_in_namespace(namespace),
                add_ons=await tx.add_ons.all_in_namespace(namespace),
            )
        return export_catalog(
            state,
            now=self._clock.now(),
            format=format,
            include_archived=include_archived,
            include_drafts=include_drafts,
        )

    async def _meter_dimensions(
        self, namespace: str, document: CatalogDocument, stored: Mapping[str, Feature]
    ) -> tuple[dict[str, frozenset[str]], frozenset[str]]:
        """What ingest says of the meters the document needs: their dimensions, and which do not exist."""
        keys = sorted(document.meter_keys(stored))
        answers = await asyncio.gather(*(self._meters.dimensions(namespace, key) for key in keys))
        found = {key: dims for key, dims in zip(keys, answers, strict=True) if dims is not None}
        return found, frozenset(key for key, dims in zip(keys, answers, strict=True) if dims is None)

    async def _lock(self, tx: Stores, namespace: str, document: CatalogDocument, prune: bool) -> None:
        plan_keys = {p.content.key for p in document.plans}
        add_on_keys = {a.content.key for a in document.add_ons}
        if prune:
            plan_keys.update(await tx.plans.keys(namespace))
            add_on_keys.update(await tx.add_ons.keys(namespace))
        await tx.plans.lock_keys(namespace, plan_keys)
        await tx.add_ons.lock_keys(namespace, add_on_keys)


async def _write(tx: Stores, namespace: str, step: Step) -> None:
    match step:
        case CreateFeature(feature=feature):
            await tx.features.insert(namespace, feature)
        case ArchiveFeature(feature=feature):
            assert feature.archive_time is not None
            await tx.features.archive(namespace, feature.key, feature.archive_time)
        case CreateVersion(version=version):
            await _insert(tx, namespace, version)
        case UpdateDraft(version=version) | ArchiveVersion(version=version):
            await _save(tx, namespace, version)
        case PublishVersion(versions=versions):
            for version in versions:
                await _save(tx, namespace, version)


async def _insert(tx: Stores, namespace: str, version: Plan | AddOn) -> None:
    if isinstance(version, Plan):
        await tx.plans.insert(namespace, version)
    else:
        await tx.add_ons.insert(namespace, version)


async def _save(tx: Stores, namespace: str, version: Plan | AddOn) -> None:
    if isinstance(version, Plan):
        await tx.plans.save(namespace, version)
    else:
        await tx.add_ons.save(namespace, version)
