"""The two readings of an event by a meter agree: the delta exists exactly when no error is reported."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.domain import Aggregation, Meter, ValidEvent
from ingest.evaluation import meter_error, parse_data, usage_delta

NOW = datetime(2024, 6, 15, tzinfo=UTC)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**40), 10**40)
    | st.text(max_size=5)
    | st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str)
    | st.decimals(allow_nan=False, allow_infinity=False, places=4),
    lambda children: (
        st.lists(children, max_size=2) | st.dictionaries(st.text(max_size=2), children, max_size=2)
    ),
    max_leaves=4,
)


def _meter(aggregation: Aggregation) -> Meter:
    value = "" if aggregation is Aggregation.COUNT else "$.v"
    return Meter("m", "m", "", "t", aggregation, value, {"g": "$.g"}, NOW, NOW)


@settings(deadline=None, max_examples=300)  # no per-example time limit on a loaded machine
@given(
    aggregation=st.sampled_from(list(Aggregation)),
    data=st.fixed_dictionaries({}, optional={"v": json_values, "g": json_values}),
)
def test_a_delta_exists_exactly_when_the_meter_reports_no_error(
    aggregation: Aggregation, data: dict[str, Any]
) -> None:
    text = json.dumps(data, default=str)
    parsed = parse_data(text)
    meter = _meter(aggregation)
    event = ValidEvent(0, "e", "s", "t", "subject", NOW, text, parsed)

    delta = usage_delta("ns", meter, event, parsed, event.time)

    assert (delta is None) == (meter_error(meter, parsed) is not None)
    if delta is not None and aggregation not in (Aggregation.COUNT, Aggregation.UNIQUE_COUNT):
        assert Decimal(delta.value) == Decimal(str(parsed["v"]))
