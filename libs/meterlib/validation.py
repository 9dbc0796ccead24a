"""Field rules every service's requests share: natural keys, server-assigned ids, request ids, bounded text
and free-form labels, each reported as a ``FieldViolation`` at the path the caller names.

A service keeps its own rules (currencies, priorities, references...) next to its domain and uses these for
the rest, so that the same field gets the same message from every service.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Final, TypeVar

from meterlib.errors import FieldViolation, InvalidArgument, Violations

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
        self.undecodable = tuple(decode_violations)
        self.items.extend(self.undecodable)

    def add(self, field: str, description: str) -> None:
        """Record one violation unless it concerns a field that could not be decoded."""
        if not self.undecodable_at(field):
            super().add(field, description)

    def undecodable_at(self, path: str) -> bool:
        """Whether decoding failed for ``path`` or a field that contains it."""
        return any(path == d.field or path.startswith(d.field + ".") for d in self.undecodable)

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


def check_id(v: Violations, text: str, path: str) -> None:
    """A server-assigned id: a UUID."""
    if not text:
        v.add(path, "is required")
    elif canonical_id(text) is None:
        v.add(path, "must be a UUID, as the server assigned it")


def require_id(text: str, path: str) -> str:
    """The canonical form of a server-assigned id; InvalidArgument naming ``path`` unless it is a UUID."""
    v = Violations()
    check_id(v, text, path)
    v.raise_if_any()
    canonical = canonical_id(text)
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
