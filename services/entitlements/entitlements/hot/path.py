"""The hot path of one replica, assembled: definitions in memory, states shared in Redis and copied in
memory, the usage consumer, the change feed, rebuilds from the truth, and Check answered from memory.

See docs/entitlements.md for why each piece is there and how replicas stay correct together.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from entitlements.domain import Entitlement, EntitlementType
from entitlements.hot.consumer import CONSUMPTION_SOURCE, UsageConsumer
from entitlements.hot.decide import (
    CheckQuery,
    CheckResult,
    DenyReason,
    NeedsTruth,
    decide,
    metered_result,
)
from entitlements.hot.index import DefinitionIndex, EntitlementKind, HotEntitlement
from entitlements.hot.memory import ChangeFeed, FeedFollower, HotMemory
from entitlements.hot.notifications import Notifier
from entitlements.hot.redis_store import Decision, HotStore
from entitlements.hot.state import HotState, Segment
from entitlements.metering import ConsumptionMeter
from entitlements.service.truth import ComputedBurnDown
from entitlements.store import EntitlementsStore
from meterlib.clock import Clock
from meterlib.errors import AlreadyExists, DomainError, FailedPrecondition, NotFound, Unavailable
from meterlib.logs import get_logger
from meterlib.money import format_decimal
from meterlib.tasks import stop_task

log = get_logger("entitlements.hot")

_KINDS = {
    EntitlementType.BOOLEAN: EntitlementKind.BOOLEAN,
    EntitlementType.STATIC: EntitlementKind.STATIC,
    EntitlementType.METERED: EntitlementKind.METERED,
}


class BurnDowns(Protocol):
    """The truth (entitlements.service.Truth)."""

    async def burn_down(
        self,
        namespace: str,
        entitlement: str | Entitlement,
        at: datetime,
        *,
        through_segment_end: bool = False,
    ) -> ComputedBurnDown: ...


def hot_entitlement(namespace: str, entitlement: Entitlement) -> HotEntitlement:
    """What the hot path keeps of an entitlement."""
    metered = entitlement.metered
    return HotEntitlement(
        id=entitlement.id,
        namespace=namespace,
        customer_key=entitlement.customer_key,
        feature_key=entitlement.feature_key,
        kind=_KINDS[entitlement.type],
        active_from=entitlement.active_from,
        active_to=entitlement.active_to,
        static_config=entitlement.static_config or "",
        meter_key=metered.meter_key if metered else "",
        meter_group_filters=dict(metered.meter_group_filters) if metered else {},
    )


def result_of(computed: ComputedBurnDown, customer_key: str) -> CheckResult:
    """A Check answer computed from the truth."""
    burn = computed.burn_down
    return CheckResult(
        has_access=burn.has_access,
        deny_reason=DenyReason.NONE if burn.has_access else DenyReason.LIMIT_REACHED,
        kind=EntitlementKind.METERED,
        balance=burn.balance,
        usage=burn.usage,
        overage=burn.overage,
        usage_period=(burn.period.start, burn.period.end),
        entitlement_id=computed.entitlement.id,
        customer_key=customer_key,
    )


def segment_of(computed: ComputedBurnDown) -> Segment:
    """The hot segment a truth computation describes (its state at the segment's start)."""
    burn = computed.burn_down
    start = burn.segment_snapshot
    return Segment(
        segment_start=burn.segment.start,
        segment_end=burn.segment.end,
        period_start=burn.period.start,
        period_end=burn.period.end,
        start_balance=start.balance,
        start_overage=start.overage,
        period_usage_before=start.usage,
        soft_limit=burn.is_soft_limit,
        granted=start.granted,
    )


_REBUILD_WORKERS = 8
_DECISION_TTL_SECONDS = 7 * 86400
"""How long a consumption's decision is replayed for its idempotency key."""


@dataclass(frozen=True)
class Consumption:
    """What CheckAndConsume answers."""

    consumed: bool
    check: CheckResult
    replayed: bool


class HotPath:
    """Everything one replica runs for fast checks."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        store: EntitlementsStore,
        truth: BurnDowns,
        clock: Clock,
        *,
        usage_stream: str,
        consumer_group: str,
        threshold_percents: Sequence[Decimal],
        fail_open: bool,
        meter: ConsumptionMeter,
        watch_seconds: float = 1.0,
        metering_wait_seconds: float = 15.0,
    ) -> None:
        self._meter = meter
        self._metering_wait = metering_wait_seconds
        self._redis = redis
        self._prefix = prefix
        self._store = store
        self._truth = truth
        self._clock = clock
        self._fail_open = fail_open
        self.index = DefinitionIndex()
        self.memory = HotMemory()
        self.hot = HotStore(redis, prefix)
        self.feed = ChangeFeed(redis, f"{prefix}entitlement-changes")
        self.notifier = Notifier(redis, prefix, percents=threshold_percents)
        self.follower = FeedFollower(
            redis, self.feed, self.hot, self.memory, on_definition=self._definition_notice
        )
        self.consumer = UsageConsumer(
            redis,
            self.hot,
            self.index,
            self.memory,
            self.feed,
            stream=prefix + usage_stream,
            group=consumer_group,
            consumer=f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}",
            on_missing_state=self.schedule_rebuild,
            notifier=self.notifier,
        )
        self._sentinel = f"{prefix}hot-copy"
        self._watch_seconds = watch_seconds
        self._rebuilds: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._queued: set[tuple[str, str]] = set()
        self._tasks: list[asyncio.Task[None]] = []

    # --- start and stop ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the definitions and the states, then run the consumer, the feed and the rebuilds."""
        for namespace, customer in await self._store.customers.all():
            self.index.put_customer(namespace, customer.key, customer.subject_keys)
        for namespace, entitlement in await self._store.entitlements.all_active():
            self.index.put_entitlement(hot_entitlement(namespace, entitlement))
        metered: dict[str, list[str]] = {}
        for known in self.index.metered():
            metered.setdefault(known.namespace, []).append(known.id)
        await self.follower.load(metered)
        for known in self.index.metered():
            if known.id not in self.memory.states:
                self.schedule_rebuild(known.namespace, known.id)
        await self._redis.set(self._sentinel, "1", nx=True)
        self.consumer.start()
        self.follower.start()
        for worker in range(_REBUILD_WORKERS):  # rebuilds wait on ingest: several at once
            self._tasks.append(asyncio.create_task(self._rebuild_loop(), name=f"hot-rebuilds-{worker}"))
        self._tasks.append(asyncio.create_task(self._watch(), name="hot-watch"))

    async def stop(self) -> None:
        """Stop the background work."""
        await self.consumer.stop()
        await self.follower.stop()
        for task in self._tasks:
            await stop_task(task)

    # --- checks ------------------------------------------------------------------------------------

    async def check(
        self,
        namespace: str,
        *,
        customer_key: str = "",
        subject_key: str = "",
        feature_key: str,
        at: datetime | None,
    ) -> CheckResult:
        """Check access; from memory when it can, from the truth otherwise."""
        now = self._clock.now()
        when = at or now
        decision = decide(
            self.index,
            self.memory,
            namespace,
            customer_key=customer_key,
            subject_key=subject_key,
            feature_key=feature_key,
            at=when,
        )
        if isinstance(decision, CheckResult):
            return decision
        return await self._from_truth(namespace, decision, when, rebuild=at is None)

    async def check_many(self, namespace: str, checks: Sequence[CheckQuery]) -> list[CheckResult]:
        """Checks in order: those memory answers at once, the rest from the truth concurrently."""
        now = self._clock.now()
        results: list[CheckResult | None] = []
        pending: dict[int, Awaitable[CheckResult]] = {}
        for i, query in enumerate(checks):
            when = query.at or now
            decision = decide(
                self.index,
                self.memory,
                namespace,
                customer_key=query.customer_key,
                subject_key=query.subject_key,
                feature_key=query.feature_key,
                at=when,
            )
            if isinstance(decision, CheckResult):
                results.append(decision)
            else:
                results.append(None)
                pending[i] = self._from_truth(namespace, decision, when, rebuild=query.at is None)
        if pending:
            for i, result in zip(pending, await asyncio.gather(*pending.values()), strict=True):
                results[i] = result
        return [r for r in results if r is not None]

    async def _from_truth(
        self, namespace: str, needed: NeedsTruth, when: datetime, *, rebuild: bool
    ) -> CheckResult:
        if rebuild:
            self.schedule_rebuild(namespace, needed.entitlement_id)
        try:
            computed = await self._truth.burn_down(namespace, needed.entitlement_id, when)
        except Unavailable:
            if not self._fail_open:
                raise
            log.warning("check.failed_open", entitlement_id=needed.entitlement_id)
            return CheckResult(
                True,
                kind=EntitlementKind.METERED,
                entitlement_id=needed.entitlement_id,
                customer_key=needed.customer_key,
            )
        return result_of(computed, needed.customer_key)

    # --- consumption ------------------------------------------------------------------------------

    async def consume(
        self,
        namespace: str,
        *,
        customer_key: str = "",
        subject_key: str = "",
        feature_key: str,
        amount: Decimal,
        idempotency_key: str,
        at: datetime | None,
    ) -> Consumption:
        """CheckAndConsume: decide and record atomically in Redis, then meter it through ingest.

        A retry with the same key replays the first decision (and sends the metering event again,
        which ingest keeps once). When ingest cannot store the event the call fails UNAVAILABLE and the
        consumption stays recorded, so the client's retry completes it; it never counts twice.
        """
        now = self._clock.now()
        when = at or now
        customer = self.index.customer(namespace, customer_key=customer_key, subject_key=subject_key)
        if customer is None:
            return Consumption(False, CheckResult(False, DenyReason.CUSTOMER_UNKNOWN), replayed=False)
        entitlement = self.index.entitlement(namespace, customer, feature_key)
        if entitlement is None:
            return Consumption(
                False, CheckResult(False, DenyReason.NO_ENTITLEMENT, customer_key=customer), False
            )
        if entitlement.kind is not EntitlementKind.METERED:
            raise FailedPrecondition(
                f"feature {feature_key!r} of customer {customer!r} is not metered: nothing to consume",
                reason="ERROR_REASON_INVALID_STATE_TRANSITION",
            )
        if not entitlement.active_at(when):
            denied = CheckResult(
                False,
                DenyReason.NOT_ACTIVE,
                entitlement.kind,
                entitlement_id=entitlement.id,
                customer_key=customer,
            )
            return Consumption(False, denied, False)
        subjects = self.index.subject_keys(namespace, customer)
        if not subjects:
            raise FailedPrecondition(
                f"customer {customer!r} has no subject keys: a consumption could not be metered",
                reason="ERROR_REASON_INVALID_STATE_TRANSITION",
            )
        fingerprint = f"{customer}\x1f{feature_key}\x1f{format_decimal(amount)}"
        event_key = f"{len(CONSUMPTION_SOURCE)}:{CONSUMPTION_SOURCE}{idempotency_key}"
        decision, state = await self._decide_consumption(
            namespace, entitlement.id, amount, idempotency_key, fingerprint, event_key, when
        )
        if decision.fingerprint != fingerprint:
            raise AlreadyExists(
                f"idempotency key {idempotency_key!r} was used for another consumption",
                reason="ERROR_REASON_IDEMPOTENCY_KEY_REUSED",
            )
        if decision.consumed:
            await self._meter.record(
                namespace,
                meter_key=entitlement.meter_key,
                idempotency_key=idempotency_key,
                subject=subjects[0],
                amount=amount,
                group_filters=dict(entitlement.meter_group_filters),
                at=when,
            )
            await self.hot.consumption_metered(namespace, entitlement.id, state.generation, event_key)
        if not decision.replayed and decision.consumed:
            self.memory.set_usage(entitlement.id, state.generation, decision.usage)
            await self.feed.usage_changed(namespace, [(entitlement.id, state.generation, decision.usage)])
        current = self.memory.states.get(entitlement.id, state)
        if not decision.replayed and current.generation == state.generation:
            current = replace(current, usage=decision.usage)
        result = metered_result(current, entitlement.id, customer)
        if not decision.consumed:
            reason = DenyReason.LIMIT_REACHED if current.balance == 0 else DenyReason.INSUFFICIENT_BALANCE
            result = replace(result, deny_reason=reason, has_access=current.has_access)
        return Consumption(decision.consumed, result, decision.replayed)

    async def _decide_consumption(
        self,
        namespace: str,
        entitlement_id: str,
        amount: Decimal,
        idempotency_key: str,
        fingerprint: str,
        event_key: str,
        when: datetime,
    ) -> tuple[Decision, HotState]:
        deadline = asyncio.get_running_loop().time() + self._metering_wait + 5
        while asyncio.get_running_loop().time() < deadline:
            state = self.memory.get(entitlement_id)
            if state is None or not state.covers(when):
                state = (await self.hot.read(namespace, [entitlement_id]))[entitlement_id]
                if state is None or state.rebuilding or not state.covers(when):
                    state = await self.rebuild(namespace, entitlement_id)
                    if state is None:  # another replica is rebuilding it
                        await asyncio.sleep(0.02)
                        continue
                self.memory.put(entitlement_id, state)
            decision = await self.hot.consume(
                namespace,
                entitlement_id,
                state.generation,
                amount,
                idempotency_key=idempotency_key,
                fingerprint=fingerprint,
                event_key=event_key,
                ttl_seconds=_DECISION_TTL_SECONDS,
            )
            if isinstance(decision, Decision):
                return decision, state
            self.memory.put(entitlement_id, None)  # stale or being rebuilt: read again
            await asyncio.sleep(0.01)
        raise Unavailable(
            "the entitlement's balance is being rebuilt; retry the consumption",
            reason="ERROR_REASON_DEPENDENCY_UNAVAILABLE",
        )

    # --- rebuilds ----------------------------------------------------------------------------------

    def schedule_rebuild(self, namespace: str, entitlement_id: str) -> None:
        """Rebuild an entitlement's state from the truth soon (once, however often asked)."""
        key = (namespace, entitlement_id)
        if key not in self._queued:
            self._queued.add(key)
            self._rebuilds.put_nowait(key)

    async def rebuild(self, namespace: str, entitlement_id: str) -> HotState | None:
        """Compute the state from the truth and install it, one replica at a time per entitlement; the
        state installed, or None when this replica did not install one (the entitlement is not metered
        here, another replica holds the turn, or the definition changed meanwhile: then it is asked
        again shortly)."""
        entitlement = self.index.by_id(entitlement_id)
        if entitlement is None or entitlement.kind is not EntitlementKind.METERED:
            return None
        lock = f"{self._prefix}rebuilding:{{{namespace}}}:{entitlement_id}"
        holder = uuid.uuid4().hex
        if not await self._redis.set(lock, holder, nx=True, ex=60):
            self._retry_later(namespace, entitlement_id)  # whoever holds it may have begun before a change
            return None
        try:
            generation, token = await self.hot.begin_rebuild(namespace, entitlement_id)
            await self._wait_for_metering(namespace, entitlement_id, generation)
            computed = await self._truth.burn_down(
                namespace, entitlement_id, self._clock.now(), through_segment_end=True
            )
            state = await self.hot.install(
                namespace,
                entitlement_id,
                generation,
                segment_of(computed),
                computed.segment_usage,
                computed.snapshot,
                token,
            )
            if state is None:  # a definition changed since begin_rebuild: that change's rebuild follows
                self._retry_later(namespace, entitlement_id)
                return None
            previous = self.memory.states.get(entitlement_id)
            self.memory.put(entitlement_id, state)
            if previous is not None and previous.segment.period_start != state.segment.period_start:
                await self.notifier.reset(entitlement, state.segment.period_start, self._clock.now())
            await self.feed.state_replaced(namespace, entitlement_id)
            return state
        finally:
            if await self._redis.get(lock) == holder.encode():
                await self._redis.delete(lock)

    async def _wait_for_metering(self, namespace: str, entitlement_id: str, generation: int) -> None:
        """Before reading the truth, let consumptions already decided reach ingest: a consumption is
        recorded in the state at once and metered just after, so a truth read between the two would
        drop it and let later consumers overshoot a hard limit. New consumptions wait for the new state
        meanwhile. One that cannot be metered (ingest down) was never acknowledged and is dropped."""
        deadline = asyncio.get_running_loop().time() + self._metering_wait
        while await self.hot.unmetered_consumptions(namespace, entitlement_id, generation):
            if asyncio.get_running_loop().time() > deadline:
                log.warning("hot.unmetered_consumptions_dropped", entitlement_id=entitlement_id)
                return
            await asyncio.sleep(0.02)

    def _retry_later(self, namespace: str, entitlement_id: str, delay: float = 0.1) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(delay, self.schedule_rebuild, namespace, entitlement_id)

    async def _watch(self) -> None:
        """Every ``watch_seconds``: rebuild states whose segment has ended; and when Redis was flushed
        or replaced (the sentinel written at start is gone), rebuild every state from the truth, without
        an operator. Checks meanwhile answer from the truth."""
        while True:
            await asyncio.sleep(self._watch_seconds)
            now = self._clock.now()
            for entitlement_id, held in list(self.memory.states.items()):
                # A segment that has ended (a new usage period, a grant expiring): rebuild it now, so
                # checks stay in memory and the period's reset is announced without waiting for usage.
                end = held.segment.segment_end
                if end is None or end > now or held.rebuilding:
                    continue
                if (known := self.index.by_id(entitlement_id)) is not None:
                    self.schedule_rebuild(known.namespace, entitlement_id)
            try:
                if await self._redis.set(self._sentinel, "1", nx=True):
                    log.warning("hot.redis_lost", entitlements=len(self.index.metered()))
                    for entitlement in self.index.metered():
                        if (state := self.memory.states.get(entitlement.id)) is not None:
                            self.memory.put(entitlement.id, replace(state, rebuilding=True))
                        self.schedule_rebuild(entitlement.namespace, entitlement.id)
            except (RedisError, OSError) as exc:
                log.warning("hot.redis_unreachable", error=str(exc))

    async def _rebuild_loop(self) -> None:
        while True:
            namespace, entitlement_id = await self._rebuilds.get()
            self._queued.discard((namespace, entitlement_id))
            try:
                await self.rebuild(namespace, entitlement_id)
            except (FailedPrecondition, NotFound) as exc:  # no state can be made: checks use the truth
                log.warning("hot.rebuild_impossible", entitlement_id=entitlement_id, error=str(exc))
            except (DomainError, RedisError, OSError) as exc:
                log.warning("hot.rebuild_failed", entitlement_id=entitlement_id, error=str(exc))
                self._retry_later(namespace, entitlement_id, delay=1.0)

    # --- definition changes (entitlements.service.changes.DefinitionChanges) ------------------------

    async def customer_changed(self, namespace: str, customer_key: str) -> None:
        """Reload the customer here and tell the other replicas. Never fails the committed change: a
        replica that misses the notice (Redis down) reloads everything when it restarts."""
        await self._reload_customer(namespace, customer_key)
        try:
            await self.feed.definition_changed(namespace, "customer", customer_key)
        except (RedisError, OSError) as exc:
            log.warning("hot.definition_notice_failed", customer_key=customer_key, error=str(exc))

    async def entitlement_changed(self, namespace: str, entitlement_id: str) -> None:
        """Reload the entitlement here, tell the other replicas, and rebuild its state: until the new
        state is installed, every replica answers its checks from the truth (the state is marked as
        being rebuilt), so a new grant or a reset counts from the moment it is committed."""
        await self._reload_entitlement(namespace, entitlement_id)
        found = self.index.by_id(entitlement_id)
        try:
            metered = found is not None and found.kind is EntitlementKind.METERED
            generation = 0
            if metered:
                generation, _ = await self.hot.begin_rebuild(namespace, entitlement_id)  # voids earlier ones
                self.memory.outdate(entitlement_id, generation)
            await self.feed.definition_changed(namespace, "entitlement", entitlement_id, generation)
            if metered:
                self.schedule_rebuild(namespace, entitlement_id)
        except (RedisError, OSError) as exc:
            log.warning("hot.definition_notice_failed", entitlement_id=entitlement_id, error=str(exc))

    async def _definition_notice(self, namespace: str, kind: str, key: str, generation: int) -> None:
        if kind == "customer":
            await self._reload_customer(namespace, key)
        else:
            self.memory.outdate(key, generation)
            await self._reload_entitlement(namespace, key)

    async def _reload_customer(self, namespace: str, customer_key: str) -> None:
        customer = await self._store.customers.get(namespace, customer_key)
        if customer is None:
            self.index.remove_customer(namespace, customer_key)
        else:
            self.index.put_customer(namespace, customer.key, customer.subject_keys)

    async def _reload_entitlement(self, namespace: str, entitlement_id: str) -> None:
        entitlement = await self._store.entitlements.get(namespace, entitlement_id)
        if entitlement is None or entitlement.delete_time is not None:
            self.index.remove_entitlement(entitlement_id)
            self.memory.put(entitlement_id, None)
        else:
            self.index.put_entitlement(hot_entitlement(namespace, entitlement))
