"""The lifecycle of plan and add-on versions: status from the clock, publish, archive, new drafts.

A version is a DRAFT until published; publishing gives it ``effective_from`` (and optionally
``effective_to``); it is SCHEDULED before ``effective_from``, ACTIVE in ``[effective_from, effective_to)``
and ARCHIVED from ``effective_to`` on. Archiving a DRAFT abandons it at once (``archive_time``); archiving a
published version sets (or brings forward) its ``effective_to``. Publishing version N+1 from T ends the
version effective at T at T, so the published ranges of one key never overlap and "the version as of T" is
unique. Every function here is pure: it takes the versions of one key and ``now``, and returns new versions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Final, Protocol, TypeVar

from meterlib.errors import FailedPrecondition, NotFound, Violations
from meterlib.periods import as_utc
from meterlib.validation import check_key, check_request_id

CLOCK_SKEW: Final = timedelta(minutes=1)
"""How far in the past an ``effective_from`` or ``effective_to`` may be (clock skew between callers)."""


class VersionStatus(StrEnum):
    """Where a plan or add-on version is in its lifecycle, at some instant."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    ACTIVE = "active"
    ARCHIVED = "archived"


def version_status(
    effective_from: datetime | None,
    effective_to: datetime | None,
    archive_time: datetime | None,
    now: datetime,
) -> VersionStatus:
    """The status of a version at ``now``.

    Unpublished (no ``effective_from``): DRAFT, or ARCHIVED from ``archive_time`` on. Published: ARCHIVED
    once ``effective_to <= now`` (checked first, so a version withdrawn before it started is archived, not
    scheduled), SCHEDULED before ``effective_from``, otherwise ACTIVE.
    """
    now = as_utc(now, "now")
    if effective_from is None:
        return (
            VersionStatus.ARCHIVED
            if archive_time is not None and archive_time <= now
            else VersionStatus.DRAFT
        )
    if effective_to is not None and effective_to <= now:
        return VersionStatus.ARCHIVED
    return VersionStatus.SCHEDULED if now < effective_from else VersionStatus.ACTIVE


class Versioned(Protocol):
    """What the lifecycle functions need of a version (a Plan or an AddOn)."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    @property
    def key(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def effective_from(self) -> datetime | None: ...
    @property
    def effective_to(self) -> datetime | None: ...
    @property
    def archive_time(self) -> datetime | None: ...
    @property
    def create_time(self) -> datetime: ...
    @property
    def update_time(self) -> datetime: ...


V = TypeVar("V", bound=Versioned)


def status_of(version: Versioned, now: datetime) -> VersionStatus:
    """The status of a plan or add-on version at ``now``."""
    return version_status(version.effective_from, version.effective_to, version.archive_time, now)


def ensure_draft(version: Versioned, now: datetime) -> None:
    """Raise FailedPrecondition (ERROR_REASON_IMMUTABLE) unless the version is a DRAFT: published
    versions are immutable and abandoned drafts are gone."""
    status = status_of(version, now)
    if status is not VersionStatus.DRAFT:
        raise FailedPrecondition(
            f"version {version.version} of {version.key!r} is {status.value}, not a draft: it cannot change",
            reason="ERROR_REASON_IMMUTABLE",
            metadata={"status": status.value},
        )


def _ever_effective(version: Versioned) -> bool:
    """Whether the version is published with a non-empty range (a version withdrawn before it started
    ends before it starts, and never counts)."""
    start, end = version.effective_from, version.effective_to
    return start is not None and (end is None or end > start)


def _find(versions: Sequence[V], number: int) -> V:
    for candidate in versions:
        if candidate.version == number:
            return candidate
    key = versions[0].key if versions else ""
    raise NotFound(
        f"{key!r} has no version {number}", resource_type="version", resource_name=f"{key}@{number}"
    )


def publish_version(
    versions: Sequence[V],
    number: int,
    now: datetime,
    effective_from: datetime | None = None,
    effective_to: datetime | None = None,
) -> tuple[V, ...]:
    """The versions of one key after publishing version ``number`` from ``effective_from`` (default now).

    The published version that would still be effective at ``effective_from`` ends there. Publishing a
    published version again with the same or no ``effective_from`` changes nothing. Raises NotFound,
    InvalidArgument (``effective_from`` in the past, ``effective_to`` not after it) and FailedPrecondition
    (an abandoned draft, a version published from another time, a version already scheduled at or after
    ``effective_from``). Validating the content is the caller's job.
    """
    now = as_utc(now, "now")
    target = _find(versions, number)
    status = status_of(target, now)
    if status is VersionStatus.ARCHIVED:
        raise FailedPrecondition(
            f"version {number} of {target.key!r} is archived", reason="ERROR_REASON_INVALID_STATE_TRANSITION"
        )
    if target.effective_from is not None:
        if effective_from is None or as_utc(effective_from, "effective_from") == target.effective_from:
            return tuple(versions)
        raise FailedPrecondition(
            f"version {number} of {target.key!r} is already published from {target.effective_from.isoformat()}",
            reason="ERROR_REASON_IMMUTABLE",
        )
    start = now if effective_from is None else as_utc(effective_from, "effective_from")
    end = None if effective_to is None else as_utc(effective_to, "effective_to")
    v = Violations()
    v.check(start >= now - CLOCK_SKEW, "effective_from", "must not be in the past")
    v.check(end is None or end > start, "effective_to", "must be after effective_from")
    v.raise_if_any("invalid publication")
    for other in versions:
        other_from = other.effective_from
        if (
            other.version != number
            and other_from is not None
            and other_from >= start
            and _ever_effective(other)
        ):
            raise FailedPrecondition(
                f"version {other.version} of {target.key!r} is already scheduled from "
                f"{other_from.isoformat()}, not before {start.isoformat()}",
                reason="ERROR_REASON_INVALID_STATE_TRANSITION",
                metadata={"scheduled_version": str(other.version)},
            )
    updated: list[V] = []
    for other in versions:
        if other.version == number:
            other = dataclasses.replace(other, effective_from=start, effective_to=end, update_time=now)
        elif _ever_effective(other) and (other.effective_to is None or other.effective_to > start):
            other = dataclasses.replace(other, effective_to=start, update_time=now)
        updated.append(other)
    return tuple(updated)


def archive_version(version: V, now: datetime, effective_to: datetime | None = None) -> V:
    """The version archived: a DRAFT abandoned at ``now``; a published one ending at ``effective_to``
    (default now), never later than it already ends. Archiving an archived version changes nothing.
    Raises InvalidArgument for an ``effective_to`` in the past.
    """
    now = as_utc(now, "now")
    status = status_of(version, now)
    if status is VersionStatus.ARCHIVED:
        return version
    if status is VersionStatus.DRAFT:
        return dataclasses.replace(version, archive_time=now, update_time=now)
    end = now if effective_to is None else as_utc(effective_to, "effective_to")
    v = Violations()
    v.check(end >= now - CLOCK_SKEW, "effective_to", "must not be in the past")
    v.raise_if_any("invalid archive")
    if version.effective_to is not None and version.effective_to <= end:
        return version
    return dataclasses.replace(version, effective_to=end, update_time=now)


def archive_in_timeline(
    versions: Sequence[V], target: V, now: datetime, effective_to: datetime | None = None
) -> list[V]:
    """``archive_version`` of ``target`` with its effect on the other versions of the key; the versions
    that changed.

    Withdrawing a SCHEDULED version (archiving it before it starts) gives its span back to the version
    it was going to replace: publishing it had ended that version at its start, so that version now
    ends where the withdrawn one would have (open-ended if it was), and the key has no gap.
    """
    now = as_utc(now, "now")
    archived = archive_version(target, now, effective_to)
    if archived == target:
        return []
    changed = [archived]
    if status_of(target, now) is VersionStatus.SCHEDULED and target.effective_from is not None:
        for previous in versions:
            if previous.version != target.version and previous.effective_to == target.effective_from:
                changed.append(
                    dataclasses.replace(previous, effective_to=target.effective_to, update_time=now)
                )
    return changed


def new_draft_version(versions: Sequence[V], source_version: int, now: datetime) -> V:
    """A new DRAFT (the highest version + 1) copying ``source_version``, or the latest published version
    when it is 0. Raises FailedPrecondition when the key already has a DRAFT (metadata ``draft_version``)
    and NotFound for an unknown source (or no published version to copy).
    """
    now = as_utc(now, "now")
    for candidate in versions:
        if status_of(candidate, now) is VersionStatus.DRAFT:
            raise FailedPrecondition(
                f"{candidate.key!r} already has a draft: version {candidate.version}",
                reason="ERROR_REASON_INVALID_STATE_TRANSITION",
                metadata={"draft_version": str(candidate.version)},
            )
    if source_version:
        source = _find(versions, source_version)
    else:
        published = [c for c in versions if c.effective_from is not None]
        if not published:
            key = versions[0].key if versions else ""
            raise NotFound(
                f"{key!r} has no published version to copy", resource_type="version", resource_name=key
            )
        source = max(published, key=lambda c: c.version)
    return dataclasses.replace(
        source,
        version=max(c.version for c in versions) + 1,
        effective_from=None,
        effective_to=None,
        archive_time=None,
        create_time=now,
        update_time=now,
    )


def version_as_of(versions: Sequence[V], at: datetime) -> V | None:
    """The published version effective at ``at`` (``effective_from <= at < effective_to``), if any."""
    at = as_utc(at, "at")
    for candidate in versions:
        start, end = candidate.effective_from, candidate.effective_to
        if start is not None and start <= at and (end is None or at < end):
            return candidate
    return None


@dataclass(frozen=True)
class PublishVersionInput:
    """A PublishPlan or PublishAddOn request."""

    key: str
    version: int
    effective_from: datetime | None = None
    effective_to: datetime | None = None

    def validate(self) -> None:
        """Raise InvalidArgument listing every malformed field (times are checked on publishing)."""
        v = Violations()
        check_key(v, self.key, "key")
        v.check(self.version >= 1, "version", "is required: a version number from 1")
        v.raise_if_any("invalid publication")


@dataclass(frozen=True)
class ArchiveVersionInput:
    """An ArchivePlan or ArchiveAddOn request."""

    key: str
    version: int
    effective_to: datetime | None = None

    def validate(self) -> None:
        """Raise InvalidArgument listing every malformed field."""
        v = Violations()
        check_key(v, self.key, "key")
        v.check(self.version >= 1, "version", "is required: a version number from 1")
        v.raise_if_any("invalid archive")


@dataclass(frozen=True)
class NewDraftVersionInput:
    """A NewDraftPlanVersion or NewDraftAddOnVersion request."""

    request_id: str
    key: str
    source_version: int = 0

    def validate(self) -> None:
        """Raise InvalidArgument listing every malformed field."""
        v = Violations()
        check_request_id(v, self.request_id)
        check_key(v, self.key, "key")
        v.check(self.source_version >= 0, "source_version", "must not be negative (0 means the latest)")
        v.raise_if_any("invalid new draft version")
