"""Invoices through the public API: reading what the invoice run stores, the lifecycle and its refusals,
gap-free numbers under concurrent issue, credits taken at issue and given back at void, manual lines
and removals, recalculation, lists, and what invoices keep a customer from."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from decimal import Decimal

import grpc
import pytest

from billing.domain.invoices import InvoiceStatus
from billing.service import DraftInput, InvoiceService
from billing.store import BillingStore, ChargeBilledElsewhere
from metering.billing.v1 import billing_pb2 as pb
from metering.common.v1 import common_pb2
from meterlib.clock import FixedClock
from meterlib.errors import FailedPrecondition
from tests.integration.billing.helpers import (
    NOW,
    Billing,
    assert_violations,
    create_credit,
    create_customer,
    credit,
    customer,
    delete_customer,
    dt,
    error_info,
    get_customer,
    list_credits,
    md,
    resource_info,
    rpc_error,
    ts,
    update_customer,
)
from tests.integration.billing.invoice_helpers import (
    MAY,
    get_invoice,
    issue,
    line_of,
    list_invoices,
    manual,
    part,
    pay,
    stored_invoice,
    totals,
    update_draft,
    void,
    write_off,
)

TRANSITION = "ERROR_REASON_INVALID_STATE_TRANSITION"


async def test_a_stored_draft_reads_back_with_its_lines_and_totals(
    billing: Billing, invoice_service: InvoiceService
) -> None:
    await create_customer(billing, customer(billing_address=pb.Address(country="DE", city="Berlin")))
    stored = await stored_invoice(invoice_service, calls="123")

    got = await get_invoice(billing, stored.id)

    assert uuid.UUID(got.id) and got.status == pb.INVOICE_STATUS_DRAFT and got.number == ""
    assert (got.customer_key, got.customer_name, got.currency) == ("acme", "Acme Inc.", "USD")
    assert got.billing_address.city == "Berlin"
    # May's calls and June's fee in advance.
    assert dt(got.period.start_time) == MAY.start and dt(got.period.end_time) == MAY.end + timedelta(days=30)
    calls, fee = line_of(got, "calls"), line_of(got, "base")
    assert calls.type == pb.LINE_TYPE_USAGE and calls.quantity.value == "123"
    assert (calls.amount.amount, calls.total.amount) == ("12.3", "12.3")
    assert calls.price.unit.amount.amount == "0.1"  # the catalog Price the line was rated with
    assert calls.subscription_id == stored.lines[0].subscription_id
    assert fee.type == pb.LINE_TYPE_FLAT_FEE and fee.amount.amount == "10"
    assert totals(got) == {
        "amount": "22.3",
        "discount": "0",
        "total": "22.3",
        "credits": "0",
        "notes": "0",
        "due": "22.3",
    }
    assert not got.HasField("issue_time") and not got.HasField("due_time")


async def test_issue_numbers_snapshots_and_sets_the_due_time_then_pay(
    billing: Billing, invoice_service: InvoiceService, clock: FixedClock
) -> None:
    await create_customer(billing)
    stored = await stored_invoice(invoice_service)

    issued = await issue(billing, stored.id)

    assert issued.status == pb.INVOICE_STATUS_ISSUED and issued.number == "INV-000001"
    assert dt(issued.issue_time) == NOW and dt(issued.due_time) == NOW + timedelta(days=30)
    # The name is the one at issue; a later rename does not change the issued invoice.
    await update_customer(billing, customer(name="Acme GmbH"))
    clock.advance(timedelta(hours=1))
    again = await issue(billing, stored.id)
    assert again == issued and again.customer_name == "Acme Inc."
    paid = await pay(billing, stored.id, "ch_123")
    assert paid.status == pb.INVOICE_STATUS_PAID and paid.payment_reference == "ch_123"
    assert dt(paid.paid_time) == NOW + timedelta(hours=1)
    assert await pay(billing, stored.id, "ch_other") == paid  # idempotent: unchanged
    error = await rpc_error(void(billing, stored.id))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and error_info(error).reason == TRANSITION


async def test_a_due_time_given_on_the_draft_is_kept_at_issue(
    billing: Billing, invoice_service: InvoiceService
) -> None:
    await create_customer(billing)
    stored = await stored_invoice(invoice_service)
    due = NOW + timedelta(days=7)

    await update_draft(billing, "r-1", stored.id, due_time=ts(due), description="thanks")
    issued = await issue(billing, stored.id)

    assert dt(issued.due_time) == due and issued.description == "thanks"


async def test_transitions_the_contract_refuses(billing: Billing, invoice_service: InvoiceService) -> None:
    await create_customer(billing)
    gathering = await stored_invoice(invoice_service, status=InvoiceStatus.GATHERING)
    draft = await stored_invoice(invoice_service)

    refused = [
        issue(billing, gathering.id),
        void(billing, gathering.id),
        pay(billing, gathering.id),
        pay(billing, draft.id),
        write_off(billing, draft.id),
    ]
    for call in refused:
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(error).reason == TRANSITION
    voided = await void(billing, draft.id, "duplicate")
    assert voided.status == pb.INVOICE_STATUS_VOID and voided.status_reason == "duplicate"
    assert voided.number == "" and totals(voided)["due"] == "0"
    assert await void(billing, draft.id, "again") == voided
    for call in (issue(billing, draft.id), pay(billing, draft.id), write_off(billing, draft.id)):
        error = await rpc_error(call)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and error_info(error).reason == TRANSITION
    missing = str(uuid.uuid4())
    error = await rpc_error(issue(billing, missing))
    assert error.code() == grpc.StatusCode.NOT_FOUND and resource_info(error) == ("invoice", missing)
    assert_violations(await rpc_error(issue(billing, "not-a-uuid")), "invoice_id")
    assert_violations(await rpc_error(void(billing, "", "x" * 1025)), "invoice_id", "reason")


async def test_uncollectible_may_still_be_paid_or_voided(
    billing: Billing, invoice_service: InvoiceService
) -> None:
    await create_customer(billing)
    first, second = [await stored_invoice(invoice_service) for _ in range(2)]
    for stored in (first, second):
        await issue(billing, stored.id)
        written_off = await write_off(billing, stored.id, "bankrupt")
        assert written_off.status == pb.INVOICE_STATUS_UNCOLLECTIBLE
        assert written_off.status_reason == "bankrupt"
        assert await write_off(billing, stored.id) == written_off

    assert (await pay(billing, first.id)).status == pb.INVOICE_STATUS_PAID
    assert (await void(billing, second.id)).status == pb.INVOICE_STATUS_VOID
    error = await rpc_error(write_off(billing, first.id))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_concurrent_issues_get_gap_free_numbers(
    billing: Billing, invoice_service: InvoiceService
) -> None:
    await create_customer(billing)
    await create_customer(billing, customer("other", ["other-prod"]), md=md("other"))
    stored = [await stored_invoice(invoice_service) for _ in range(24)]
    elsewhere = await stored_invoice(invoice_service, "other", "other")

    # Every invoice issued twice at once: the second call of each finds it issued.
    issued = await asyncio.gather(*(issue(billing, s.id) for s in stored + stored))

    numbers = sorted({i.number for i in issued})
    assert numbers == [f"INV-{n:06d}" for n in range(1, 25)]
    assert len({(i.id, i.number) for i in issued}) == 24
    assert (await issue(billing, elsewhere.id, md("other"))).number == "INV-000001"


async def test_credits_are_applied_at_issue_and_restored_at_void(
    billing: Billing, invoice_service: InvoiceService
) -> None:
    await create_customer(billing)
    await create_credit(billing, "c-1", credit("15"))
    stored = await stored_invoice(invoice_service)  # 20.00

    issued = await issue(billing, stored.id)

    assert totals(issued) == {
        "amount": "20",
        "discount": "0",
        "total": "20",
        "credits": "15",
        "notes": "0",
        "due": "5",
    }
    assert await list_credits(billing) == []  # used up
    voided = await void(billing, stored.id, "mistake")
    assert totals(voided)["credits"] == "0" and totals(voided)["due"] == "0"
    [restored] = await list_credits(billing)
    assert restored.balance.amount == "15"
    # A second invoice takes them again; the voided one keeps its number.
    second = await issue(billing, (await stored_invoice(invoice_service, calls="50")).id)
    assert totals(second)["credits"] == "15" and totals(second)["due"] == "0"
    assert (voided.number, second.number) == ("INV-000001", "INV-000002")


async def test_manual_lines_and_removed_lines(billing: Billing, invoice_service: InvoiceService) -> None:
    await create_customer(billing)
    stored = await stored_invoice(invoice_service)
    fee = line_of(await get_invoice(billing, stored.id), "base")

    edited = await update_draft(
        billing, "edit-1", stored.id, add_lines=[manual("Setup", "3", "1.255")], remove_line_ids=[fee.id]
    )

    [setup] = [line for line in edited.lines if line.type == pb.LINE_TYPE_MANUAL]
    assert (setup.name, setup.quantity.value, setup.unit_amount.amount) == ("Setup", "3", "1.255")
    assert setup.amount.amount == "3.77"  # 3.765 rounded half away from zero
    assert dt(setup.period.start_time) == MAY.start  # the invoice's period
    assert fee.id not in {line.id for line in edited.lines}
    assert totals(edited)["total"] == "13.77"
    # The same request again is answered without adding the line twice; another one with its id is not.
    assert (
        await update_draft(
            billing, "edit-1", stored.id, add_lines=[manual("Setup", "3", "1.255")], remove_line_ids=[fee.id]
        )
        == edited
    )
    error = await rpc_error(update_draft(billing, "edit-1", stored.id, description="other"))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(error).reason == "ERROR_REASON_IDEMPOTENCY_KEY_REUSED"
    credit_line = await update_draft(billing, "edit-2", stored.id, add_lines=[manual("Goodwill", "-1", "5")])
    assert totals(credit_line)["total"] == "8.77"
    unknown = str(uuid.uuid4())
    error = await rpc_error(update_draft(billing, "edit-3", stored.id, remove_line_ids=[unknown]))
    assert error.code() == grpc.StatusCode.NOT_FOUND and resource_info(error) == ("invoice_line", unknown)
    error = await rpc_error(
        update_draft(billing, "edit-4", stored.id, add_lines=[manual("X", "1", "1", "EUR")])
    )
    assert error_info(error).reason == "ERROR_REASON_CURRENCY_MISMATCH"
    bad = pb.ManualLine(name="", quantity=common_pb2.Decimal(value="x"))
    assert_violations(
        await rpc_error(update_draft(billing, "", "nope", add_lines=[bad])),
        "request_id",
        "invoice_id",
        "add_lines[0].name",
        "add_lines[0].quantity",
        "add_lines[0].unit_amount",
    )
    await issue(billing, stored.id)
    error = await rpc_error(update_draft(billing, "edit-5", stored.id, description="late"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "ERROR_REASON_IMMUTABLE"


async def test_recalculation_keeps_manual_lines_removals_and_line_ids(
    billing: Billing, invoice_service: InvoiceService
) -> None:
    await create_customer(billing)
    subscription_id = str(uuid.uuid4())
    stored = await stored_invoice(
        invoice_service, status=InvoiceStatus.GATHERING, subscription_id=subscription_id
    )
    before = await get_invoice(billing, stored.id)
    calls, fee = line_of(before, "calls"), line_of(before, "base")
    # Manual edits are for DRAFT invoices: the period ended, the run moved it to DRAFT.
    await invoice_service.save_draft(
        "default", DraftInput("acme", [part("100", subscription_id)], invoice_id=stored.id)
    )
    await update_draft(
        billing, "e-1", stored.id, add_lines=[manual("Setup", "1", "2")], remove_line_ids=[fee.id]
    )

    # Late usage: the run recalculates with 150 calls.
    await invoice_service.save_draft(
        "default", DraftInput("acme", [part("150", subscription_id)], invoice_id=stored.id)
    )

    after = await get_invoice(billing, stored.id)
    assert after.status == pb.INVOICE_STATUS_DRAFT
    assert [(line.id, line.type) for line in after.lines] == [
        (calls.id, pb.LINE_TYPE_USAGE),
        (after.lines[1].id, pb.LINE_TYPE_MANUAL),
    ]
    assert line_of(after, "calls").amount.amount == "15" and totals(after)["total"] == "17"
    assert len(await list_invoices(billing)) == 1
    with pytest.raises(FailedPrecondition) as refused:
        await invoice_service.save_draft(
            "default",
            DraftInput(
                "acme", [part("150", subscription_id)], status=InvoiceStatus.GATHERING, invoice_id=stored.id
            ),
        )
    assert refused.value.reason == TRANSITION


async def test_a_charge_is_billed_by_one_invoice_and_progressive_usage_adds_up(
    billing: Billing, invoice_service: InvoiceService, billing_store: BillingStore
) -> None:
    await create_customer(billing)
    subscription_id = str(uuid.uuid4())
    first = await stored_invoice(invoice_service, subscription_id=subscription_id)

    # The same period again, on another invoice: refused, nothing stored.
    with pytest.raises(ChargeBilledElsewhere) as refused:
        await stored_invoice(invoice_service, subscription_id=subscription_id)
    assert len(refused.value.charge_ids) == 2
    assert [i.id for i in await list_invoices(billing)] == [first.id]
    billed = await billing_store.billed.billed("default", subscription_id)
    assert {b.final for b in billed.values()} == {True}
    usage = [b.usage for b in billed.values() if b.usage is not None]
    assert usage == [Decimal(100)]
    assert all(b.invoice_ids == (first.id,) for b in billed.values())
    # A retry of the same invoice (same id) rewrites its own records.
    again = await stored_invoice(invoice_service, subscription_id=subscription_id, invoice_id=first.id)
    assert again.id == first.id


async def test_lists_filter_and_page(
    billing: Billing, invoice_service: InvoiceService, clock: FixedClock
) -> None:
    await create_customer(billing)
    await create_customer(billing, customer("beta", ["beta-prod"]))
    subscription_id = str(uuid.uuid4())
    made = []
    for key in ("acme", "beta", "acme", "beta", "acme"):
        sub = subscription_id if len(made) == 2 else None
        made.append(await stored_invoice(invoice_service, key, subscription_id=sub))
        clock.advance(timedelta(minutes=1))
    await issue(billing, made[0].id)

    every = await list_invoices(billing)
    assert [i.id for i in every] == [i.id for i in reversed(made)]
    assert all(not i.lines for i in every)
    assert [i.id for i in await list_invoices(billing, customer_keys=["beta"])] == [made[3].id, made[1].id]
    issued = await list_invoices(billing, statuses=[pb.INVOICE_STATUS_ISSUED])
    assert [i.id for i in issued] == [made[0].id]
    by_sub = await list_invoices(billing, subscription_id=subscription_id, include_lines=True)
    assert [i.id for i in by_sub] == [made[2].id] and len(by_sub[0].lines) == 2
    june = common_pb2.TimeRange(start_time=ts(MAY.end + timedelta(days=40)))
    assert await list_invoices(billing, period=june) == []
    assert len(await list_invoices(billing, period=common_pb2.TimeRange(end_time=ts(MAY.end)))) == 5
    assert_violations(
        await rpc_error(
            billing.ListInvoices(pb.ListInvoicesRequest(statuses=[pb.INVOICE_STATUS_UNSPECIFIED]))
        ),
        "statuses[0]",
    )
    first_page = await billing.ListInvoices(pb.ListInvoicesRequest(page=common_pb2.PageRequest(page_size=2)))
    other_filters = pb.ListInvoicesRequest(
        customer_keys=["acme"], page=common_pb2.PageRequest(page_token=first_page.page.next_page_token)
    )
    assert_violations(await rpc_error(billing.ListInvoices(other_filters)), "page.page_token")


async def test_open_invoices_keep_the_customer_from_deletion_and_its_currency(
    billing: Billing, invoice_service: InvoiceService
) -> None:
    await create_customer(billing)
    stored = await stored_invoice(invoice_service)

    error = await rpc_error(delete_customer(billing, "acme"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "ERROR_REASON_IN_USE"
    assert error_info(error).metadata["referrer_kind"] == "invoice"
    await issue(billing, stored.id)
    assert (await rpc_error(delete_customer(billing, "acme"))).code() == grpc.StatusCode.FAILED_PRECONDITION
    error = await rpc_error(update_customer(billing, customer(currency="EUR")))
    assert error_info(error).reason == "ERROR_REASON_IN_USE"
    await pay(billing, stored.id)

    deleted = await delete_customer(billing, "acme")
    assert deleted.HasField("delete_time")
    # The invoice still reads, with the name it was issued to.
    assert (await get_invoice(billing, stored.id)).customer_name == "Acme Inc."
    assert (await get_customer(billing, "acme")).HasField("delete_time")


async def test_namespaces_are_isolated(billing: Billing, invoice_service: InvoiceService) -> None:
    await create_customer(billing)
    await create_customer(billing, md=md("tenant-b"))
    stored = await stored_invoice(invoice_service)

    error = await rpc_error(get_invoice(billing, stored.id, md("tenant-b")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert await list_invoices(billing, md("tenant-b")) == []
    assert (await rpc_error(issue(billing, stored.id, md("tenant-b")))).code() == grpc.StatusCode.NOT_FOUND
    assert (await get_invoice(billing, stored.id)).status == pb.INVOICE_STATUS_DRAFT
