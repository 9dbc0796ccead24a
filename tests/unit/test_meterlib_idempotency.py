"""Idempotency by request id, over fake stores: a retry gets the first answer, another request with the same
id is refused, and a call that loses a race to a concurrent one with the same id answers what it did."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from meterlib.errors import AlreadyExists, FailedPrecondition
from meterlib.idempotency import (
    JsonCodec,
    RecordedRequest,
    RequestIds,
    RequestIdTaken,
    fingerprint,
)
from meterlib.money import Money
from meterlib.periods import Cadence
from meterlib.stores import RequestIdStore

AT = datetime(2025, 3, 1, tzinfo=UTC)
NUMBER: JsonCodec[int] = JsonCodec(lambda n: {"n": n}, lambda d: int(d["n"]))


class FakeRequestIds:
    """Request ids in a dict; a second insert of the same id is taken."""

    def __init__(self, rows: dict[tuple[str, str], RecordedRequest] | None = None) -> None:
        self.rows = dict(rows or {})

    async def get(self, namespace: str, request_id: str) -> RecordedRequest | None:
        return self.rows.get((namespace, request_id))

    async def insert(self, namespace: str, request_id: str, recorded: RecordedRequest, at: datetime) -> None:
        if (namespace, request_id) in self.rows:
            raise RequestIdTaken(f"request_id {request_id!r} is being used by a concurrent call")
        self.rows[(namespace, request_id)] = recorded


class FakeStores:
    def __init__(self, request_ids: FakeRequestIds) -> None:
        self.request_ids = request_ids


class FakeDatabase(FakeStores):
    """Transactions see a copy of the rows, kept only when the block ends without an error."""

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeStores]:
        staged = FakeRequestIds(self.request_ids.rows)
        yield FakeStores(staged)
        self.request_ids.rows = staged.rows


async def test_a_retry_answers_what_the_first_call_answered() -> None:
    db = FakeDatabase(FakeRequestIds())
    ids = RequestIds(db)
    calls = []

    async def change(tx: FakeStores) -> int:
        calls.append(tx)
        return 42

    assert await ids.recorded("ns", "r1", "Create", "fp", NUMBER) is None
    assert await ids.run("ns", "r1", "Create", "fp", AT, change, NUMBER) == 42
    assert db.request_ids.rows[("ns", "r1")] == RecordedRequest("Create", "fp", {"n": 42})
    assert await ids.recorded("ns", "r1", "Create", "fp", NUMBER) == 42
    assert await ids.recorded("other", "r1", "Create", "fp", NUMBER) is None
    assert len(calls) == 1


@pytest.mark.parametrize(("method", "digest"), [("Create", "another"), ("Update", "fp")])
async def test_a_request_id_used_for_another_request_is_refused(method: str, digest: str) -> None:
    db = FakeDatabase(FakeRequestIds({("ns", "r1"): RecordedRequest("Create", "fp", {"n": 1})}))
    with pytest.raises(AlreadyExists) as caught:
        await RequestIds(db).recorded("ns", "r1", method, digest, NUMBER)
    assert caught.value.reason == "ERROR_REASON_IDEMPOTENCY_KEY_REUSED"
    assert caught.value.metadata == {"request_id": "r1"}
    assert str(caught.value) == "request_id 'r1' was already used for another request"


async def test_a_call_that_loses_the_race_answers_what_the_winner_recorded() -> None:
    db = FakeDatabase(FakeRequestIds())

    async def change(tx: FakeStores) -> int:
        # A concurrent call with the same request id commits first; this change then conflicts.
        db.request_ids.rows[("ns", "r1")] = RecordedRequest("Create", "fp", {"n": 7})
        raise FailedPrecondition("the winner's change made this one impossible")

    assert await RequestIds(db).run("ns", "r1", "Create", "fp", AT, change, NUMBER) == 7


async def test_a_failed_change_records_nothing_and_its_error_propagates() -> None:
    db = FakeDatabase(FakeRequestIds())

    async def change(tx: FakeStores) -> int:
        raise FailedPrecondition("no")

    with pytest.raises(FailedPrecondition):
        await RequestIds(db).run("ns", "r1", "Create", "fp", AT, change, NUMBER)
    assert db.request_ids.rows == {}


def test_the_fingerprint_is_of_the_request_as_sent() -> None:
    request: dict[str, Any] = {
        "amount": Decimal("1.50"),
        "price": Money(Decimal("2.0"), "EUR"),
        "at": AT,
        "every": Cadence(months=1),
        "tags": ("a", "b"),
    }
    same = dict(reversed(list(request.items())))
    same["amount"] = Decimal("1.5")
    assert fingerprint("Create", request) == fingerprint("Create", same)
    assert fingerprint("Create", request) != fingerprint("Update", request)
    assert fingerprint("Create", request) != fingerprint("Create", {**request, "amount": Decimal("1.51")})
    assert fingerprint("Create", {}) != fingerprint("Create", {"metadata": {}})


def test_the_request_id_table_is_named_by_a_plain_identifier() -> None:
    RequestIdStore(None, "billing.request_ids")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a table name"):
        RequestIdStore(None, "request_ids; DROP TABLE x")  # type: ignore[arg-type]
