"""Usage resets (ResetUsage) and usage history (GetEntitlementHistory) of metered entitlements."""

from __future__ import annotations

from entitlements.burndown import compute
from entitlements.domain import (
    Entitlement,
    History,
    HistoryInput,
    Outcome,
    ResetUsageInput,
    fingerprint,
    history_windows,
    not_metered,
)
from entitlements.service.changes import DefinitionChanges
from entitlements.service.entitlements import find_entitlement
from entitlements.service.truth import Truth
from entitlements.store import OUTCOME, EntitlementsStore, Stores
from meterlib.clock import Clock
from meterlib.idempotency import RequestIds
from meterlib.logs import get_logger

log = get_logger("entitlements.usage")

RESET_METHOD = "ResetUsage"


class UsageService:
    """Resets and history."""

    def __init__(
        self, store: EntitlementsStore, truth: Truth, clock: Clock, changes: DefinitionChanges
    ) -> None:
        self._store = store
        self._truth = truth
        self._clock = clock
        self._changes = changes
        self._requests = RequestIds(store)

    async def reset(self, namespace: str, request: ResetUsageInput) -> Entitlement:
        """Record a manual reset of a metered, not deleted entitlement at ``effective_at`` (default now),
        idempotent by request id. The burn-down applies it (rollover, issue_after_reset, overage) whenever
        balances are computed; no usage needs to be read to record it."""
        now = self._clock.now()
        request.validate(now)
        digest = fingerprint(RESET_METHOD, request.request_fields())
        first = await self._requests.recorded(namespace, request.request_id, RESET_METHOD, digest, OUTCOME)
        if first is not None:
            assert first.entitlement is not None
            return first.entitlement

        async def change(tx: Stores) -> Outcome:
            # The row lock orders concurrent resets of one entitlement: each sees the ones before it.
            entitlement = await find_entitlement(
                tx, namespace, request.entitlement, lock="FOR UPDATE", active=True
            )
            resets = await tx.entitlements.resets(namespace, entitlement.id)
            reset = request.to_reset(entitlement, resets, now)
            await tx.entitlements.insert_reset(namespace, entitlement.id, reset)
            return Outcome(entitlement=entitlement.viewed_at([*resets, reset], now))

        outcome = await self._requests.run(
            namespace, request.request_id, RESET_METHOD, digest, now, change, OUTCOME
        )
        entitlement = outcome.entitlement
        assert entitlement is not None
        log.info("entitlement.usage_reset", entitlement_id=entitlement.id, at=request.effective_at or now)
        await self._changes.entitlement_changed(namespace, entitlement.id)
        return entitlement

    async def history(self, namespace: str, request: HistoryInput) -> History:
        """Windows of ``[start, end)`` with usage and balances, and the burn-down segments overlapping the
        range, computed from the truth. The range starts no earlier than ``measure_usage_from`` (usage is
        not counted before it): an earlier start is moved there."""
        request.validate()
        entitlement = await find_entitlement(self._store, namespace, request.entitlement)
        metered = entitlement.metered
        if metered is None:
            raise not_metered(entitlement)
        end = request.end or self._clock.now()
        start = max(request.start or metered.measure_usage_from, metered.measure_usage_from)
        windows = request.windows(start, end)
        if not windows:
            return History((), ())
        bounds = [w.start for w in windows] + [w.end for w in windows]
        computed = await self._truth.burn_down(namespace, entitlement, end, split_at=bounds)
        pieces = computed.burn_down.segments
        # The true segments (cut only at resets and grant changes), from the same reads.
        whole = compute(computed.definition, computed.grants, end, computed.usage_in)
        overlapping = tuple(s for s in whole.segments if s.period.end > start and s.period.start < end)
        return History(history_windows(pieces, windows), overlapping)
