"""Plans an apply: the document against the catalog's state, resource by resource. Pure, no I/O.

A feature is created when its key is new, UNCHANGED when the stored one has the same definition, and a
conflict (FAILED_PRECONDITION, ERROR_REASON_IMMUTABLE) otherwise: features are immutable apart from
archiving and keys are never reused.

A plan or add-on entry is the content of the key's wanted latest version; ``effective_from`` asks for it
to be published from then. Against the key's versions:

1. ``effective_from`` given and equal to the latest published version's: that version is what the entry
   describes. The same content is UNCHANGED (drafts on top are left alone, so that an export without
   drafts applies back with no diff); other content is a conflict, as a published version is immutable.
2. A DRAFT exists: the same content is UNCHANGED, other content UPDATE_DRAFT.
3. Else a published version exists: the same content without ``effective_from`` is UNCHANGED, anything
   else NEW_VERSION (highest version + 1).
4. Else CREATE (version 1), or NEW_VERSION after abandoned drafts.

Then, with ``effective_from`` (and not case 1), PUBLISH the resulting version, by the domain's publication
rules (not in the past; no other version scheduled at or after it; the version effective then ends then).
Each version written is checked in full, archived features included, like PublishPlan does.

``prune`` archives what the document does not mention: every live (DRAFT, SCHEDULED, ACTIVE) version of
a plan or add-on key it lacks, and every active feature it lacks unless a version that stays live after
the apply still uses it; such a feature is listed as UNCHANGED and left for a later apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from google.protobuf.message import Message

from catalog import convert
from catalog.document.changes import (
    ArchiveFeature,
    ArchiveVersion,
    CatalogChange,
    CatalogDiff,
    CatalogState,
    ChangeAction,
    Content,
    CreateFeature,
    CreateVersion,
    PublishVersion,
    ResourceType,
    Step,
    UpdateDraft,
    Version,
    current_draft,
    latest_published,
)
from catalog.document.fields import changed_fields
from catalog.document.reading import CatalogDocument, DocumentFeature, check_document
from catalog.domain import (
    AddOn,
    ArchiveVersionInput,
    CreateAddOnInput,
    CreatePlanInput,
    Plan,
    PublishVersionInput,
    RateCard,
    VersionStatus,
    archive_feature,
    archive_version,
    publish_version,
    status_of,
)
from meterlib.errors import FailedPrecondition, FieldViolation, InvalidArgument
from meterlib.periods import as_utc

A = ChangeAction


@dataclass(frozen=True)
class _Conflict:
    path: str
    description: str
    reason: str | None


@dataclass(frozen=True)
class _Entry:
    """A plan or add-on entry of the document, kind-neutral."""

    kind: ResourceType
    path: str
    content: Content
    effective_from: datetime | None


class _Planner:
    def __init__(self, document: CatalogDocument, state: CatalogState, now: datetime) -> None:
        self.document, self.state, self.now = document, state, now
        self.refs = document.references(state.references())
        self.found = check_document(
            document,
            self.refs,
            stored_features=state.features,
            archived=False,
            unknown_meters=state.unknown_meters,
        )
        self.conflicts: list[_Conflict] = []
        self.after: dict[tuple[ResourceType, str], list[Version]] = {}
        """The versions of each key once the apply is done (for what prune may archive)."""

    def violation(self, path: str, field: str, description: str) -> None:
        self.found.setdefault(path, []).append(FieldViolation(field, description))

    def feature(self, entry: DocumentFeature) -> CatalogChange | None:
        key, stored = entry.input.key, self.state.features.get(entry.input.key)
        if stored is None:
            step = CreateFeature(entry.input, entry.input.to_feature(self.now))
            return CatalogChange(ResourceType.FEATURE, key, 0, (A.CREATE,), (), (step,))
        if entry.input.same_definition(stored):
            return CatalogChange(ResourceType.FEATURE, key, 0, (A.UNCHANGED,))
        wanted = entry.input.to_feature(stored.create_time)
        differ = changed_fields(convert.to_proto_feature(stored), convert.to_proto_feature(wanted))
        self.conflicts.append(
            _Conflict(
                entry.path,
                f"feature {key!r} differs from the stored one in {', '.join(differ)}; features are "
                "immutable (apart from archiving) and keys are never reused: keep its definition or use "
                "a new key",
                "ERROR_REASON_IMMUTABLE",
            )
        )
        return None

    def version(self, entry: _Entry, stored: Sequence[Version]) -> CatalogChange | None:
        now, start = self.now, entry.effective_from
        versions = sorted(stored, key=lambda v: v.version)
        draft, latest = current_draft(versions, now), latest_published(versions)
        key = entry.content.key
        if start is not None and latest is not None and latest.effective_from == start:
            if _same(entry.content, latest):
                return self._done(entry, versions, latest.version, (A.UNCHANGED,), (), ())
            differ = self._fields(latest, entry.content)
            self.conflicts.append(
                _Conflict(
                    f"{entry.path}.effective_from",
                    f"version {latest.version} of {key!r} is published from {start.isoformat()} with other "
                    f"content ({', '.join(differ)}) and published versions are immutable: leave "
                    "effective_from out to make the change a draft, or give a later time to publish it",
                    "ERROR_REASON_IMMUTABLE",
                )
            )
            return None
        actions: list[ChangeAction] = []
        fields: list[str] = []
        steps: list[Step] = []
        if draft is not None:
            target = draft
            if not _same(entry.content, draft):
                fields = self._fields(draft, entry.content)
                target = _update(entry.content, draft, now)
                actions.append(A.UPDATE_DRAFT)
                steps.append(UpdateDraft(entry.content, target))
        elif latest is not None and start is None and _same(entry.content, latest):
            return self._done(entry, versions, latest.version, (A.UNCHANGED,), (), ())
        else:
            base = latest or (versions[-1] if versions else None)
            target = _make(entry.content, _highest(versions) + 1, now)
            actions.append(A.CREATE if base is None else A.NEW_VERSION)
            fields = [] if base is None else self._fields(base, entry.content)
            steps.append(CreateVersion(entry.content, target))
        if start is not None:
            written = [v for v in versions if v.version != target.version] + [target]
            rows = self._publish(entry, written, target, start)
            if rows is None:
                return None
            actions.append(A.PUBLISH)
            fields.append("effective_from")
            steps.append(PublishVersion(PublishVersionInput(key, target.version, start), rows))
        if not actions:
            return self._done(entry, versions, target.version, (A.UNCHANGED,), (), ())
        self._check_archived_features(entry)
        return self._done(entry, versions, target.version, tuple(actions), tuple(fields), tuple(steps))

    def _publish(
        self, entry: _Entry, versions: list[Version], target: Version, start: datetime
    ) -> tuple[Version, ...] | None:
        try:
            result = publish_version(versions, target.version, self.now, effective_from=start)
        except InvalidArgument as exc:
            for v in exc.violations:
                self.violation(entry.path, f"{entry.path}.{v.field}", v.description)
            return None
        except FailedPrecondition as exc:
            self.conflicts.append(_Conflict(f"{entry.path}.effective_from", exc.message, exc.reason))
            return None
        changed = [new for old, new in zip(versions, result, strict=True) if new is not old]
        changed.sort(key=lambda v: v.version != target.version)
        return tuple(changed)

    def _check_archived_features(self, entry: _Entry) -> None:
        for path, card in entry.content.rate_cards_with_paths(entry.path):
            feature = self.refs.features.get(card.feature_key) if card.feature_key else None
            if feature is not None and feature.is_archived:
                self.violation(
                    entry.path,
                    f"{path}.feature_key",
                    f"feature {feature.key!r} is archived: new and changed versions cannot use it",
                )

    def _fields(self, stored: Version, content: Content) -> list[str]:
        wanted = _make(content, stored.version, stored.create_time)
        return changed_fields(_wire(stored, self.now), _wire(wanted, self.now))

    def _done(
        self,
        entry: _Entry,
        versions: list[Version],
        number: int,
        actions: tuple[ChangeAction, ...],
        fields: tuple[str, ...],
        steps: tuple[Step, ...],
    ) -> CatalogChange:
        self.after[(entry.kind, entry.content.key)] = _apply(versions, steps)
        return CatalogChange(entry.kind, entry.content.key, number, actions, fields, steps)

    def prune_versions(self, kind: ResourceType, stored: Sequence[Version]) -> CatalogChange | None:
        live = [
            v
            for v in sorted(stored, key=lambda v: v.version)
            if status_of(v, self.now) is not VersionStatus.ARCHIVED
        ]
        if not live:
            return None
        steps = tuple(
            ArchiveVersion(ArchiveVersionInput(v.key, v.version), archive_version(v, self.now)) for v in live
        )
        self.after[(kind, live[0].key)] = _apply(list(stored), steps)
        return CatalogChange(kind, live[0].key, live[-1].version, (A.ARCHIVE,), (), steps)

    def features_in_use(self) -> set[str]:
        """Features that versions live after the apply use (archiving them would fail: IN_USE)."""
        used: set[str] = set()
        for versions in self.after.values():
            for version in versions:
                if status_of(version, self.now) is not VersionStatus.ARCHIVED:
                    used.update(c.feature_key for c in _cards(version) if c.feature_key)
        return used

    def fail_if_any(self) -> None:
        violations = self.document.in_order(self.found)
        if violations:
            raise self.document.error(violations)
        if self.conflicts:
            raise FailedPrecondition(
                "the document conflicts with the catalog: "
                + "; ".join(f"{c.path}: {c.description}" for c in self.conflicts),
                reason=self.conflicts[0].reason,
                metadata={"fields": ",".join(c.path for c in self.conflicts)},
            )


def diff_catalog(
    document: CatalogDocument, state: CatalogState, *, now: datetime, prune: bool = False
) -> CatalogDiff:
    """The changes applying ``document`` to ``state`` at ``now`` makes, with their writes.

    Raises InvalidArgument listing every problem of the document (paths into it), then FailedPrecondition
    listing every conflict with the catalog (a changed feature, a changed published version, a publication
    the lifecycle rules refuse). See the module doc for the rules.
    """
    now = as_utc(now, "now")
    planner = _Planner(document, state, now)
    features = [planner.feature(f) for f in document.features if f.path not in planner.found]
    entries = [_Entry(ResourceType.PLAN, p.path, p.content, p.effective_from) for p in document.plans] + [
        _Entry(ResourceType.ADD_ON, a.path, a.content, a.effective_from) for a in document.add_ons
    ]
    versions: list[CatalogChange | None] = []
    for entry in entries:
        if entry.path not in planner.found:
            stored = state.plans if entry.kind is ResourceType.PLAN else state.add_ons
            versions.append(planner.version(entry, stored.get(entry.content.key, ())))
    if prune:
        for kind, stored_keys in ((ResourceType.PLAN, state.plans), (ResourceType.ADD_ON, state.add_ons)):
            mentioned = {e.content.key for e in entries if e.kind is kind}
            for key in sorted(set(stored_keys) - mentioned):
                versions.append(planner.prune_versions(kind, stored_keys[key]))
        features += _prune_features(planner, document, state, now)
    planner.fail_if_any()
    kinds = {ResourceType.FEATURE: 0, ResourceType.PLAN: 1, ResourceType.ADD_ON: 2}
    changes = [c for c in (*features, *versions) if c is not None]
    changes.sort(key=lambda c: (kinds[c.resource_type], c.key))
    return CatalogDiff(tuple(changes))


def _prune_features(
    planner: _Planner, document: CatalogDocument, state: CatalogState, now: datetime
) -> list[CatalogChange | None]:
    mentioned = {f.input.key for f in document.features}
    in_use = planner.features_in_use()
    changes: list[CatalogChange | None] = []
    for key, feature in sorted(state.features.items()):
        if key in mentioned or feature.is_archived:
            continue
        if key in in_use:
            changes.append(CatalogChange(ResourceType.FEATURE, key, 0, (A.UNCHANGED,)))
        else:
            step = ArchiveFeature(archive_feature(feature, now))
            changes.append(CatalogChange(ResourceType.FEATURE, key, 0, (A.ARCHIVE,), (), (step,)))
    return changes


def _highest(versions: Sequence[Version]) -> int:
    """The highest version number of a key (0 for a new key)."""
    return max((v.version for v in versions), default=0)


def _cards(version: Version) -> Iterator[RateCard]:
    if isinstance(version, Plan):
        return (card for phase in version.phases for card in phase.rate_cards)
    return iter(version.rate_cards)


def _apply(versions: list[Version], steps: Iterable[Step]) -> list[Version]:
    """The versions of a key once ``steps`` are written."""
    rows = {v.version: v for v in versions}
    for step in steps:
        if isinstance(step, CreateVersion | UpdateDraft | ArchiveVersion):
            rows[step.version.version] = step.version
        elif isinstance(step, PublishVersion):
            rows.update((v.version, v) for v in step.versions)
    return [rows[n] for n in sorted(rows)]


def _make(content: Content, number: int, now: datetime) -> Version:
    if isinstance(content, CreatePlanInput):
        return content.to_plan(number, now)
    return content.to_add_on(number, now)


def _update(content: Content, draft: Version, now: datetime) -> Version:
    if isinstance(content, CreatePlanInput) and isinstance(draft, Plan):
        return content.apply_to(draft, now)
    if isinstance(content, CreateAddOnInput) and isinstance(draft, AddOn):
        return content.apply_to(draft, now)
    raise TypeError(f"cannot apply {type(content).__name__} to {type(draft).__name__}")


def _same(content: Content, version: Version) -> bool:
    if isinstance(content, CreatePlanInput) and isinstance(version, Plan):
        return content.same_definition(version)
    if isinstance(content, CreateAddOnInput) and isinstance(version, AddOn):
        return content.same_definition(version)
    raise TypeError(f"cannot compare {type(content).__name__} with {type(version).__name__}")


def _wire(version: Version, now: datetime) -> Message:
    if isinstance(version, Plan):
        return convert.to_proto_plan(version, now)
    return convert.to_proto_add_on(version, now)
