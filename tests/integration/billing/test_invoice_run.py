"""The invoice run end to end through all four services' APIs (ingest, catalog, entitlements, billing), on
one fixed clock: the LLM provider example invoiced to the cent, late usage, idempotent runs, progressive
invoices and previews."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import json_format

from metering.billing.v1 import billing_pb2 as pb
from metering.catalog.v1 import catalog_pb2 as cpb
from metering.catalog.v1 import catalog_pb2_grpc
from metering.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from meterlib.clock import FixedClock
from meterlib.server import ServiceRunner
from tests.integration.billing.helpers import (
    Billing,
    Metadata,
    create_customer,
    customer,
    md,
    rpc_error,
    ts,
    violated_fields,
)
from tests.integration.billing.invoice_helpers import get_invoice, issue
from tests.integration.ingest.helpers import event

pytestmark = pytest.mark.asyncio

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
JULY_1 = datetime(2024, 7, 1, tzinfo=UTC)
JULY_16 = datetime(2024, 7, 16, tzinfo=UTC)
AUGUST_1 = datetime(2024, 8, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
HALF_HOUR = timedelta(minutes=30)  # within the collection delay (an hour): drafts stay drafts


@pytest.fixture
async def ingest(ingest_server: ServiceRunner) -> AsyncIterator[ingest_pb2_grpc.IngestServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest_server.port}") as channel:
        yield ingest_pb2_grpc.IngestServiceStub(channel)


@pytest.fixture
async def catalog(catalog_server: ServiceRunner) -> AsyncIterator[catalog_pb2_grpc.CatalogServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{catalog_server.port}") as channel:
        yield catalog_pb2_grpc.CatalogServiceStub(channel)


async def apply_llm_provider(
    ingest: Any, catalog: Any, billing: Billing, clock: FixedClock, md: Metadata = None
) -> None:
    """The LLM provider example's meters and catalog in a namespace, its plans published now, and customer
    acme (subject acme-prod, USD)."""
    for item in yaml.safe_load((EXAMPLES / "llm-provider.meters.yaml").read_text())["meters"]:
        meter = json_format.ParseDict(item, ingest_pb2.Meter())
        await ingest.CreateMeter(ingest_pb2.CreateMeterRequest(meter=meter), metadata=md)
    document = yaml.safe_load((EXAMPLES / "llm-provider.yaml").read_text())
    for plan in document["plans"]:
        plan["effective_from"] = clock.now().isoformat().replace("+00:00", "Z")
    await catalog.ApplyCatalog(cpb.ApplyCatalogRequest(document=yaml.safe_dump(document)), metadata=md)
    await create_customer(billing, customer("acme", ["acme-prod"], currency="USD"), md=md)


@pytest.fixture
async def llm_provider(ingest: Any, catalog: Any, billing: Billing, clock: FixedClock) -> None:
    """The LLM provider example in the default namespace, published now (mid-June 2024)."""
    await apply_llm_provider(ingest, catalog, billing, clock)


_numbers = iter(range(1, 1_000_000))


async def use(ingest: Any, at: datetime, md: Metadata = None, **data: Any) -> None:
    """One event of the example's kind at ``at`` ("llm.request" unless ``hours`` are given)."""
    kind = "llm.fine_tuning" if "hours" in data else "llm.request"
    sent = event(f"e-{next(_numbers)}", type=kind, subject="acme-prod", time=at, data=json.dumps(data))
    reply = await ingest.Ingest(ingest_pb2.IngestRequest(events=[sent]), metadata=md)
    assert reply.accepted_count == 1, reply


async def run(
    billing: Billing, request_id: str, as_of: datetime, md: Metadata = None
) -> pb.RunInvoicesResponse:
    request = pb.RunInvoicesRequest(request_id=request_id, as_of=ts(as_of))
    response: pb.RunInvoicesResponse = await billing.RunInvoices(request, metadata=md)
    return response


def lines(invoice: pb.Invoice) -> list[tuple[str, str, Decimal, Decimal]]:
    return [
        (
            line.name,
            line.period.start_time.ToJsonString()[:10],
            Decimal(line.quantity.value),
            Decimal(line.total.amount),
        )
        for line in invoice.lines
    ]


def total(invoice: pb.Invoice) -> Decimal:
    return Decimal(invoice.totals.total.amount)


async def subscribe_and_upgrade(billing: Billing, ingest: Any, clock: FixedClock) -> str:
    """acme on Developer from July 1st, usage, an immediate upgrade to Scale on July 16th, more usage."""
    request = pb.CreateSubscriptionRequest(
        request_id="sub-acme", customer_key="acme", plan_key="developer", start_time=ts(JULY_1)
    )
    subscription = (await billing.CreateSubscription(request)).subscription
    clock.set(JULY_1 + timedelta(days=2))
    await use(ingest, JULY_1 + HOUR, model="nle-large", input_tokens=1_000_000, output_tokens=300_000)
    await use(ingest, JULY_1 + 2 * HOUR, model="nle-small", input_tokens=234_567, output_tokens=45_678)
    clock.set(JULY_16)
    change = pb.ChangeSubscriptionPlanRequest(
        request_id="upgrade",
        subscription_id=subscription.id,
        plan_key="scale",
        timing=pb.CHANGE_TIMING_IMMEDIATE,
    )
    await billing.ChangeSubscriptionPlan(change)
    clock.set(datetime(2024, 7, 31, tzinfo=UTC))
    await use(ingest, JULY_16 + HOUR, model="nle-large", input_tokens=2_000_000, output_tokens=800_000)
    await use(ingest, JULY_16 + 2 * HOUR, model="nle-large", input_tokens=345_678, output_tokens=76_543)
    await use(ingest, JULY_16 + 3 * HOUR, model="nle-large", hours="2.5")
    return subscription.id


@pytest.mark.usefixtures("llm_provider")
async def test_llm_provider_upgraded_mid_month_is_invoiced_to_the_cent(
    billing: Billing, ingest: Any, clock: FixedClock
) -> None:
    """Developer (input tokens $0.000002 with 10,000 free a month, output $0.000006) from July 1st, upgraded
    immediately to Scale (input $0.000001, output $0.000003, fine-tuning $3/hour) on July 16th:

      Developer, Jul 1 - Jul 16: input 1,234,567 - 10,000 free = 1,224,567 x 0.000002 = 2.449134 -> 2.45
                                 output 345,678 x 0.000006                         = 2.074068 -> 2.07
      Scale, Jul 16 - Aug 1:     fine-tuning 2.5 h x 3                              = 7.50
                                 input 2,345,678 x 0.000001                         = 2.345678 -> 2.35
                                 output 876,543 x 0.000003                          = 2.629629 -> 2.63
      total 17.00
    """
    subscription_id = await subscribe_and_upgrade(billing, ingest, clock)
    clock.set(AUGUST_1 + HALF_HOUR)

    first = await run(billing, "run-august", AUGUST_1)

    assert len(first.invoice_ids) == 1
    invoice = await get_invoice(billing, first.invoice_ids[0])
    assert invoice.status == pb.INVOICE_STATUS_DRAFT
    assert lines(invoice) == [
        ("Input tokens", "2024-07-01", Decimal(1_234_567), Decimal("2.45")),
        ("Output tokens", "2024-07-01", Decimal(345_678), Decimal("2.07")),
        ("Fine-tuning", "2024-07-16", Decimal("2.5"), Decimal("7.50")),
        ("Input tokens", "2024-07-16", Decimal(2_345_678), Decimal("2.35")),
        ("Output tokens", "2024-07-16", Decimal(876_543), Decimal("2.63")),
    ]
    assert all(line.subscription_id == subscription_id for line in invoice.lines)
    assert [d.quantity.value for d in invoice.lines[0].discounts] == ["10000"]
    assert (total(invoice), Decimal(invoice.totals.amount_due.amount)) == (Decimal(17), Decimal(17))
    assert invoice.period.start_time.ToDatetime(UTC) == JULY_1
    assert invoice.period.end_time.ToDatetime(UTC) == AUGUST_1

    # The same run again, and another run for the same moment, make nothing new.
    assert (await run(billing, "run-august", AUGUST_1)).invoice_ids == first.invoice_ids
    again = await run(billing, "run-august-again", AUGUST_1)
    assert (list(again.invoice_ids), again.already_invoiced_count) == ([], 0)
    listed = await billing.ListInvoices(pb.ListInvoicesRequest(customer_keys=["acme"]))
    assert [i.id for i in listed.invoices] == list(first.invoice_ids)
    # The request id of a run cannot be reused for another one.
    error = await rpc_error(run(billing, "run-august", AUGUST_1 - HOUR))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS


@pytest.mark.usefixtures("llm_provider")
async def test_late_usage_changes_the_draft_until_it_is_issued(
    billing: Billing, ingest: Any, clock: FixedClock
) -> None:
    await subscribe_and_upgrade(billing, ingest, clock)
    clock.set(AUGUST_1 + HALF_HOUR)
    [invoice_id] = (await run(billing, "run", AUGUST_1)).invoice_ids

    # An event of July 20th arrives late, before the draft is issued: recalculated, it counts.
    await use(ingest, datetime(2024, 7, 20, tzinfo=UTC), model="nle-large", input_tokens=1_000_000)
    recalculated = (
        await billing.RecalculateInvoice(pb.RecalculateInvoiceRequest(invoice_id=invoice_id))
    ).invoice
    assert total(recalculated) == Decimal(18)
    before = {line.id for line in (await get_invoice(billing, invoice_id)).lines}

    # Issuing recalculates a last time; the issued invoice is numbered and immutable.
    await use(ingest, datetime(2024, 7, 21, tzinfo=UTC), model="nle-large", output_tokens=1_000_000)
    issued = await issue(billing, invoice_id)
    assert (issued.status, issued.number) == (pb.INVOICE_STATUS_ISSUED, "INV-000001")
    assert total(issued) == Decimal(21)
    assert {line.id for line in issued.lines} == before
    error = await rpc_error(billing.RecalculateInvoice(pb.RecalculateInvoiceRequest(invoice_id=invoice_id)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.usefixtures("llm_provider")
async def test_drafts_are_issued_once_their_collection_time_has_passed(
    billing: Billing, ingest: Any, clock: FixedClock
) -> None:
    await subscribe_and_upgrade(billing, ingest, clock)
    clock.set(AUGUST_1 + HALF_HOUR)
    [invoice_id] = (await run(billing, "run", AUGUST_1)).invoice_ids
    draft = await get_invoice(billing, invoice_id)
    assert draft.collection_time.ToDatetime(UTC) == AUGUST_1 + HOUR  # the period end + the delay

    clock.set(AUGUST_1 + 2 * HOUR)
    for _ in range(100):
        invoice = await get_invoice(billing, invoice_id)
        if invoice.status == pb.INVOICE_STATUS_ISSUED:
            break
        await asyncio.sleep(0.05)
    assert (invoice.status, invoice.number, total(invoice)) == (pb.INVOICE_STATUS_ISSUED, "INV-000001", 17)


@pytest.mark.usefixtures("llm_provider")
async def test_a_progressive_invoice_bills_the_usage_so_far_and_the_period_end_the_rest(
    billing: Billing, ingest: Any, clock: FixedClock
) -> None:
    subscription_id = await subscribe_and_upgrade(billing, ingest, clock)
    clock.set(datetime(2024, 7, 31, 12, tzinfo=UTC))
    request = pb.CreateProgressiveInvoiceRequest(request_id="now", customer_key="acme", as_of=ts(clock.now()))
    progressive = (await billing.CreateProgressiveInvoice(request)).invoice
    assert progressive.progressive
    assert total(progressive) == Decimal(17)  # everything so far
    assert (await billing.CreateProgressiveInvoice(request)).invoice.id == progressive.id  # idempotent

    # The preview shows what the period end would add: nothing yet, then the new usage.
    await use(ingest, datetime(2024, 7, 31, 13, tzinfo=UTC), model="nle-large", input_tokens=3_000_000)
    clock.set(datetime(2024, 7, 31, 14, tzinfo=UTC))
    preview = (
        await billing.PreviewInvoice(pb.PreviewInvoiceRequest(subscription_id=subscription_id))
    ).invoice
    assert (preview.id, preview.status) == ("", pb.INVOICE_STATUS_GATHERING)
    assert total(preview) == Decimal(3)
    # The customer's preview gathers its running subscriptions (here the one).
    of_customer = (await billing.PreviewInvoice(pb.PreviewInvoiceRequest(customer_key="acme"))).invoice
    assert lines(of_customer) == lines(preview)
    for wrong in (
        pb.PreviewInvoiceRequest(),
        pb.PreviewInvoiceRequest(subscription_id=subscription_id, customer_key="acme"),
    ):
        error = await rpc_error(billing.PreviewInvoice(wrong))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violated_fields(error) == ["subscription_id", "customer_key"]
    error = await rpc_error(billing.PreviewInvoice(pb.PreviewInvoiceRequest(customer_key="nobody")))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    clock.set(AUGUST_1 + HALF_HOUR)
    [final_id] = (await run(billing, "run", AUGUST_1)).invoice_ids
    final = await get_invoice(billing, final_id)
    assert total(final) == Decimal(3)  # only what the progressive invoice did not bill
    scale_input = [line for line in final.lines if Decimal(line.total.amount) == 3]
    assert [Decimal(line.previously_billed_quantity.value) for line in scale_input] == [Decimal(2_345_678)]


SEPTEMBER_1 = datetime(2024, 9, 1, tzinfo=UTC)


@pytest.mark.usefixtures("llm_provider")
async def test_late_usage_after_issue_lands_in_the_next_invoice(
    billing: Billing, ingest: Any, clock: FixedClock
) -> None:
    await subscribe_and_upgrade(billing, ingest, clock)
    clock.set(AUGUST_1 + HALF_HOUR)
    [july_id] = (await run(billing, "run-july", AUGUST_1)).invoice_ids
    july = await issue(billing, july_id)
    assert total(july) == Decimal(17)

    # July usage reported after July's invoice was issued, and August usage.
    clock.set(datetime(2024, 8, 10, tzinfo=UTC))
    await use(ingest, datetime(2024, 7, 25, tzinfo=UTC), model="nle-large", input_tokens=1_000_000)
    await use(ingest, datetime(2024, 8, 5, tzinfo=UTC), model="nle-large", output_tokens=500_000)
    assert await get_invoice(billing, july_id) == july  # issued: immutable

    clock.set(SEPTEMBER_1 + HALF_HOUR)
    [august_id] = (await run(billing, "run-august", SEPTEMBER_1)).invoice_ids
    august = await get_invoice(billing, august_id)
    assert lines(august) == [
        ("Fine-tuning", "2024-08-01", Decimal(0), Decimal(0)),
        # Scale's July input tokens: 3,345,678 in all, 2,345,678 of them billed in July -> 1.00 more.
        ("Input tokens", "2024-07-16", Decimal(3_345_678), Decimal("1.00")),
        ("Input tokens", "2024-08-01", Decimal(0), Decimal("0.00")),
        ("Output tokens", "2024-08-01", Decimal(500_000), Decimal("1.50")),
    ]
    late = august.lines[1]
    assert Decimal(late.previously_billed_quantity.value) == Decimal(2_345_678)
    assert "reported after its invoice was issued" in late.description
    assert total(august) == Decimal("2.50")

    # Once billed, the late usage is not billed again: the next invoice has only September's usage.
    issued = await issue(billing, august_id)
    assert total(issued) == Decimal("2.50")
    clock.set(datetime(2024, 10, 1, tzinfo=UTC) + HALF_HOUR)
    [september_id] = (await run(billing, "run-september", datetime(2024, 10, 1, tzinfo=UTC))).invoice_ids
    assert total(await get_invoice(billing, september_id)) == Decimal(0)


@pytest.mark.usefixtures("llm_provider")
async def test_too_little_usage_for_a_minimum_commitment_gets_a_minimum_spend_line(
    billing: Billing, ingest: Any, clock: FixedClock
) -> None:
    """Enterprise: output tokens at $0.0000024 with a $5,000 monthly minimum, input tokens at $0.0000008.

    July: output 1,000,000 = 2.40, minimum spend 5,000 - 2.40 = 4,997.60; input 500,000 = 0.40; 5,000.40.
    2,000,000 output tokens of July reported after July's invoice was issued add 4.80 of usage to August's
    invoice and take as much off July's minimum spend; August, without usage, is the minimum: 5,000.00.
    """
    request = pb.CreateSubscriptionRequest(
        request_id="sub-acme", customer_key="acme", plan_key="enterprise", start_time=ts(JULY_1)
    )
    await billing.CreateSubscription(request)
    clock.set(JULY_16)
    await use(ingest, JULY_16, model="nle-large", input_tokens=500_000, output_tokens=1_000_000)

    clock.set(AUGUST_1 + HALF_HOUR)
    [july_id] = (await run(billing, "run-july", AUGUST_1)).invoice_ids
    july = await issue(billing, july_id)
    assert lines(july) == [
        ("Fine-tuning", "2024-07-01", Decimal(0), Decimal(0)),
        ("Input tokens", "2024-07-01", Decimal(500_000), Decimal("0.40")),
        ("Output tokens", "2024-07-01", Decimal(1_000_000), Decimal("2.40")),
        ("Output tokens minimum spend", "2024-07-01", Decimal(1), Decimal("4997.60")),
    ]
    assert total(july) == Decimal("5000.40")
    assert [line.type for line in july.lines][-1] == pb.LINE_TYPE_MINIMUM_SPEND

    clock.set(datetime(2024, 8, 10, tzinfo=UTC))
    await use(ingest, datetime(2024, 7, 20, tzinfo=UTC), model="nle-large", output_tokens=2_000_000)
    clock.set(SEPTEMBER_1 + HALF_HOUR)
    [august_id] = (await run(billing, "run-august", SEPTEMBER_1)).invoice_ids
    august = await get_invoice(billing, august_id)
    assert lines(august) == [
        ("Fine-tuning", "2024-08-01", Decimal(0), Decimal(0)),
        ("Input tokens", "2024-08-01", Decimal(0), Decimal(0)),
        ("Output tokens", "2024-07-01", Decimal(3_000_000), Decimal("4.80")),
        ("Output tokens minimum spend", "2024-07-01", Decimal(1), Decimal("-4.80")),
        ("Output tokens", "2024-08-01", Decimal(0), Decimal(0)),
        ("Output tokens minimum spend", "2024-08-01", Decimal(1), Decimal(5000)),
    ]
    assert total(august) == Decimal(5000)


async def test_namespaces_are_isolated(
    billing: Billing, ingest: Any, catalog: Any, clock: FixedClock
) -> None:
    """The same example, customer key and subject key in two namespaces, each with its own usage: each
    namespace's run invoices only its own subscriptions, on its own usage, numbered on its own."""
    other = md("other")
    await apply_llm_provider(ingest, catalog, billing, clock)
    await apply_llm_provider(ingest, catalog, billing, clock, md=other)
    subscriptions = {}
    for namespace in (None, other):
        request = pb.CreateSubscriptionRequest(
            request_id="sub-acme", customer_key="acme", plan_key="developer", start_time=ts(JULY_1)
        )
        reply = await billing.CreateSubscription(request, metadata=namespace)
        subscriptions[namespace] = reply.subscription.id
    assert subscriptions[None] != subscriptions[other]
    clock.set(JULY_16)
    await use(ingest, JULY_16, output_tokens=1_000_000)  # 6.00
    await use(ingest, JULY_16, md=other, output_tokens=2_000_000)  # 12.00

    for namespace, mine, theirs in (
        (None, subscriptions[None], subscriptions[other]),
        (other, subscriptions[other], subscriptions[None]),
    ):
        got = await billing.GetSubscription(pb.GetSubscriptionRequest(id=mine), metadata=namespace)
        assert got.subscription.id == mine
        error = await rpc_error(
            billing.GetSubscription(pb.GetSubscriptionRequest(id=theirs), metadata=namespace)
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND

    clock.set(AUGUST_1 + HALF_HOUR)
    [default_id] = (await run(billing, "run", AUGUST_1)).invoice_ids
    invoice = await issue(billing, default_id)
    assert (invoice.number, total(invoice)) == ("INV-000001", Decimal(6))
    # Nothing of the default namespace's run shows in the other one, which has not run yet.
    error = await rpc_error(billing.GetInvoice(pb.GetInvoiceRequest(id=default_id), metadata=other))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert not (await billing.ListInvoices(pb.ListInvoicesRequest(), metadata=other)).invoices

    # The same request id is another run in another namespace, with its own invoice and numbers.
    [other_id] = (await run(billing, "run", AUGUST_1, md=other)).invoice_ids
    assert other_id != default_id
    other_invoice = await issue(billing, other_id, md=other)
    assert (other_invoice.number, total(other_invoice)) == ("INV-000001", Decimal(12))
    listed = await billing.ListInvoices(pb.ListInvoicesRequest())
    assert [i.id for i in listed.invoices] == [default_id]
    error = await rpc_error(
        billing.PreviewInvoice(pb.PreviewInvoiceRequest(subscription_id=subscriptions[None]), metadata=other)
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.usefixtures("llm_provider")
async def test_late_usage_of_a_period_whose_invoice_was_voided_is_not_billed(
    billing: Billing, ingest: Any, clock: FixedClock
) -> None:
    await subscribe_and_upgrade(billing, ingest, clock)
    clock.set(AUGUST_1 + HALF_HOUR)
    [july_id] = (await run(billing, "run-july", AUGUST_1)).invoice_ids
    await issue(billing, july_id)
    await billing.VoidInvoice(pb.VoidInvoiceRequest(invoice_id=july_id, reason="billed by hand"))

    clock.set(datetime(2024, 8, 10, tzinfo=UTC))
    await use(ingest, datetime(2024, 7, 25, tzinfo=UTC), model="nle-large", input_tokens=1_000_000)
    clock.set(SEPTEMBER_1 + HALF_HOUR)
    [august_id] = (await run(billing, "run-august", SEPTEMBER_1)).invoice_ids
    august = await get_invoice(billing, august_id)
    assert {line.period.start_time.ToJsonString()[:10] for line in august.lines} == {"2024-08-01"}
    assert total(august) == Decimal(0)
