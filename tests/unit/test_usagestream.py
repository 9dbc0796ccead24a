"""The usage stream's message codec: what ingest encodes, consumers decode unchanged."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterlib.usagestream import (
    StreamDelta,
    StreamMessage,
    TxSnapshot,
    decode_message,
    encode_delta,
    encode_message,
)

_text = st.text(max_size=20)
_times = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))


@given(
    delta=st.builds(
        StreamDelta,
        namespace=_text,
        meter=_text,
        subject=_text,
        group_values=st.dictionaries(_text, _text, max_size=3),
        time=_times,
        value=_text,
        event_key=_text,
        ingest_time=_times,
    )
)
def test_a_delta_round_trips(delta: StreamDelta) -> None:
    encoded = encode_delta(delta)
    assert json.loads(encoded)["event"] == delta.event_key  # valid JSON, whatever the strings hold
    assert decode_message(encode_message(7, f"[{encoded},{encoded}]")) == StreamMessage(7, [delta, delta])


def test_the_wire_format_is_the_documented_one() -> None:
    at = datetime(2024, 6, 15, 12, tzinfo=UTC)
    delta = StreamDelta("acme", "tokens", "c1", {"model": "gpt-4"}, at, "0.5", "2:gwe1", at)
    assert json.loads(encode_delta(delta)) == {
        "ns": "acme",
        "meter": "tokens",
        "subject": "c1",
        "groups": {"model": "gpt-4"},
        "time": "2024-06-15T12:00:00Z",
        "value": "0.5",
        "event": "2:gwe1",
        "ingested": "2024-06-15T12:00:00Z",
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"v": "2", "deltas": "[]"},
        {"v": "1"},
        {"v": "1", "deltas": "{"},
        {"v": "1", "deltas": '[{"ns": "a"}]'},
    ],
)
def test_anything_else_is_refused(fields: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        decode_message(fields)


def test_bytes_from_redis_decode_too() -> None:
    at = datetime(2024, 6, 15, 12, tzinfo=UTC)
    delta = StreamDelta("acme", "calls", "c1", {}, at, "1", "2:gwe1", at)
    fields = {k.encode(): v.encode() for k, v in encode_message(12, f"[{encode_delta(delta)}]").items()}
    assert decode_message(fields) == StreamMessage(12, [delta])


def test_a_snapshot_sees_what_committed_before_it() -> None:
    snapshot = TxSnapshot.parse("100:110:102,105")
    assert [tx for tx in range(95, 115) if snapshot.sees(tx)] == [*range(95, 102), 103, 104, *range(106, 110)]
    assert TxSnapshot.parse("7:7:") == TxSnapshot(7, 7, frozenset())


@pytest.mark.parametrize("text", ["", "1:2", "a:b:", "5:4:", "1:5:9", "1:5:0"])
def test_a_malformed_snapshot_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        TxSnapshot.parse(text)
