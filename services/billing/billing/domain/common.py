"""Rules every billing resource shares: keys, ids, request ids, labels, bounded text and fingerprints.

Field paths name proto fields exactly as ``metering.billing.v1`` spells them, with indices for repeated
fields and ``[key]`` for map entries: ``customer.subject_keys[3]``, ``customer.metadata[team]``.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, TypeVar

from meterlib.errors import FieldViolation, InvalidArgument, Violations
from meterlib.money import Money, format_decimal

T = TypeVar("T")

KEY_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
KEY_RULE: Final = "must be 1-64 characters of a-z, 0-9, '_' or '-', starting with a letter or digit"
MAX_REQUEST_ID: Final = 128
MAX_METADATA: Final = 32
MAX_METADATA_KEY: Final = 64
MAX_METADATA_VALUE: Final = 512


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

    def absorb(self, read: Callable[[], T]) -> T | None:
        """``read()``, or None with its field violations recorded when it raises InvalidArgument."""
        try:
            return read()
        except InvalidArgument as exc:
            for violation in exc.violations:
                self.add(violation.field, violation.description)
            return None


def check_key(v: Violations, key: str, path: str) -> None:
    """A natural key: 1-64 characters of a-z, 0-9, '_' or '-'."""
    if not key:
        v.add(path, "is required")
    elif not KEY_PATTERN.match(key):
        v.add(path, KEY_RULE)


def require_key(key: str, path: str = "key") -> None:
    """Raise InvalidArgument unless ``key`` is a natural key (the one field of Get/Delete requests)."""
    v = Violations()
    check_key(v, key, path)
    v.raise_if_any()


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


def require_id(text: str, path: str) -> str:
    """The canonical form of a server-assigned id; InvalidArgument naming ``path`` unless it is a UUID."""
    v = Violations()
    canonical = canonical_id(text)
    if not text:
        v.add(path, "is required")
    elif canonical is None:
        v.add(path, "must be a UUID, as the server assigned it")
    v.raise_if_any()
    assert canonical is not None
    return canonical


def check_text(v: Violations, text: str, path: str, maximum: int, *, required: bool = False) -> None:
    """Free text of at most ``maximum`` characters, without NUL (PostgreSQL cannot store it)."""
    if required and not text.strip():
        v.add(path, "is required")
    elif len(text) > maximum:
        v.add(path, f"must be at most {maximum} characters")
    elif "\x00" in text:
        v.add(path, "must not contain NUL characters")


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


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format_decimal(value)
    if isinstance(value, Money):
        return [format_decimal(value.amount), value.currency]
    if isinstance(value, datetime):
        return value.isoformat()
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
