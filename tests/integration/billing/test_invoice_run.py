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
from tests.integration.billing.helpers import Billing, create_customer, customer, rpc_error, ts
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


@pytest.fixture
async def llm_provider(ingest: Any, catalog: Any, billing: Billing, clock: FixedClock) -> None:
    """The LLM provider example's meters and catalog, its plans published now (mid-June 2024), and customer
    acme (subject acme-prod, USD)."""
    for item in yaml.safe_load((EXAMPLES / "llm-provider.meters.yaml").read_text())["meters"]:
        meter = json_format.ParseDict(item, ingest_pb2.Meter())
        await ingest.CreateMeter(ingest_pb2.CreateMeterRequest(meter=meter))
    document = yaml.safe_load((EXAMPLES / "llm-provider.yaml").read_text())
    for plan in document["plans"]:
        plan["effective_from"] = clock.now().isoformat().replace("+00:00", "Z")
    await catalog.ApplyCatalog(cpb.ApplyCatalogRequest(document=yaml.safe_dump(document)))
    await create_customer(billing, customer("acme", ["acme-prod"], currency="USD"))


_numbers = iter(range(1, 1_000_000))


async def use(ingest: Any, at: datetime, **data: Any) -> None:
    """One event of the example's kind at ``at`` ("llm.request" unless ``hours`` are given)."""
    kind = "llm.fine_tuning" if "hours" in data else "llm.request"
    sent = event(f"e-{next(_numbers)}", type=kind, subject="acme-prod", time=at, data=json.dumps(data))
    reply = await ingest.Ingest(ingest_pb2.IngestRequest(events=[sent]))
    assert reply.accepted_count == 1, reply


async def run(billing: Billing, request_id: str, as_of: datetime) -> pb.RunInvoicesResponse:
    request = pb.RunInvoicesRequest(request_id=request_id, as_of=ts(as_of))
    response: pb.RunInvoicesResponse = await billing.RunInvoices(request)
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

    clock.set(AUGUST_1 + HALF_HOUR)
    [final_id] = (await run(billing, "run", AUGUST_1)).invoice_ids
    final = await get_invoice(billing, final_id)
    assert total(final) == Decimal(3)  # only what the progressive invoice did not bill
    scale_input = [line for line in final.lines if Decimal(line.total.amount) == 3]
    assert [Decimal(line.previously_billed_quantity.value) for line in scale_input] == [Decimal(2_345_678)]
