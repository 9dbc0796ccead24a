"""Responses as JSON, for what request ids keep: amounts are decimal strings, instants ISO 8601, so that
every round trip is exact. Each RPC keyed by a request id has a :class:`Codec` of its response here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from billing.domain import Credit
from meterlib.money import format_decimal

T = TypeVar("T")


@dataclass(frozen=True)
class Codec(Generic[T]):
    """How one kind of response is kept as JSON."""

    to_json: Callable[[T], dict[str, Any]]
    from_json: Callable[[dict[str, Any]], T]


def _time(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def credit_to_json(c: Credit) -> dict[str, Any]:
    """The credit as JSON."""
    return {
        "id": c.id,
        "customer_key": c.customer_key,
        "currency": c.currency,
        "amount": format_decimal(c.amount),
        "balance": format_decimal(c.balance),
        "priority": c.priority,
        "effective_at": c.effective_at.isoformat(),
        "create_time": c.create_time.isoformat(),
        "expires_at": _time(c.expires_at),
        "description": c.description,
        "void_time": _time(c.void_time),
    }


def credit_from_json(d: dict[str, Any]) -> Credit:
    """The inverse of :func:`credit_to_json`."""
    return Credit(
        id=d["id"],
        customer_key=d["customer_key"],
        currency=d["currency"],
        amount=Decimal(d["amount"]),
        balance=Decimal(d["balance"]),
        priority=d["priority"],
        effective_at=datetime.fromisoformat(d["effective_at"]),
        create_time=datetime.fromisoformat(d["create_time"]),
        expires_at=_parse_time(d["expires_at"]),
        description=d["description"],
        void_time=_parse_time(d["void_time"]),
    )


CREDIT: Codec[Credit] = Codec(credit_to_json, credit_from_json)
"""The response of CreateCredit."""
