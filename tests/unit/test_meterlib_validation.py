"""The field rules every service shares: keys, ids, request ids, text, labels and the violation collector."""

from __future__ import annotations

import pytest

from meterlib.errors import FieldViolation, InvalidArgument, Violations
from meterlib.validation import (
    KEY_RULE,
    Collector,
    canonical_id,
    check_id,
    check_key,
    check_metadata,
    check_request_id,
    check_text,
    require_id,
    require_key,
)


def _violations(check: object, *args: object, **kwargs: object) -> list[tuple[str, str]]:
    v = Violations()
    check(v, *args, **kwargs)  # type: ignore[operator]
    return [(item.field, item.description) for item in v.items]


@pytest.mark.parametrize("key", ["a", "0", "api-calls", "input_tokens", "a" * 64])
def test_natural_keys_are_accepted(key: str) -> None:
    assert _violations(check_key, key, "key") == []


@pytest.mark.parametrize("key", ["A", "-a", "_a", "a b", "a.b", "é", "a" * 65])
def test_malformed_keys_name_the_rule(key: str) -> None:
    assert _violations(check_key, key, "plan.key") == [("plan.key", KEY_RULE)]


def test_an_empty_key_is_required() -> None:
    assert _violations(check_key, "", "key") == [("key", "is required")]
    with pytest.raises(InvalidArgument) as caught:
        require_key("", "feature_key")
    assert caught.value.violations == (FieldViolation("feature_key", "is required"),)
    require_key("ok")


def test_request_ids_are_printable_ascii_up_to_128_characters() -> None:
    assert _violations(check_request_id, "r-1 / retry") == []
    assert _violations(check_request_id, "x" * 128) == []
    assert _violations(check_request_id, "") == [("request_id", "is required")]
    rule = "must be 1 to 128 printable ASCII characters"
    assert _violations(check_request_id, "x" * 129) == [("request_id", rule)]
    assert _violations(check_request_id, "tab\there", "grant.request_id") == [("grant.request_id", rule)]
    assert _violations(check_request_id, "naïve") == [("request_id", rule)]


def test_ids_are_uuids_in_canonical_form() -> None:
    upper = "6F1D3C2E-8B7A-4C5D-9E0F-1A2B3C4D5E6F"
    assert canonical_id(upper) == upper.lower()
    assert canonical_id("6f1d3c2e8b7a4c5d9e0f1a2b3c4d5e6f") is None  # not hyphenated: not as assigned
    assert canonical_id("not-a-uuid-but-thirty-six-characters") is None
    assert require_id(upper, "invoice_id") == upper.lower()
    assert _violations(check_id, "", "entitlement_id") == [("entitlement_id", "is required")]
    assert _violations(check_id, "42", "entitlement_id") == [
        ("entitlement_id", "must be a UUID, as the server assigned it")
    ]
    with pytest.raises(InvalidArgument) as caught:
        require_id("42", "invoice_id")
    assert caught.value.violations == (
        FieldViolation("invoice_id", "must be a UUID, as the server assigned it"),
    )


def test_text_is_bounded_and_free_of_nul() -> None:
    assert _violations(check_text, "", "name", 3) == []
    assert _violations(check_text, "  ", "name", 3, required=True) == [("name", "is required")]
    assert _violations(check_text, "abcd", "name", 3) == [("name", "must be at most 3 characters")]
    assert _violations(check_text, "a\x00", "name", 3) == [("name", "must not contain NUL characters")]


def test_metadata_reports_every_bad_entry_by_its_key() -> None:
    metadata = {"team": "core", "": "x", "long": "v" * 513, "nul": "a\x00b"}
    assert _violations(check_metadata, metadata, "customer.metadata") == [
        ("customer.metadata[]", "keys must be 1 to 64 characters without NUL"),
        ("customer.metadata[long]", "values must be at most 512 characters"),
        ("customer.metadata[nul]", "values must not contain NUL characters"),
    ]
    too_many = {f"k{i}": "" for i in range(33)}
    assert _violations(check_metadata, too_many, "metadata") == [("metadata", "must have at most 32 entries")]


def test_the_collector_drops_rules_about_fields_that_could_not_be_decoded() -> None:
    undecodable = FieldViolation("grant.amount", "must be a decimal number")
    v = Collector([undecodable])
    v.add("grant.amount", "is required")
    v.add("grant.amount.value", "must not be negative")
    v.add("grant.amounts", "is another field")
    v.add("grant.priority", "must be 0 to 255")
    assert v.items == [
        undecodable,
        FieldViolation("grant.amounts", "is another field"),
        FieldViolation("grant.priority", "must be 0 to 255"),
    ]
    with pytest.raises(InvalidArgument) as caught:
        v.raise_if_any()
    assert [violation.field for violation in caught.value.violations] == [
        "grant.amount",
        "grant.amounts",
        "grant.priority",
    ]


def test_the_collector_absorbs_what_a_parser_refuses() -> None:
    v = Collector()

    def refuse() -> int:
        raise InvalidArgument.fields([FieldViolation("customer.currency", "must be an ISO 4217 code")])

    assert v.absorb(lambda: 7) == 7
    assert v.absorb(refuse) is None
    assert v.items == [FieldViolation("customer.currency", "must be an ISO 4217 code")]
