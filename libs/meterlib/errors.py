"""The one domain error hierarchy. Services raise these; one interceptor maps them to gRPC status codes.

``service.py`` code raises domain errors and never imports grpc; ``store.py`` turns driver errors (unique
violations and the like) into these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldViolation:
    """One offending request field: its path (``events[3].id``) and what is wrong with it."""

    field: str
    description: str


ERROR_DOMAIN = "metering"
"""The ``google.rpc.ErrorInfo.domain`` of every error this project sends."""


class DomainError(Exception):
    """Base of every error a service means to tell its caller about.

    ``reason`` is the name of a ``metering.common.v1.ErrorReason`` value (e.g.
    ``"ERROR_REASON_IMMUTABLE"``); with it the caller receives a ``google.rpc.ErrorInfo`` carrying the
    reason and ``metadata``, so programs can tell causes apart without parsing messages.
    """

    def __init__(
        self, message: str, *, reason: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})


class InvalidArgument(DomainError):
    """The request is malformed; ``violations`` names every offending field at once."""

    def __init__(
        self,
        message: str,
        violations: Iterable[FieldViolation] = (),
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.violations = tuple(violations)

    @classmethod
    def fields(
        cls,
        violations: Iterable[FieldViolation],
        message: str = "invalid request",
        *,
        reason: str | None = None,
    ) -> InvalidArgument:
        """An InvalidArgument whose message lists the offending fields."""
        violations = tuple(violations)
        names = ", ".join(v.field for v in violations)
        return cls(f"{message}: {names}" if names else message, violations, reason=reason)


class NotFound(DomainError):
    """The named resource does not exist in the caller's namespace.

    ``resource_type`` and ``resource_name`` (e.g. ``"meter"``, ``"input_tokens"``) reach the caller as
    a ``google.rpc.ResourceInfo``.
    """

    def __init__(
        self, message: str, *, resource_type: str = "", resource_name: str = "", **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.resource_type = resource_type
        self.resource_name = resource_name


class AlreadyExists(DomainError):
    """A resource with the same key already exists."""


class FailedPrecondition(DomainError):
    """The system is not in a state the operation needs (editing a published plan, say)."""


class PermissionDenied(DomainError):
    """The caller is known but may not do this."""


class Unauthenticated(DomainError):
    """The caller did not prove who it is."""


class ResourceExhausted(DomainError):
    """A quota or size limit was hit."""


class Unavailable(DomainError):
    """A dependency is down; the caller may retry with backoff."""


class Aborted(DomainError):
    """A concurrency conflict; the caller may retry the whole operation."""


class Unimplemented(DomainError):
    """The method exists in the contract but this server does not serve it (yet)."""


class Violations:
    """Collects field violations so validation reports all of them at once.

    >>> v = Violations()
    >>> v.check(bool(name), "name", "must not be empty")
    >>> v.raise_if_any()
    """

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        """Record one violation."""
        self.items.append(FieldViolation(field, description))

    def check(self, ok: bool, field: str, description: str) -> None:
        """Record a violation unless ``ok``."""
        if not ok:
            self.add(field, description)

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, message: str = "invalid request") -> None:
        """Raise InvalidArgument with every violation collected, if there are any."""
        if self.items:
            raise InvalidArgument.fields(self.items, message)
