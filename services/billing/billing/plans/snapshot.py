"""A plan or add-on snapshot as storable JSON, and back: what a subscription keeps of its catalog versions.

The stored form is the catalog message in the proto3 JSON mapping (field names as in the .proto) plus the
meter references of the features its rate cards name, so that reading it back needs no catalog call and
yields an equal snapshot: ``plan_from_json(plan_to_json(p)) == p``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format

from billing.plans.convert import add_on_from_proto, plan_from_proto, rate_card_from_proto
from billing.plans.model import AddOnVersion, MeterRef, PlanVersion, RateCard
from metering.catalog.v1 import catalog_pb2 as pb


def plan_proto(plan: PlanVersion) -> pb.Plan:
    """The catalog Plan message the snapshot was made from."""
    return pb.Plan.FromString(plan.source)


def add_on_proto(add_on: AddOnVersion) -> pb.AddOn:
    """The catalog AddOn message the snapshot was made from."""
    return pb.AddOn.FromString(add_on.source)


def rate_card_proto(card: RateCard) -> pb.RateCard:
    """The catalog RateCard message (for SubscriptionItem.rate_card and InvoiceLine.price)."""
    return pb.RateCard.FromString(card.source)


def plan_to_json(plan: PlanVersion) -> dict[str, Any]:
    """A JSON-compatible dict of the plan version and its features' meters."""
    cards = (card for phase in plan.phases for card in phase.rate_cards)
    return {"plan": _to_dict(plan_proto(plan)), "features": _features_json(cards)}


def plan_from_json(data: dict[str, Any]) -> PlanVersion:
    """The snapshot :func:`plan_to_json` wrote."""
    plan = json_format.ParseDict(data["plan"], pb.Plan())
    return plan_from_proto(plan, _features(data["features"]))


def add_on_to_json(add_on: AddOnVersion) -> dict[str, Any]:
    """A JSON-compatible dict of the add-on version and its features' meters."""
    return {"add_on": _to_dict(add_on_proto(add_on)), "features": _features_json(add_on.rate_cards)}


def add_on_from_json(data: dict[str, Any]) -> AddOnVersion:
    """The snapshot :func:`add_on_to_json` wrote."""
    add_on = json_format.ParseDict(data["add_on"], pb.AddOn())
    return add_on_from_proto(add_on, _features(data["features"]))


def rate_card_to_json(card: RateCard) -> dict[str, Any]:
    """A JSON-compatible dict of one rate card and its feature's meter."""
    return {"rate_card": _to_dict(rate_card_proto(card)), "features": _features_json([card])}


def rate_card_from_json(data: dict[str, Any]) -> RateCard:
    """The rate card :func:`rate_card_to_json` wrote."""
    card = json_format.ParseDict(data["rate_card"], pb.RateCard())
    return rate_card_from_proto(card, _features(data["features"]))


def _to_dict(message: Any) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return result


def _features_json(cards: Iterable[RateCard]) -> list[dict[str, Any]]:
    meters: dict[str, MeterRef] = {card.meter.feature_key: card.meter for card in cards if card.meter}
    return [
        {"key": m.feature_key, "meter_key": m.meter_key, "meter_group_filters": dict(m.group_filters)}
        for _, m in sorted(meters.items())
    ]


def _features(rows: list[dict[str, Any]]) -> dict[str, pb.Feature]:
    return {
        row["key"]: pb.Feature(
            key=row["key"], meter_key=row["meter_key"], meter_group_filters=row["meter_group_filters"]
        )
        for row in rows
    }
