"""Idempotency by ``request_id`` for billing's RPCs: ``meterlib.idempotency.RequestIds`` over billing's
stores. A retry answers what the first call answered, another request with the same id is ALREADY_EXISTS
(ERROR_REASON_IDEMPOTENCY_KEY_REUSED); each RPC brings the codec of its response (``billing.store.codec``).
"""

from __future__ import annotations

from billing.store import Stores
from meterlib import idempotency


class RequestIds(idempotency.RequestIds[Stores]):
    """Runs billing's state changes keyed by request ids."""
