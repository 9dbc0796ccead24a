"""The pure rules of credits: which credits an invoice takes from, in which order, and how much; and the
validation of CreateCredit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.domain import CreateCreditInput, Credit, CreditApplication, plan_credit_applications
from meterlib.errors import InvalidArgument
from meterlib.money import Money

NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)


def make(
    credit_id: str,
    balance: str,
    *,
    priority: int = 1,
    expires_in: timedelta | None = None,
    created_ago: timedelta = timedelta(days=1),
    effective_in: timedelta | None = None,
    voided: bool = False,
    currency: str = "USD",
) -> Credit:
    created = NOW - created_ago
    return Credit(
        id=credit_id,
        customer_key="acme",
        currency=currency,
        amount=max(Decimal(balance), Decimal(1)),
        balance=Decimal(balance),
        priority=priority,
        effective_at=created if effective_in is None else NOW + effective_in,
        create_time=created,
        expires_at=None if expires_in is None else NOW + expires_in,
        void_time=created if voided else None,
    )


def plan(credits: list[Credit], total: str) -> list[tuple[str, Decimal]]:
    return [(a.credit_id, a.amount) for a in plan_credit_applications(credits, Decimal(total), "USD", NOW)]


def test_credits_are_taken_by_priority_then_soonest_expiry_then_age() -> None:
    credits = [
        make("p2", "10", priority=2),
        make("never", "10"),
        make("later", "10", expires_in=timedelta(days=9)),
        make("sooner", "10", expires_in=timedelta(days=1)),
        make("never-older", "10", created_ago=timedelta(days=5)),
    ]

    assert plan(credits, "45") == [
        ("sooner", Decimal(10)),
        ("later", Decimal(10)),
        ("never-older", Decimal(10)),
        ("never", Decimal(10)),
        ("p2", Decimal(5)),
    ]


def test_only_usable_credits_in_the_invoice_currency_are_taken() -> None:
    credits = [
        make("voided", "10", voided=True),
        make("expired", "10", expires_in=timedelta(0)),
        make("not-yet", "10", effective_in=timedelta(seconds=1)),
        make("used-up", "0"),
        make("euro", "10", currency="EUR"),
        make("usable", "10"),
    ]

    assert plan(credits, "100") == [("usable", Decimal(10))]


@pytest.mark.parametrize("total", ["0", "-5"])
def test_nothing_is_taken_for_nothing_owed(total: str) -> None:
    assert plan([make("a", "10")], total) == []


def test_the_last_credit_is_taken_in_part() -> None:
    assert plan([make("a", "10.25"), make("b", "10", priority=2)], "12.30") == [
        ("a", Decimal("10.25")),
        ("b", Decimal("2.05")),
    ]


amounts = st.decimals(min_value=Decimal("0"), max_value=Decimal("10000"), places=2, allow_nan=False)
credit_lists = st.lists(
    st.builds(
        lambda i, balance, priority, expiry, age, voided, later: make(
            f"c{i:03d}",
            str(balance),
            priority=priority,
            expires_in=None if expiry is None else timedelta(hours=expiry),
            created_ago=timedelta(hours=age),
            effective_in=timedelta(hours=1) if later else None,
            voided=voided,
        ),
        st.integers(0, 999),
        amounts,
        st.integers(0, 3),
        st.none() | st.integers(-2, 48),
        st.integers(1, 100),
        st.booleans(),
        st.booleans(),
    ),
    max_size=12,
    unique_by=lambda c: c.id,
)


@given(credit_lists, amounts)
def test_never_more_than_a_balance_nor_the_total(credits: list[Credit], total: Decimal) -> None:
    applications = plan_credit_applications(credits, total, "USD", NOW)

    by_id = {c.id: c for c in credits}
    assert sum((a.amount for a in applications), Decimal(0)) <= total
    assert len({a.credit_id for a in applications}) == len(applications)
    for application in applications:
        source = by_id[application.credit_id]
        assert 0 < application.amount <= source.balance
        assert source.usable_at(NOW)


@given(credit_lists, amounts)
def test_order_is_respected_and_nothing_usable_is_skipped(credits: list[Credit], total: Decimal) -> None:
    applications = plan_credit_applications(credits, total, "USD", NOW)

    usable = sorted((c for c in credits if c.usable_at(NOW)), key=Credit.application_order)
    taken = [a.credit_id for a in applications]
    # A prefix of the usable credits, in application order; every one but the last is used up.
    assert taken == [c.id for c in usable[: len(taken)]]
    by_id = {c.id: c for c in credits}
    assert all(a.amount == by_id[a.credit_id].balance for a in applications[:-1])
    # What is taken is the total, or all there is when the credits do not cover it.
    available = sum((c.balance for c in usable), Decimal(0))
    assert sum((a.amount for a in applications), Decimal(0)) == max(Decimal(0), min(total, available))


def test_applications_are_plain_values() -> None:
    assert CreditApplication("a", Decimal(1)) == CreditApplication("a", Decimal("1.0"))


# --- CreateCredit validation -----------------------------------------------------------------------------


def fields_of(error: pytest.ExceptionInfo[InvalidArgument]) -> list[str]:
    return sorted(v.field for v in error.value.violations)


def test_a_valid_credit_takes_the_server_defaults() -> None:
    new = CreateCreditInput("r-1", "acme", Money(Decimal("5.00"), "EUR"))
    new.validate(NOW)

    made = new.to_credit("id-1", NOW)

    assert (made.priority, made.effective_at, made.balance, made.currency) == (1, NOW, Decimal(5), "EUR")


def test_every_rule_reports_at_once() -> None:
    new = CreateCreditInput(
        request_id="",
        customer_key="Bad",
        amount=Money(Decimal("-1"), "USD"),
        priority=-1,
        effective_at=NOW,
        expires_at=NOW,
        description="x" * 1025,
    )
    with pytest.raises(InvalidArgument) as raised:
        new.validate(NOW)

    assert fields_of(raised) == [
        "credit.amount.amount",
        "credit.customer_key",
        "credit.description",
        "credit.expires_at",
        "credit.priority",
        "request_id",
    ]


@pytest.mark.parametrize(
    ("amount", "currency", "ok"),
    [
        ("0.01", "USD", True),
        ("0.001", "USD", False),
        ("1", "JPY", True),
        ("0.5", "JPY", False),
        ("0.001", "BHD", True),
    ],
)
def test_amounts_are_whole_minor_units(amount: str, currency: str, ok: bool) -> None:
    new = CreateCreditInput("r-1", "acme", Money(Decimal(amount), currency))
    if ok:
        new.validate(NOW)
    else:
        with pytest.raises(InvalidArgument) as raised:
            new.validate(NOW)
        assert fields_of(raised) == ["credit.amount.amount"]


def test_an_expiry_is_after_the_effective_time_unset_meaning_now() -> None:
    with pytest.raises(InvalidArgument) as raised:
        CreateCreditInput("r", "acme", Money(Decimal(1), "USD"), expires_at=NOW).validate(NOW)
    assert fields_of(raised) == ["credit.expires_at"]
    CreateCreditInput("r", "acme", Money(Decimal(1), "USD"), expires_at=NOW + timedelta(seconds=1)).validate(
        NOW
    )
