"""How a version's content is kept in a jsonb column: the proto3 JSON mapping of its message.

The wire format is already the catalog's one exact, versioned serialisation of every price model,
template and adjustment (amounts as decimal strings, never floats), and ``buf breaking`` guards it, so
stored content stays readable as the API evolves. Lifecycle fields (version, times) live in columns.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from catalog import convert
from catalog.domain import AddOn, CreateAddOnInput, CreatePlanInput, Plan, RateCard
from metering.catalog.v1 import catalog_pb2 as pb


def plan_content(plan: Plan) -> dict[str, Any]:
    """The JSON of a plan version's content (name, description, currency, cadence, phases, metadata)."""
    message = pb.Plan(
        name=plan.name,
        description=plan.description,
        currency=plan.currency,
        billing_cadence=plan.billing_cadence.to_iso(),
        phases=[convert.to_proto_phase(phase) for phase in plan.phases],
        metadata=plan.metadata,
    )
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def add_on_content(add_on: AddOn) -> dict[str, Any]:
    """The JSON of an add-on version's content (everything but key, version and lifecycle)."""
    full = convert.to_proto_add_on(add_on, add_on.create_time)
    message = pb.AddOn(
        name=full.name,
        description=full.description,
        currency=full.currency,
        instance_type=full.instance_type,
        rate_cards=full.rate_cards,
        compatible_plan_keys=full.compatible_plan_keys,
        metadata=full.metadata,
    )
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


class UnreadableContent(RuntimeError):
    """Stored content that does not decode: a bug or a damaged row, never the caller's mistake."""


def read_plan_content(key: str, content: dict[str, Any]) -> CreatePlanInput:
    """The content of a stored plan version."""
    message = json_format.ParseDict(content, pb.Plan(), ignore_unknown_fields=False)
    message.key = key
    decoded = convert.from_proto_plan_input(message)
    if decoded.decode_violations or decoded.billing_cadence is None:
        raise UnreadableContent(f"stored plan {key!r} does not decode: {decoded.decode_violations}")
    return decoded


def read_add_on_content(key: str, content: dict[str, Any]) -> CreateAddOnInput:
    """The content of a stored add-on version."""
    message = json_format.ParseDict(content, pb.AddOn(), ignore_unknown_fields=False)
    message.key = key
    decoded = convert.from_proto_add_on_input(message)
    if decoded.decode_violations:
        raise UnreadableContent(f"stored add-on {key!r} does not decode: {decoded.decode_violations}")
    return decoded


def feature_keys(cards: list[RateCard]) -> list[str]:
    """The distinct features the rate cards reference, sorted (the ``feature_keys`` column)."""
    return sorted({card.feature_key for card in cards if card.feature_key})
