"""The copy of a billing customer: its key and the subject keys its usage events carry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from meterlib.errors import Violations
from meterlib.validation import check_key

MAX_SUBJECT_KEYS: Final = 100
MAX_SUBJECT_KEY: Final = 256


@dataclass(frozen=True)
class Customer:
    """A customer copy. A subject key belongs to one customer at most (per namespace)."""

    key: str
    subject_keys: tuple[str, ...]
    update_time: datetime


def subject_key_problem(subject: str) -> str | None:
    """Why ``subject`` is not a subject key (1 to 256 printable characters), or None."""
    if not subject:
        return "must not be empty"
    if len(subject) > MAX_SUBJECT_KEY or not subject.isprintable():
        return f"must be 1 to {MAX_SUBJECT_KEY} printable characters"
    return None


@dataclass(frozen=True)
class UpsertCustomerInput:
    """The full state of a customer copy, as UpsertCustomer sends it."""

    key: str
    subject_keys: tuple[str, ...]
    given: bool = True
    """False when the request left ``customer`` unset."""

    def validate(self) -> None:
        """Raise InvalidArgument listing every malformed field."""
        v = Violations()
        if not self.given:
            v.add("customer", "is required")
            v.raise_if_any("invalid customer")
        check_key(v, self.key, "customer.key")
        if len(self.subject_keys) > MAX_SUBJECT_KEYS:
            v.add("customer.subject_keys", f"must have at most {MAX_SUBJECT_KEYS} entries")
        first: dict[str, int] = {}
        for index, subject in enumerate(self.subject_keys):
            problem = subject_key_problem(subject)
            if problem is not None:
                v.add(f"customer.subject_keys[{index}]", problem)
            elif subject in first:
                v.add(f"customer.subject_keys[{index}]", f"repeats customer.subject_keys[{first[subject]}]")
            else:
                first[subject] = index
        v.raise_if_any("invalid customer")
