"""Plans: create version 1, edit a DRAFT; the rest of the lifecycle is shared with add-ons."""

from __future__ import annotations

from dataclasses import replace

from catalog.domain import CreatePlanInput, Plan, RateCard, References, UpdateDraftPlanInput, validate_plan
from catalog.service.versions import VersionService
from catalog.store import Stores, VersionStore
from meterlib.logs import get_logger

log = get_logger("catalog.plans")


def _cards(content: CreatePlanInput | Plan) -> list[RateCard]:
    return [card for phase in content.phases for card in phase.rate_cards]


class PlanService(VersionService[Plan]):
    """Plan versions."""

    RESOURCE_TYPE = "plan"
    NOUN = "plan"
    NEW_DRAFT_METHOD = "NewDraftPlanVersion"

    def _table(self, stores: Stores) -> VersionStore[Plan]:
        return stores.plans

    def _rate_cards(self, version: Plan) -> list[RateCard]:
        return _cards(version)

    def _validate_stored(self, version: Plan, refs: References) -> None:
        validate_plan(version, refs)

    async def create(self, namespace: str, new: CreatePlanInput) -> Plan:
        """Create version 1 as a DRAFT; a retry of an identical create returns it."""
        dimensions = await self._references.matrix_dimensions(namespace, self._store, _cards(new))

        async def validated(tx: Stores) -> Plan:
            new.validate(await self._references.resolve(namespace, tx, _cards(new), dimensions))
            return new.to_plan(1, self._clock.now())

        return await self._create_first(namespace, new.key, validated, new.same_definition)

    async def update_draft(self, namespace: str, change: UpdateDraftPlanInput) -> Plan:
        """Replace the content of a DRAFT; FAILED_PRECONDITION (ERROR_REASON_IMMUTABLE) for any other."""
        content = change.plan
        dimensions = await self._references.matrix_dimensions(namespace, self._store, _cards(content))
        async with self._store.transaction() as tx:
            change.validate(await self._references.resolve(namespace, tx, _cards(content), dimensions))
            draft = await tx.plans.get(namespace, content.key, change.version, for_update=True)
            if draft is None:
                raise self._not_found(content.key, change.version)
            updated = content.apply_to(draft, self._clock.now())
            if replace(updated, update_time=draft.update_time) == draft:
                return draft  # the same content again: nothing changes, not even update_time
            await tx.plans.save(namespace, updated)
        log.info("plan.draft_updated", key=updated.key, version=updated.version)
        return updated
