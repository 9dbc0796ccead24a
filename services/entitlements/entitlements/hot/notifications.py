"""Threshold and reset notifications for webhooks, published once each on a Redis Stream.

Whichever replica moves a usage across a threshold publishes it; a ``SET NX`` guard per
(entitlement, usage period, threshold) keeps a second replica, or a retried message, from publishing it
again. Consumers of ``{prefix}entitlement-events`` (the notification work to come) read it with their own
group.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from redis.asyncio import Redis

from entitlements.burndown import Threshold, ThresholdKind, UsageLevel, crossed_thresholds
from entitlements.hot.index import HotEntitlement
from entitlements.hot.state import HotState, stored_time
from meterlib.money import format_decimal
from meterlib.usagestream import rfc3339

THRESHOLD_EVENT = "entitlement.threshold"
RESET_EVENT = "entitlement.reset"


def _level(state: HotState) -> UsageLevel:
    return UsageLevel(state.period_usage, state.segment.granted, state.balance)


class Notifier:
    """Publishes each threshold crossing and reset once."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        percents: Sequence[Decimal],
        stream: str = "entitlement-events",
        guard_ttl_seconds: int = 400 * 86400,
        max_len: int = 100_000,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._stream = prefix + stream
        self._percents = tuple(percents)
        self._guard_ttl = guard_ttl_seconds
        self._max_len = max_len

    async def usage_changed(
        self, entitlement: HotEntitlement, before: HotState | None, after: HotState, at: datetime
    ) -> list[Threshold]:
        """Publish the thresholds this change crossed; the ones published by this call."""
        same_period = before is not None and before.segment.period_start == after.segment.period_start
        previous = _level(before) if before is not None and same_period else None
        published = []
        for threshold in crossed_thresholds(previous, _level(after), self._percents):
            name = (
                threshold.kind.value
                if threshold.kind is ThresholdKind.ZERO_BALANCE
                else f"{threshold.percent}%"
            )
            event = {
                "type": THRESHOLD_EVENT,
                "threshold": name,
                "usage": format_decimal(after.period_usage),
                "balance": format_decimal(after.balance),
                "granted": format_decimal(after.segment.granted),
            }
            if await self._once(entitlement, after.segment.period_start, name, event, at):
                published.append(threshold)
        return published

    async def reset(self, entitlement: HotEntitlement, period_start: datetime, at: datetime) -> bool:
        """Publish a reset (a new usage period) once; whether this call published it."""
        return await self._once(entitlement, period_start, "reset", {"type": RESET_EVENT}, at)

    async def _once(
        self,
        entitlement: HotEntitlement,
        period_start: datetime,
        name: str,
        event: dict[str, str],
        at: datetime,
    ) -> bool:
        guard = f"{self._prefix}notified:{{{entitlement.namespace}}}:{entitlement.id}:{stored_time(period_start)}:{name}"
        if not await self._redis.set(guard, "1", nx=True, ex=self._guard_ttl):
            return False
        fields: dict[Any, Any] = {
            "ns": entitlement.namespace,
            "entitlement_id": entitlement.id,
            "customer_key": entitlement.customer_key,
            "feature_key": entitlement.feature_key,
            "period_start": rfc3339(period_start),
            "time": rfc3339(at),
            **event,
        }
        await self._redis.xadd(
            self._stream,
            {"event": json.dumps(fields, sort_keys=True)},
            maxlen=self._max_len,
            approximate=True,
        )
        return True
