"""Checks the plain values of a document against the proto messages they spell, before ParseDict reads them.

``json_format.ParseDict`` stops at the first problem and names it in prose. This walk reports every problem
at once, each at its own field path (``document.plans[0].phases[1].rate_cards[2].price.unit.amount``):
unknown fields (with the closest known name), values of the wrong kind, unknown enum names, several
members of one oneof, one field given under both its names. What it cannot use is left out, and list
items are kept in place (as empty values) so that the indices of every later item stay those of the
document. The result uses each field's proto name and reads with ParseDict.

Two conveniences over the proto3 JSON mapping, both harmless: numbers are accepted wherever a decimal
string is expected (they arrive as their exact text, see :mod:`.source`), and a oneof member that is a
message may be given as null or nothing (``boolean:``), meaning its empty message.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable
from typing import Any, Final

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.timestamp_pb2 import Timestamp

from meterlib.errors import FieldViolation

_INTEGER: Final = re.compile(r"-?[0-9]+")
_INT_RANGES: Final = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_EXAMPLES: Final = {
    "metering.common.v1.Money": 'a mapping such as {amount: "20", currency: USD}',
    "metering.common.v1.Decimal": 'a mapping such as {value: "1000"}',
}


class _Drop:
    """A value that cannot be used: the field is left out."""


_DROP: Final = _Drop()


class SchemaCheck:
    """One walk over a document's values, collecting violations: the first ``limit`` of them, counting
    the rest in ``omitted`` without describing them (a description may cost a fuzzy name search)."""

    def __init__(self, limit: int | None = None) -> None:
        self.violations: list[FieldViolation] = []
        self.limit = limit
        self.omitted = 0

    def add(self, path: str, description: str | Callable[[], str]) -> None:
        """Record one problem."""
        if self.limit is not None and len(self.violations) >= self.limit:
            self.omitted += 1
        else:
            text = description if isinstance(description, str) else description()
            self.violations.append(FieldViolation(path, text))

    def message(self, value: Any, descriptor: Descriptor, path: str) -> dict[str, Any] | None:
        """``value`` as ParseDict reads it for ``descriptor``; None (and a violation) if not a mapping."""
        if not isinstance(value, dict):
            self.add(path, f"must be {_expected(descriptor)}, not {_kind(value)}")
            return None
        fields: dict[str, FieldDescriptor] = {}
        for field in descriptor.fields:
            fields[field.name] = field
            fields[field.json_name] = field
        clean: dict[str, Any] = {}
        given_as: dict[str, str] = {}
        for name, raw in value.items():
            known = fields.get(name)
            if known is None:
                self.add(f"{path}.{name}", functools.partial(_unknown, name, descriptor))
                continue
            field = known
            where = f"{path}.{field.name}"
            if field.name in given_as:
                self.add(where, f"is given twice, as {given_as[field.name]!r} and as {name!r}")
                continue
            given_as[field.name] = name
            checked = self._field(field, raw, where)
            if checked is not _DROP:
                clean[field.name] = checked
        for oneof in descriptor.oneofs:
            present = [f.name for f in oneof.fields if clean.get(f.name) is not None]
            if len(present) > 1:
                allowed = ", ".join(f.name for f in oneof.fields)
                self.add(path, f"must have one {oneof.name} only ({allowed}), not {' and '.join(present)}")
                for name in present:
                    del clean[name]
        return clean

    def _field(self, field: FieldDescriptor, raw: Any, path: str) -> Any:
        if raw is None:
            # null means "not given" in the JSON mapping; for a oneof member message it selects the member.
            in_oneof = field.containing_oneof is not None and field.message_type is not None
            return {} if in_oneof and not _is_map(field) else None
        if _is_map(field):
            if not isinstance(raw, dict):
                self.add(path, f"must be a mapping of names to values, not {_kind(raw)}")
                return _DROP
            value_field = _message_type(field).fields_by_name["value"]
            entries = {}
            for key, item in raw.items():
                checked = self._single(value_field, item, f"{path}[{key}]")
                if checked is not _DROP and checked is not None:
                    entries[key] = checked
            return entries
        if field.is_repeated:
            if not isinstance(raw, list):
                self.add(path, f"must be a list, not {_kind(raw)}")
                return _DROP
            items = []
            for index, item in enumerate(raw):
                where = f"{path}[{index}]"
                checked = _DROP if item is None else self._single(field, item, where)
                if item is None:
                    self.add(where, "must not be null")
                if checked is _DROP:  # keep the place, so that later items keep their document index
                    checked = {} if field.message_type is not None else _placeholder(field)
                items.append(checked)
            return items
        return self._single(field, raw, path)

    def _single(self, field: FieldDescriptor, raw: Any, path: str) -> Any:
        kind = field.type
        if raw is None:
            self.add(path, "must not be null")
            return _DROP
        if kind == FieldDescriptor.TYPE_MESSAGE:
            descriptor = _message_type(field)
            if descriptor.full_name == Timestamp.DESCRIPTOR.full_name:
                return self._timestamp(raw, path)
            checked = self.message(raw, descriptor, path)
            return _DROP if checked is None else checked
        if kind == FieldDescriptor.TYPE_ENUM:
            return self._enum(_enum_type(field), raw, path)
        if kind == FieldDescriptor.TYPE_BOOL:
            if isinstance(raw, bool):
                return raw
            self.add(path, f"must be true or false, not {_kind(raw)}")
            return _DROP
        if kind in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
            if isinstance(raw, str):
                return raw
            self.add(path, f"must be a string, not {_kind(raw)}")
            return _DROP
        if kind in _INT_RANGES:
            low, high = _INT_RANGES[kind]
            text = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
            text = text if isinstance(text, str) else None
            if text is not None and _INTEGER.fullmatch(text) and low <= int(text) <= high:
                return int(text)
            self.add(path, f"must be a whole number from {low} to {high}")
            return _DROP
        try:  # float and double: none in the catalog, but the walk stays general
            return float(raw)
        except (TypeError, ValueError):
            self.add(path, f"must be a number, not {_kind(raw)}")
            return _DROP

    def _timestamp(self, raw: Any, path: str) -> Any:
        if isinstance(raw, str):
            try:
                Timestamp().FromJsonString(raw)
                return raw
            except ValueError:
                pass
        self.add(path, 'must be an RFC 3339 time with a zone, e.g. "2025-01-01T00:00:00Z"')
        return _DROP

    def _enum(self, enum: EnumDescriptor, raw: Any, path: str) -> Any:
        if isinstance(raw, str):
            if raw in enum.values_by_name:
                return raw
            if _INTEGER.fullmatch(raw) and int(raw) in enum.values_by_number:
                return enum.values_by_number[int(raw)].name
        self.add(path, lambda: _bad_enum(enum, raw))
        return _DROP


def _bad_enum(enum: EnumDescriptor, raw: Any) -> str:
    names = [v.name for v in enum.values if v.number != 0]
    close = difflib.get_close_matches(str(raw).upper(), names, n=1, cutoff=0.5)
    close = close or [n for n in names if isinstance(raw, str) and n.endswith("_" + raw.upper())]
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"must be one of {', '.join(names)}, not {raw!r}{hint}"


def _is_map(field: FieldDescriptor) -> bool:
    message = field.message_type
    return message is not None and message.GetOptions().map_entry


def _message_type(field: FieldDescriptor) -> Descriptor:
    if field.message_type is None:
        raise TypeError(f"{field.full_name} is not a message field")
    return field.message_type


def _enum_type(field: FieldDescriptor) -> EnumDescriptor:
    if field.enum_type is None:
        raise TypeError(f"{field.full_name} is not an enum field")
    return field.enum_type


def _placeholder(field: FieldDescriptor) -> Any:
    if field.type == FieldDescriptor.TYPE_BOOL:
        return False
    if field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        return ""
    if field.type == FieldDescriptor.TYPE_ENUM:
        return _enum_type(field).values[0].name
    return 0


def _expected(descriptor: Descriptor) -> str:
    return _EXAMPLES.get(descriptor.full_name, f"a mapping of {descriptor.name} fields")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) <= 40 else "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _unknown(name: str, descriptor: Descriptor) -> str:
    names = [f.name for f in descriptor.fields]
    close = difflib.get_close_matches(name, names + [f.json_name for f in descriptor.fields], n=1, cutoff=0.6)
    if close:
        field = descriptor.fields_by_name.get(close[0]) or descriptor.fields_by_camelcase_name[close[0]]
        return f"unknown field; did you mean {field.name!r}?"
    return f"unknown field of {descriptor.name}; its fields are {', '.join(names)}"
