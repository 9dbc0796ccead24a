"""Proto ⇄ domain conversion of the billing service.

Decoding a request never raises on bad content: every problem found on the wire (money whose amount or
currency ``meterlib.money`` refuses, a missing required message) becomes a field violation carried by
the resulting ``…Input`` as ``decode_violations``; its ``validate()`` reports them together with the
domain's rules, so a caller sees every problem at once. ``to_proto_…`` writes canonical forms (``"12.5"``).
"""

from __future__ import annotations

from billing.domain import Address, CreateCreditInput, Credit, Customer, CustomerInput
from metering.billing.v1 import billing_pb2 as pb
from metering.common.v1 import common_pb2
from meterlib.errors import FieldViolation, InvalidArgument
from meterlib.money import Money, format_decimal
from meterlib.wire import optional_time, to_timestamp

# --- customers ------------------------------------------------------------------------------------------


def from_proto_customer_input(c: pb.Customer, present: bool) -> CustomerInput:
    """The full state a CreateCustomer or UpdateCustomer request sends (output-only fields dropped)."""
    address = None
    if c.HasField("billing_address"):
        a = c.billing_address
        address = Address(
            country=a.country,
            postal_code=a.postal_code,
            state=a.state,
            city=a.city,
            line1=a.line1,
            line2=a.line2,
        )
    return CustomerInput(
        key=c.key,
        name=c.name,
        currency=c.currency,
        subject_keys=tuple(c.subject_keys),
        billing_address=address,
        email=c.email,
        metadata=dict(c.metadata),
        given=present,
    )


def to_proto_customer(c: Customer) -> pb.Customer:
    """The wire form of a customer."""
    message = pb.Customer(
        key=c.key,
        name=c.name,
        currency=c.currency,
        subject_keys=list(c.subject_keys),
        email=c.email,
        metadata=dict(c.metadata),
        create_time=to_timestamp(c.create_time),
        update_time=to_timestamp(c.update_time),
    )
    a = c.billing_address
    if a is not None:
        message.billing_address.CopyFrom(
            pb.Address(
                country=a.country,
                postal_code=a.postal_code,
                state=a.state,
                city=a.city,
                line1=a.line1,
                line2=a.line2,
            )
        )
    if c.delete_time is not None:
        message.delete_time.CopyFrom(to_timestamp(c.delete_time))
    return message


# --- credits --------------------------------------------------------------------------------------------


def from_proto_create_credit(request: pb.CreateCreditRequest) -> CreateCreditInput:
    """The credit a CreateCredit request asks for."""
    c = request.credit
    violations: list[FieldViolation] = []
    amount = None
    if not c.HasField("amount"):
        violations.append(FieldViolation("credit.amount", "is required"))
    else:
        try:
            amount = Money.from_wire(c.amount.amount, c.amount.currency, "credit.amount")
        except InvalidArgument as exc:
            violations.extend(exc.violations)
    return CreateCreditInput(
        request_id=request.request_id,
        customer_key=c.customer_key,
        amount=amount,
        priority=c.priority,
        effective_at=optional_time(c, "effective_at"),
        expires_at=optional_time(c, "expires_at"),
        description=c.description,
        given=request.HasField("credit"),
        decode_violations=tuple(violations) if request.HasField("credit") else (),
    )


def to_proto_credit(c: Credit) -> pb.Credit:
    """The wire form of a credit."""
    message = pb.Credit(
        id=c.id,
        customer_key=c.customer_key,
        amount=common_pb2.Money(amount=format_decimal(c.amount), currency=c.currency),
        balance=common_pb2.Money(amount=format_decimal(c.balance), currency=c.currency),
        priority=c.priority,
        effective_at=to_timestamp(c.effective_at),
        description=c.description,
        create_time=to_timestamp(c.create_time),
    )
    if c.expires_at is not None:
        message.expires_at.CopyFrom(to_timestamp(c.expires_at))
    if c.void_time is not None:
        message.void_time.CopyFrom(to_timestamp(c.void_time))
    return message
