"""Which fields differ between two versions of a resource, as field paths (``phases[1].rate_cards[0].price``).

Both sides are compared in their canonical wire form (``catalog.convert.to_proto_…``), so a difference is
one a user could see in an export. Amounts, decimals and times are compared whole (``price.unit.amount``,
not ``price.unit.amount.amount``); a price or template that changed its model is reported at the price or
template; list items are compared position by position (order is content: the rate cards of a phase are
invoiced in their order), an item only one side has is reported at its index; map entries by key.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

OUTPUT_ONLY: Final = frozenset(
    {"version", "status", "effective_from", "effective_to", "create_time", "update_time", "archive_time"}
)
"""Fields of Feature, Plan and AddOn that a document does not set (``effective_from`` is compared apart)."""
_WHOLE: Final = frozenset(
    {"metering.common.v1.Money", "metering.common.v1.Decimal", "google.protobuf.Timestamp"}
)


def changed_fields(old: Message, new: Message, *, ignore: Collection[str] = OUTPUT_ONLY) -> list[str]:
    """Paths of the fields of ``new`` that differ from ``old`` (same message type), top-level ``ignore``
    fields left out."""
    found: list[str] = []
    _compare(old, new, "", found, ignore)
    return found


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _compare(old: Message, new: Message, path: str, found: list[str], ignore: Collection[str] = ()) -> None:
    descriptor = old.DESCRIPTOR
    for oneof in descriptor.oneofs:
        if old.WhichOneof(oneof.name) != new.WhichOneof(oneof.name):
            found.append(path or oneof.name)
    for field in descriptor.fields:
        if field.name in ignore:
            continue
        where = _join(path, field.name)
        if field.containing_oneof is not None and old.WhichOneof(
            field.containing_oneof.name
        ) != new.WhichOneof(field.containing_oneof.name):
            continue  # reported at the message holding the oneof
        a, b = getattr(old, field.name), getattr(new, field.name)
        message_type = field.message_type
        if message_type is not None and message_type.GetOptions().map_entry:
            for key in sorted(set(a) | set(b), key=str):
                if key not in a or key not in b or a[key] != b[key]:
                    found.append(f"{where}[{key}]")
        elif field.is_repeated:
            if message_type is None or message_type.full_name in _WHOLE:
                if list(a) != list(b):
                    found.append(where)
                continue
            for index in range(max(len(a), len(b))):
                if index >= len(a) or index >= len(b):
                    found.append(f"{where}[{index}]")
                else:
                    _compare(a[index], b[index], f"{where}[{index}]", found)
        elif message_type is not None and field.type == FieldDescriptor.TYPE_MESSAGE:
            present = old.HasField(field.name), new.HasField(field.name)
            if present[0] != present[1] or (message_type.full_name in _WHOLE and a != b):
                found.append(where)
            elif all(present) and message_type.full_name not in _WHOLE:
                _compare(a, b, where, found)
        elif a != b:
            found.append(where)
