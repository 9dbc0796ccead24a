"""The hot states in Redis: the scripts that change them atomically, and reading them back.

Every key of a namespace carries the namespace as its hash tag, so that a script touching several
entitlements of one namespace runs on one Redis Cluster slot.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis

from entitlements.hot.scripts import script
from entitlements.hot.state import HotState, Segment, stored_time
from meterlib.money import format_decimal


class HotKeys:
    """Names of the hot path's Redis keys."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    def state(self, namespace: str, entitlement_id: str) -> str:
        return f"{self._prefix}ent:{{{namespace}}}:{entitlement_id}"

    def pending(self, namespace: str, entitlement_id: str) -> str:
        return f"{self._prefix}ent-pending:{{{namespace}}}:{entitlement_id}"

    def consumed(self, namespace: str, entitlement_id: str, generation: int) -> str:
        return f"{self._prefix}ent-consumed:{{{namespace}}}:{entitlement_id}:{generation}"

    def applied(self, namespace: str) -> str:
        return f"{self._prefix}usage-applied:{{{namespace}}}"

    def decision(self, namespace: str, idempotency_key: str) -> str:
        return f"{self._prefix}consume:{{{namespace}}}:{idempotency_key}"


@dataclass(frozen=True)
class UsageDelta:
    """One delta of a usage-stream message, as it concerns one entitlement."""

    time: datetime
    value: Decimal
    event_key: str
    maybe_consumption: bool = False
    """Whether the event may be the metering of a CheckAndConsume (then skipped if it was applied)."""


@dataclass
class EntitlementUsage:
    """The deltas of one message for one entitlement, split by where they fall in its segment."""

    entitlement_id: str
    generation: int
    segment_start: datetime
    segment_end: datetime | None
    period_start: datetime
    deltas: list[UsageDelta] = field(default_factory=list)

    def as_json(self) -> str:
        inc, late = Decimal(0), Decimal(0)
        consumptions: list[list[str]] = []
        for delta in self.deltas:
            if delta.maybe_consumption:
                consumptions.append([delta.event_key, format_decimal(delta.value)])
            elif self.segment_start <= delta.time and (
                self.segment_end is None or delta.time < self.segment_end
            ):
                inc += delta.value
            elif self.period_start <= delta.time < self.segment_start:
                late += delta.value
        raw = [[stored_time(d.time), format_decimal(d.value), d.event_key] for d in self.deltas]
        return json.dumps(
            {
                "gen": self.generation,
                "inc": format_decimal(inc),
                "late": format_decimal(late),
                "cons": consumptions,
                "raw": raw,
            },
            separators=(",", ":"),
        )


class ApplyOutcome(StrEnum):
    """What applying a message did."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"


@dataclass(frozen=True)
class ApplyResult:
    """Per entitlement: its new usage, or "seen" / "pending"; or the stale entitlement's index."""

    outcome: ApplyOutcome
    per_entitlement: dict[str, str] = field(default_factory=dict)
    stale_entitlement: str = ""


@dataclass(frozen=True)
class Decision:
    """A CheckAndConsume decision as stored under its idempotency key."""

    consumed: bool
    usage: Decimal
    fingerprint: str
    replayed: bool


class HotStore:
    """Reads and atomically changes hot states."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self.keys = HotKeys(prefix)
        self._apply = redis.register_script(script("apply"))
        self._install = redis.register_script(script("install"))
        self._consume = redis.register_script(script("consume"))
        self._unconsume = redis.register_script(script("unconsume"))
        self._begin_rebuild = redis.register_script(script("begin_rebuild"))
        self._metered = redis.register_script(script("metered"))

    async def read(self, namespace: str, entitlement_ids: list[str]) -> dict[str, HotState | None]:
        """The states of these entitlements (None where there is none), in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for entitlement_id in entitlement_ids:
                pipe.hgetall(self.keys.state(namespace, entitlement_id))
            results: list[dict[Any, Any]] = await pipe.execute()
        states: dict[str, HotState | None] = {}
        for entitlement_id, raw in zip(entitlement_ids, results, strict=True):
            fields = {_text(k): _text(v) for k, v in raw.items()}
            states[entitlement_id] = HotState.from_hash(fields) if "gen" in fields else None
        return states

    async def begin_rebuild(self, namespace: str, entitlement_id: str) -> tuple[int, str]:
        """Hold the entitlement's deltas back for the state being computed; the current generation and
        the token the install must carry (a later begin_rebuild voids it)."""
        token = uuid.uuid4().hex
        gen = await self._begin_rebuild(keys=[self.keys.state(namespace, entitlement_id)], args=[token])
        return int(gen), token

    async def install(
        self,
        namespace: str,
        entitlement_id: str,
        from_generation: int,
        segment: Segment,
        usage: Decimal,
        snapshot: str,
        token: str,
    ) -> HotState | None:
        """Install a state computed from the truth (QueryUsage read in ``snapshot``) over generation
        ``from_generation``, for the rebuild ``token`` began; None when another install came first or
        the definition changed since (the state is then stale: rebuild again)."""
        result = await self._install(
            keys=[
                self.keys.state(namespace, entitlement_id),
                self.keys.pending(namespace, entitlement_id),
                self.keys.consumed(namespace, entitlement_id, from_generation),
            ],
            args=[str(from_generation), json.dumps(segment.as_json(usage, snapshot)), token],
        )
        if _text(result[0]) != "installed":
            return None
        return HotState(int(_text(result[1])), segment, Decimal(_text(result[2])), snapshot)

    async def apply(
        self, namespace: str, message_id: str, tx: int, usages: list[EntitlementUsage]
    ) -> ApplyResult:
        """Apply one stream message's deltas to the entitlements they concern, once."""
        keys = [self.keys.applied(namespace)]
        for usage in usages:
            keys += [
                self.keys.state(namespace, usage.entitlement_id),
                self.keys.pending(namespace, usage.entitlement_id),
                self.keys.consumed(namespace, usage.entitlement_id, usage.generation),
            ]
        score = message_id.split("-", 1)[0]
        args = [message_id, score, str(tx), str(len(usages)), *(u.as_json() for u in usages)]
        result = [
            _text(r) if isinstance(r, bytes | str) else r for r in await self._apply(keys=keys, args=args)
        ]
        if result == ["duplicate"]:
            return ApplyResult(ApplyOutcome.DUPLICATE)
        if result and result[0] == "stale":
            return ApplyResult(
                ApplyOutcome.STALE, stale_entitlement=usages[int(result[1]) - 1].entitlement_id
            )
        return ApplyResult(
            ApplyOutcome.APPLIED, {u.entitlement_id: str(r) for u, r in zip(usages, result, strict=True)}
        )

    async def consume(
        self,
        namespace: str,
        entitlement_id: str,
        generation: int,
        amount: Decimal,
        *,
        idempotency_key: str,
        fingerprint: str,
        event_key: str,
        ttl_seconds: int,
    ) -> Decision | str:
        """Decide and apply a consumption atomically; a Decision, or "not_ready" / "stale"."""
        result = await self._consume(
            keys=[
                self.keys.state(namespace, entitlement_id),
                self.keys.consumed(namespace, entitlement_id, generation),
                self.keys.decision(namespace, idempotency_key),
            ],
            args=[str(generation), format_decimal(amount), fingerprint, event_key, str(ttl_seconds)],
        )
        kind = _text(result[0])
        if kind not in ("replay", "decided"):
            return kind
        decision = json.loads(_text(result[1]))
        return Decision(
            consumed=bool(decision["consumed"]),
            usage=Decimal(decision["u"]),
            fingerprint=decision["fingerprint"],
            replayed=kind == "replay",
        )

    async def consumption_metered(
        self, namespace: str, entitlement_id: str, generation: int, event_key: str
    ) -> None:
        """Note that a consumption's event is stored in ingest (so a rebuild's truth counts it)."""
        await self._metered(
            keys=[self.keys.consumed(namespace, entitlement_id, generation)], args=[event_key]
        )

    async def unmetered_consumptions(self, namespace: str, entitlement_id: str, generation: int) -> int:
        """How many consumptions of a generation still wait for their event to be stored."""
        values = await self._redis.hvals(self.keys.consumed(namespace, entitlement_id, generation))
        return sum(1 for v in values if _text(v) == "pending")

    async def unconsume(
        self,
        namespace: str,
        entitlement_id: str,
        generation: int,
        amount: Decimal,
        *,
        idempotency_key: str,
        event_key: str,
    ) -> bool:
        """Take back a consumption that could not be metered; whether usage was taken back."""
        taken = await self._unconsume(
            keys=[
                self.keys.state(namespace, entitlement_id),
                self.keys.consumed(namespace, entitlement_id, generation),
                self.keys.decision(namespace, idempotency_key),
            ],
            args=[str(generation), format_decimal(amount), event_key],
        )
        return bool(int(taken))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
