"""Add-ons: create version 1, edit a DRAFT; the rest of the lifecycle is shared with plans."""

from __future__ import annotations

from dataclasses import replace

from catalog.domain import (
    AddOn,
    CreateAddOnInput,
    RateCard,
    References,
    UpdateDraftAddOnInput,
    validate_add_on,
)
from catalog.service.versions import VersionService
from catalog.store import Stores, VersionStore
from meterlib.logs import get_logger

log = get_logger("catalog.add_ons")


class AddOnService(VersionService[AddOn]):
    """Add-on versions."""

    RESOURCE_TYPE = "add_on"
    NOUN = "add-on"
    NEW_DRAFT_METHOD = "NewDraftAddOnVersion"

    def _table(self, stores: Stores) -> VersionStore[AddOn]:
        return stores.add_ons

    def _rate_cards(self, version: AddOn) -> list[RateCard]:
        return list(version.rate_cards)

    def _validate_stored(self, version: AddOn, refs: References) -> None:
        # Compatible plans were checked when the draft was written, and plans are never deleted.
        validate_add_on(version, refs)

    async def create(self, namespace: str, new: CreateAddOnInput) -> AddOn:
        """Create version 1 as a DRAFT; a retry of an identical create returns it."""
        cards = list(new.rate_cards)
        dimensions = await self._references.matrix_dimensions(namespace, self._store, cards)

        async def validated(tx: Stores) -> AddOn:
            refs = await self._references.resolve(
                namespace, tx, cards, dimensions, plan_keys=new.compatible_plan_keys
            )
            new.validate(refs)
            return new.to_add_on(1, self._clock.now())

        return await self._create_first(namespace, new.key, validated, new.same_definition)

    async def update_draft(self, namespace: str, change: UpdateDraftAddOnInput) -> AddOn:
        """Replace the content of a DRAFT; FAILED_PRECONDITION (ERROR_REASON_IMMUTABLE) for any other."""
        content = change.add_on
        cards = list(content.rate_cards)
        dimensions = await self._references.matrix_dimensions(namespace, self._store, cards)
        async with self._store.transaction() as tx:
            refs = await self._references.resolve(
                namespace, tx, cards, dimensions, plan_keys=content.compatible_plan_keys
            )
            change.validate(refs)
            draft = await tx.add_ons.get(namespace, content.key, change.version, for_update=True)
            if draft is None:
                raise self._not_found(content.key, change.version)
            updated = content.apply_to(draft, self._clock.now())
            if replace(updated, update_time=draft.update_time) == draft:
                return draft
            await tx.add_ons.save(namespace, updated)
        log.info("add_on.draft_updated", key=updated.key, version=updated.version)
        return updated
