"""Customers: who is billed, in which currency, and which usage subjects are theirs.

A customer's key is immutable and never reused, even after it is deleted (deletion is soft: its invoices
stay readable and keep naming it). Its subject keys belong to it alone among the namespace's customers
that are not deleted; deleting it releases them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Final

import pycountry

from meterlib.errors import FieldViolation
from meterlib.money import parse_currency
from meterlib.validation import Collector, check_key, check_metadata, check_text

MAX_NAME: Final = 256
MAX_EMAIL: Final = 256
MAX_SUBJECT_KEYS: Final = 100
MAX_SUBJECT_KEY: Final = 256
ADDRESS_LIMITS: Final = MappingProxyType(
    {"postal_code": 32, "state": 128, "city": 128, "line1": 256, "line2": 256}
)

# ISO 3166-1 alpha-2, from the iso-codes data pycountry ships (and is re-released with when it changes).
COUNTRIES: Final = frozenset(country.alpha_2 for country in pycountry.countries)

# Deliberately loose: the address is only printed on invoices, and RFC 5322 admits far more than any
# pattern should try to judge; this catches what is plainly not an address.
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+")


@dataclass(frozen=True)
class Address:
    """A postal address; ``country`` is an ISO 3166-1 alpha-2 code."""

    country: str
    postal_code: str = ""
    state: str = ""
    city: str = ""
    line1: str = ""
    line2: str = ""


@dataclass(frozen=True)
class Customer:
    """A customer as stored; ``delete_time`` is set once it is deleted."""

    key: str
    name: str
    currency: str
    subject_keys: tuple[str, ...]
    billing_address: Address | None
    email: str
    metadata: Mapping[str, str]
    create_time: datetime
    update_time: datetime
    delete_time: datetime | None = None

    @property
    def deleted(self) -> bool:
        """Whether the customer is deleted."""
        return self.delete_time is not None


def subject_key_problem(subject: str) -> str | None:
    """Why ``subject`` is not a subject key (1 to 256 printable characters), or None."""
    if not subject:
        return "must not be empty"
    if len(subject) > MAX_SUBJECT_KEY or not subject.isprintable():
        return f"must be 1 to {MAX_SUBJECT_KEY} printable characters"
    return None


def _country_problem(code: str) -> str | None:
    if not code:
        return "is required when an address is given"
    if code in COUNTRIES:
        return None
    if code.upper() in COUNTRIES:
        return f"country codes are upper case: {code.upper()!r}"
    return "must be an ISO 3166-1 alpha-2 country code such as 'DE' or 'US'"


@dataclass(frozen=True)
class CustomerInput:
    """The full state of a customer, as CreateCustomer and UpdateCustomer send it (output-only fields
    dropped)."""

    key: str
    name: str
    currency: str
    subject_keys: tuple[str, ...] = ()
    billing_address: Address | None = None
    email: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    given: bool = True
    """False when the request left ``customer`` unset."""
    decode_violations: tuple[FieldViolation, ...] = ()

    def validate(self) -> None:
        """Raise InvalidArgument listing every malformed field."""
        v = Collector(self.decode_violations)
        if not self.given:
            v.add("customer", "is required")
            v.raise_if_any("invalid customer")
        check_key(v, self.key, "customer.key")
        check_text(v, self.name, "customer.name", MAX_NAME, required=True)
        if self.name and not self.name.isprintable():
            v.add("customer.name", "must not contain control characters")
        if not self.currency:
            v.add("customer.currency", "is required")
        else:
            v.absorb(lambda: parse_currency(self.currency, "customer.currency"))
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
        address = self.billing_address
        if address is not None:
            problem = _country_problem(address.country)
            if problem is not None:
                v.add("customer.billing_address.country", problem)
            for name, limit in ADDRESS_LIMITS.items():
                check_text(v, getattr(address, name), f"customer.billing_address.{name}", limit)
        check_text(v, self.email, "customer.email", MAX_EMAIL)
        if self.email and len(self.email) <= MAX_EMAIL and not _EMAIL.fullmatch(self.email):
            v.add("customer.email", "must be an e-mail address such as 'billing@example.com'")
        check_metadata(v, self.metadata, "customer.metadata")
        v.raise_if_any("invalid customer")

    def matches(self, customer: Customer) -> bool:
        """Whether ``customer`` already has exactly this state (a retry changes nothing)."""
        return (
            self.key == customer.key
            and self.name == customer.name
            and self.currency == customer.currency
            and self.subject_keys == customer.subject_keys
            and self.billing_address == customer.billing_address
            and self.email == customer.email
            and dict(self.metadata) == dict(customer.metadata)
        )

    def to_customer(self, now: datetime) -> Customer:
        """The new customer this (validated) input makes at ``now``."""
        return Customer(
            key=self.key,
            name=self.name,
            currency=self.currency,
            subject_keys=self.subject_keys,
            billing_address=self.billing_address,
            email=self.email,
            metadata=dict(self.metadata),
            create_time=now,
            update_time=now,
        )

    def applied_to(self, customer: Customer, now: datetime) -> Customer:
        """``customer`` replaced by this state at ``now``; its creation time stays."""
        return Customer(
            key=customer.key,
            name=self.name,
            currency=self.currency,
            subject_keys=self.subject_keys,
            billing_address=self.billing_address,
            email=self.email,
            metadata=dict(self.metadata),
            create_time=customer.create_time,
            update_time=now,
        )
