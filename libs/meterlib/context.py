"""Per-request context: request id, namespace and RPC method, read from gRPC metadata.

The namespace (tenant) travels in metadata, never in payloads. Values live in context variables so
that every log line of a request carries them without passing them around.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterable
from contextvars import ContextVar

from meterlib.errors import FieldViolation, InvalidArgument

NAMESPACE_HEADER = "x-metering-namespace"
REQUEST_ID_HEADER = "x-request-id"

NAMESPACE_MISSING = "ERROR_REASON_NAMESPACE_MISSING"
"""The ErrorInfo reason of a missing or malformed namespace."""

NAMESPACE_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62})$")
_REQUEST_ID_PATTERN = re.compile(r"^[\x21-\x7e]{1,128}$")

current_namespace: ContextVar[str | None] = ContextVar("namespace", default=None)
current_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
current_method: ContextVar[str | None] = ContextVar("rpc", default=None)


def validate_namespace(namespace: str) -> str:
    """Return the namespace if well-formed, else raise InvalidArgument naming the header."""
    if not NAMESPACE_PATTERN.match(namespace):
        raise InvalidArgument.fields(
            [
                FieldViolation(
                    NAMESPACE_HEADER,
                    "must be 1-63 characters of a-z, 0-9, '_' or '-', starting with a letter or digit",
                )
            ],
            "invalid namespace",
            reason=NAMESPACE_MISSING,
        )
    return namespace


def namespace_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None, default: str) -> str:
    """The namespace a request names in metadata, or ``default``; InvalidArgument if neither is usable."""
    for key, value in metadata or ():
        if key == NAMESPACE_HEADER:
            text = value.decode() if isinstance(value, bytes) else value
            return validate_namespace(text)
    if not default:
        raise InvalidArgument.fields(
            [FieldViolation(NAMESPACE_HEADER, "is required: set the request metadata")],
            "namespace missing",
            reason=NAMESPACE_MISSING,
        )
    return default


def request_id_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The caller's request id when it sent a sane one, else a fresh one."""
    for key, value in metadata or ():
        if key == REQUEST_ID_HEADER:
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            if _REQUEST_ID_PATTERN.match(text):
                return text
    return _fresh_request_id()


# A fresh request id is this process's random prefix and a counter: unique across replicas and restarts
# like a uuid4, without a getrandom() system call on every request that came without an id.
_REQUEST_ID_PREFIX = uuid.uuid4().hex[:16]
_request_numbers = itertools.count(1)


def _fresh_request_id() -> str:
    return f"{_REQUEST_ID_PREFIX}{next(_request_numbers):016x}"


def namespace() -> str:
    """The namespace of the request being served. Only valid inside an RPC."""
    value = current_namespace.get()
    if value is None:
        raise RuntimeError("no namespace: called outside a request")
    return value
