"""A catalog document read into domain inputs, and every rule it must satisfy.

Reading goes text → plain values (:mod:`.source`) → checked against the proto messages (:mod:`.schema`)
→ ``CatalogDocument`` proto entries (``json_format.ParseDict``) → domain inputs (``catalog.convert``,
each entry with the path prefix of its place in the document). Nothing is raised for the content at this
point: what could not be read is kept with the entry it belongs to, so that validation reports it together
with every rule of every feature, plan and add-on, in ONE InvalidArgument whose paths are document paths,
e.g. ``document.plans[2].phases[0].rate_cards[1].price.unit.amount`` (with the line, for YAML).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import Message

from catalog import convert
from catalog.document.schema import SchemaCheck
from catalog.document.source import ROOT, DocumentFormat, load, locate
from catalog.domain import (
    Collector,
    CreateAddOnInput,
    CreateFeatureInput,
    CreatePlanInput,
    Feature,
    MeteredEntitlementTemplate,
    RateCard,
    References,
    is_usage_based,
    price_model,
)
from metering.catalog.v1 import catalog_pb2 as pb
from meterlib.errors import FieldViolation, InvalidArgument
from meterlib.validation import KEY_PATTERN

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
"""The creation time given to the document's own features when they stand in as references."""


MAX_REPORTED: Final = 100
"""The most violations one error lists (then one more says how many were left out): a document with more
problems than that is better fixed from the top, and an error's size stays bounded."""
_ENTRY: Final = re.compile(rf"^{ROOT}\.(?:features|plans|add_ons)\[[0-9]+\]")


def entry_of(path: str) -> str:
    """The entry a field path lies in (``document.plans[2]``), or ``document`` for the rest."""
    match = _ENTRY.match(path)
    return match.group(0) if match else ROOT


def invalid_document(
    violations: Sequence[FieldViolation], source: Any = None, *, omitted: int = 0
) -> InvalidArgument:
    """The one InvalidArgument of a document's violations: at most MAX_REPORTED of them, each naming its
    line when the source is YAML, and how many more there are (``omitted`` not even described)."""
    shown = []
    for v in violations[:MAX_REPORTED]:
        at = locate(source, v.field)
        shown.append(v if at is None else FieldViolation(v.field, f"{v.description} (line {at.line})"))
    more = max(0, len(violations) - MAX_REPORTED) + omitted
    if more:
        shown.append(FieldViolation(ROOT, f"and {more} more problems not listed"))
    return InvalidArgument.fields(shown, "invalid catalog document")


@dataclass(frozen=True)
class DocumentFeature:
    """A feature of the document, at ``document.features[index]``."""

    index: int
    input: CreateFeatureInput
    problems: tuple[FieldViolation, ...] = ()
    """What could not be read from the entry (the input lacks those fields)."""

    @property
    def path(self) -> str:
        """The entry's field path."""
        return f"{ROOT}.features[{self.index}]"


@dataclass(frozen=True)
class DocumentPlan:
    """A plan of the document, at ``document.plans[index]``: the wanted latest version's content, and when
    it is to be published (None: it stays a DRAFT). Read problems are in ``content.decode_violations``."""

    index: int
    content: CreatePlanInput
    effective_from: datetime | None = None

    @property
    def path(self) -> str:
        """The entry's field path."""
        return f"{ROOT}.plans[{self.index}]"


@dataclass(frozen=True)
class DocumentAddOn:
    """An add-on of the document, at ``document.add_ons[index]``; as :class:`DocumentPlan`."""

    index: int
    content: CreateAddOnInput
    effective_from: datetime | None = None

    @property
    def path(self) -> str:
        """The entry's field path."""
        return f"{ROOT}.add_ons[{self.index}]"


@dataclass(frozen=True)
class CatalogDocument:
    """A catalog document read into domain inputs, entries in document order."""

    features: tuple[DocumentFeature, ...] = ()
    plans: tuple[DocumentPlan, ...] = ()
    add_ons: tuple[DocumentAddOn, ...] = ()
    problems: tuple[FieldViolation, ...] = ()
    """What could not be read outside any usable entry (unknown top-level fields, unreadable entries)."""
    source: Any = field(default=None, compare=False, repr=False)
    """The plain values read from the text, which know the line of each entry (YAML only)."""

    def meter_keys(self, stored: Mapping[str, Feature] | None = None) -> frozenset[str]:
        """The meters whose dimensions validating the document needs (ask ingest for them, and which do
        not exist): those its features name and, given the stored features, those of the stored features
        its rate cards use."""
        keys = {f.input.meter_key for f in self.features if f.input.meter_key}
        cards = [c for p in self.plans for _, c in p.content.rate_cards_with_paths()]
        cards += [c for a in self.add_ons for c in a.content.rate_cards]
        for card in cards:
            feature = (stored or {}).get(card.feature_key) if card.feature_key else None
            if feature is not None and feature.meter_key:
                keys.add(feature.meter_key)
        return frozenset(keys)

    def references(self, catalog: References) -> References:
        """``catalog`` (what the namespace holds) plus the document's own features and plan keys; a stored
        feature wins over the document's (it is the truth; a different definition is a conflict)."""
        features: dict[str, Feature] = {}
        for entry in self.features:  # a repeated key is a violation; the first entry stands meanwhile
            features.setdefault(entry.input.key, entry.input.to_feature(_EPOCH))
        features.update(catalog.features)
        plan_keys = catalog.plan_keys
        if plan_keys is not None:
            plan_keys = plan_keys | {p.content.key for p in self.plans}
        return References(features, catalog.meter_dimensions, plan_keys)

    def validate(self, catalog: References | None = None) -> None:
        """Raise one InvalidArgument listing every problem of the document, as if every plan and add-on
        were to be written (so archived features count as problems). ``catalog`` holds the namespace's
        features, meter dimensions and plan keys; None means an empty namespace."""
        refs = self.references(catalog or References(plan_keys=frozenset()))
        found = check_document(self, refs, stored_features=(catalog or References()).features, archived=True)
        violations = self.in_order(found)
        if violations:
            raise self.error(violations)

    def in_order(self, found: Mapping[str, Sequence[FieldViolation]]) -> list[FieldViolation]:
        """Violations by entry path (``document`` for the rest) as one list in document order."""
        paths = [ROOT, *(f.path for f in self.features), *(p.path for p in self.plans)]
        paths += [a.path for a in self.add_ons]
        return [v for path in paths for v in found.get(path, ())]

    def error(self, violations: Sequence[FieldViolation]) -> InvalidArgument:
        """The one InvalidArgument of these violations (see ``invalid_document``)."""
        return invalid_document(violations, self.source)


def parse_document(text: str, format: DocumentFormat = DocumentFormat.YAML) -> CatalogDocument:
    """Read a catalog document. Raises ResourceExhausted above 4 MiB and InvalidArgument when the text is
    not a YAML (or JSON) mapping; every other problem is kept for ``validate`` / ``diff_catalog``."""
    tree = load(text, format)
    if not isinstance(tree, dict):
        what = "empty" if tree is None else "not a mapping"
        raise InvalidArgument.fields(
            [
                FieldViolation(
                    ROOT, f"is {what}: a document is a mapping with the lists features, plans, add_ons"
                )
            ],
            "invalid catalog document",
        )
    check = SchemaCheck(limit=MAX_REPORTED)
    clean = check.message(tree, pb.CatalogDocument.DESCRIPTOR, ROOT) or {}
    if check.omitted:  # that many problems: report the first ones, skip the domain rules
        raise invalid_document(check.violations, tree, omitted=check.omitted)
    by_entry: dict[str, list[FieldViolation]] = {}
    for v in check.violations:
        by_entry.setdefault(entry_of(v.field), []).append(v)

    def entries(
        name: str, message_type: type[Message]
    ) -> Iterator[tuple[int, str, Any, list[FieldViolation]]]:
        for index, raw in enumerate(clean.get(name) or ()):
            path = f"{ROOT}.{name}[{index}]"
            try:
                message = json_format.ParseDict(raw, message_type(), ignore_unknown_fields=False)
            except json_format.ParseError as exc:  # the schema walk should have caught it: report it anyway
                by_entry.setdefault(ROOT, []).append(FieldViolation(path, f"cannot be read: {exc}"))
                continue
            yield index, path, message, by_entry.pop(path, [])

    features = tuple(
        DocumentFeature(index, convert.from_proto_feature_input(m), tuple(mine))
        for index, _, m, mine in entries("features", pb.Feature)
    )
    plans = tuple(
        DocumentPlan(index, _with_problems(convert.from_proto_plan_input(m, path), mine), _effective_from(m))
        for index, path, m, mine in entries("plans", pb.Plan)
    )
    add_ons = tuple(
        DocumentAddOn(
            index, _with_problems(convert.from_proto_add_on_input(m, path), mine), _effective_from(m)
        )
        for index, path, m, mine in entries("add_ons", pb.AddOn)
    )
    rest = tuple(v for entry in by_entry.values() for v in entry)  # outside any entry that was read
    return CatalogDocument(features, plans, add_ons, rest, tree)


def _with_problems(content: Any, problems: Sequence[FieldViolation]) -> Any:
    """``content`` carrying the schema problems of its entry first; what convert could not decode only
    where the schema walk found nothing (a field the walk left out reads as missing, said already)."""
    schema = Collector(problems)
    decoded = tuple(d for d in content.decode_violations if not schema.undecodable_at(d.field))
    return replace(content, decode_violations=(*problems, *decoded))


def _effective_from(message: pb.Plan | pb.AddOn) -> datetime | None:
    return convert.from_timestamp(message.effective_from) if message.HasField("effective_from") else None


def check_document(
    doc: CatalogDocument,
    refs: References,
    *,
    stored_features: Mapping[str, Feature],
    archived: bool,
    unknown_meters: Collection[str] = frozenset(),
) -> dict[str, list[FieldViolation]]:
    """Every violation of the document, by entry path (``document`` for the rest), in document order.

    ``refs`` are the document's references (see ``CatalogDocument.references``); ``archived`` whether a
    reference to an archived feature counts (it does only for versions that will be written);
    ``unknown_meters`` the meters ingest does not have, which a new feature may not name.
    """
    found: dict[str, list[FieldViolation]] = {ROOT: list(doc.problems)} if doc.problems else {}
    for entry in doc.features:
        v = Collector(entry.problems)
        meter = entry.input.meter_key
        try:
            entry.input.validate(refs.meter_dimensions.get(meter) if meter else None, prefix=entry.path)
        except InvalidArgument as exc:
            for violation in exc.violations:
                v.add(violation.field, violation.description)
        if meter and meter in unknown_meters and entry.input.key not in stored_features:
            v.add(f"{entry.path}.meter_key", f"names no meter of the ingest service: create {meter!r} first")
        _record(found, entry.path, v)
    for plan in doc.plans:
        v = plan.content.violations(refs, prefix=plan.path)
        check_references(v, plan.content.rate_cards_with_paths(plan.path), refs, archived=archived)
        _record(found, plan.path, v)
    for add_on in doc.add_ons:
        v = add_on.content.violations(refs, prefix=add_on.path)
        check_references(v, add_on.content.rate_cards_with_paths(add_on.path), refs, archived=archived)
        if refs.plan_keys is not None:
            for index, key in enumerate(add_on.content.compatible_plan_keys):
                if KEY_PATTERN.match(key) and key not in refs.plan_keys:
                    v.add(
                        f"{add_on.path}.compatible_plan_keys[{index}]",
                        f"names no plan: {key!r} is neither under plans nor in the catalog",
                    )
        _record(found, add_on.path, v)
    _check_unique(found, "features", [(f.path, f.input.key) for f in doc.features])
    _check_unique(found, "plans", [(p.path, p.content.key) for p in doc.plans])
    _check_unique(found, "add_ons", [(a.path, a.content.key) for a in doc.add_ons])
    return found


def _record(found: dict[str, list[FieldViolation]], path: str, v: Collector) -> None:
    if v.items:
        found.setdefault(path, []).extend(v.items)


def _check_unique(found: dict[str, list[FieldViolation]], what: str, keys: list[tuple[str, str]]) -> None:
    first: dict[str, str] = {}
    for path, key in keys:
        if key and key in first:
            found.setdefault(path, []).append(
                FieldViolation(
                    f"{path}.key", f"{key!r} is already the key of {first[key]}: one entry per key"
                )
            )
        elif key:
            first[key] = path


def check_references(
    v: Collector, cards: Iterable[tuple[str, RateCard]], refs: References, *, archived: bool
) -> None:
    """Rate cards must name features the document or the catalog has, with a meter where a usage price or
    a metered entitlement needs one, and (with ``archived``) not archived. Unlike CreatePlan, which answers
    NOT_FOUND or FAILED_PRECONDITION, a document reports these as field violations: the fix is an edit of
    the document, and the caller sees it together with every other problem."""
    for path, card in cards:
        key = card.feature_key
        if key is None or not KEY_PATTERN.match(key):
            continue  # a bad key was reported by the domain rules already
        where = f"{path}.feature_key"
        feature = refs.features.get(key)
        if feature is None:
            v.add(where, f"names no feature: {key!r} is neither under features nor in the catalog")
            continue
        if archived and feature.is_archived:
            v.add(where, f"feature {key!r} is archived: new and changed versions cannot use it")
        if not feature.is_metered:
            if is_usage_based(card.price):
                v.add(
                    where, f"a {price_model(card.price)} price needs a metered feature; {key!r} has no meter"
                )
            if isinstance(card.entitlement_template, MeteredEntitlementTemplate):
                v.add(where, f"a metered entitlement needs a metered feature; {key!r} has no meter")
