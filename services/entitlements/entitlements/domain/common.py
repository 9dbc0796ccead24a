"""Rules every entitlements resource shares: keys, ids, request ids, labels, references and fingerprints.

Field paths name proto fields exactly as ``metering.entitlements.v1`` spells them, with indices for
repeated fields and ``[key]`` for map entries: ``customer.subject_keys[3]``, ``grant.metadata[team]``.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from meterlib.errors import FieldViolation, Violations
from meterlib.money import format_decimal
from meterlib.periods import Cadence

KEY_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
KEY_RULE: Final = "must be 1-64 characters of a-z, 0-9, '_' or '-', starting with a letter or digit"
MAX_REQUEST_ID: Final = 128
MAX_METADATA: Final = 32
MAX_METADATA_KEY: Final = 64
MAX_METADATA_VALUE: Final = 512
MAX_PRIORITY: Final = 255
DEFAULT_PRIORITY: Final = 1


class Collector(Violations):
    """Violations of one request, starting with what could not even be decoded from the wire.

    A value that could not be decoded reaches the domain as ``None``; a rule about the same field (or a
    field inside it) would only repeat the problem, so it is dropped. Every other rule still reports.
    """

    def __init__(self, decode_violations: Iterable[FieldViolation] = ()) -> None:
        super().__init__()
        self._undecodable = tuple(decode_violations)
        self.items.extend(self._undecodable)

    def add(self, field: str, description: str) -> None:
        """Record one violation unless it concerns a field that could not be decoded."""
        if not any(field == d.field or field.startswith(d.field + ".") for d in self._undecodable):
            super().add(field, description)


def check_key(v: Violations, key: str, path: str) -> None:
    """A natural key: 1-64 characters of a-z, 0-9, '_' or '-'."""
    if not key:
        v.add(path, "is required")
    elif not KEY_PATTERN.match(key):
        v.add(path, KEY_RULE)


def check_request_id(v: Violations, request_id: str, path: str = "request_id") -> None:
    """A client-supplied idempotency key: 1-128 printable ASCII characters."""
    if not request_id:
        v.add(path, "is required")
    elif len(request_id) > MAX_REQUEST_ID or not (request_id.isascii() and request_id.isprintable()):
        v.add(path, f"must be 1 to {MAX_REQUEST_ID} printable ASCII characters")


def canonical_id(text: str) -> str | None:
    """The canonical (lower-case, hyphenated) form of a UUID, or None when ``text`` is not one."""
    if len(text) != 36:
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def check_id(v: Violations, text: str, path: str) -> None:
    """A server-assigned id: a UUID."""
    if not text:
        v.add(path, "is required")
    elif canonical_id(text) is None:
        v.add(path, "must be a UUID, as the server assigned it")


def check_metadata(v: Violations, metadata: Mapping[str, str], path: str) -> None:
    """Free-form labels: at most 32 entries, keys 1-64 and values up to 512 characters."""
    if len(metadata) > MAX_METADATA:
        v.add(path, f"must have at most {MAX_METADATA} entries")
    for key, value in sorted(metadata.items()):
        where = f"{path}[{key}]"
        if not 1 <= len(key) <= MAX_METADATA_KEY or "\x00" in key:
            v.add(where, f"keys must be 1 to {MAX_METADATA_KEY} characters without NUL")
        if len(value) > MAX_METADATA_VALUE:
            v.add(where, f"values must be at most {MAX_METADATA_VALUE} characters")
        elif "\x00" in value:
            v.add(where, "values must not contain NUL characters")


def check_priority(v: Violations, priority: int, path: str) -> None:
    """A burn-down priority on the wire: 0 (the default of 1) to 255."""
    if not 0 <= priority <= MAX_PRIORITY:
        v.add(path, f"must be 0 (the default of {DEFAULT_PRIORITY}) to {MAX_PRIORITY}")


@dataclass(frozen=True)
class EntitlementRef:
    """An entitlement named by id (deleted ones included) or by (customer, feature) for the active one."""

    entitlement_id: str = ""
    customer_key: str = ""
    feature_key: str = ""
    by_id: bool = False
    given: bool = True
    """False when the request left the reference unset."""

    @classmethod
    def of_id(cls, entitlement_id: str) -> EntitlementRef:
        """A reference by id."""
        return cls(entitlement_id=entitlement_id, by_id=True)

    @classmethod
    def of_pair(cls, customer_key: str, feature_key: str) -> EntitlementRef:
        """A reference to the active entitlement of a customer to a feature."""
        return cls(customer_key=customer_key, feature_key=feature_key)

    @classmethod
    def missing(cls) -> EntitlementRef:
        """No reference given."""
        return cls(given=False)

    def check(self, v: Violations, path: str) -> None:
        """Record what is wrong with the reference at ``path`` (e.g. ``entitlement``)."""
        if not self.given:
            v.add(path, "is required: an entitlement_id or a customer_feature")
        elif self.by_id:
            check_id(v, self.entitlement_id, f"{path}.entitlement_id")
        else:
            check_key(v, self.customer_key, f"{path}.customer_feature.customer_key")
            check_key(v, self.feature_key, f"{path}.customer_feature.feature_key")

    def describe(self) -> str:
        """The reference in words, for messages."""
        if self.by_id:
            return f"entitlement {self.entitlement_id!r}"
        return f"the active entitlement of customer {self.customer_key!r} to feature {self.feature_key!r}"


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format_decimal(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Cadence):
        return value.to_iso()
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def fingerprint(method: str, request: Mapping[str, Any]) -> str:
    """A digest of a request as sent (unset fields stay unset), to tell a retry from another request."""
    text = json.dumps(
        {"method": method, "request": _canonical(request)}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(text.encode()).hexdigest()
