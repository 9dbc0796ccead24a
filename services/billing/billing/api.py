"""The BillingService servicer: decode, call one service method, encode. No rules here.

RPCs this servicer does not override (the invoice run: RunInvoices, CreateProgressiveInvoice,
RecalculateInvoice, PreviewInvoice) answer as the generated base class does until their services are
wired in here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from billing import convert
from billing.api_invoices import InvoiceRpcs
from billing.domain import Credit
from billing.service import (
    CreditNoteService,
    CreditService,
    CustomerService,
    InvoiceService,
    SubscriptionService,
)
from billing.service.invoice_run import InvoiceRun
from billing.store import CreditPosition, SubscriptionPosition
from metering.billing.v1 import billing_pb2 as pb
from metering.billing.v1 import billing_pb2_grpc
from metering.common.v1 import common_pb2
from meterlib.context import namespace
from meterlib.errors import FieldViolation, InvalidArgument
from meterlib.paging import decode_token, encode_token, page_size
from meterlib.validation import require_id
from meterlib.wire import optional_time


def _page(next_token: str) -> common_pb2.PageResponse:
    return common_pb2.PageResponse(next_page_token=next_token)


def _bad_token() -> InvalidArgument:
    return InvalidArgument.fields([FieldViolation("page.page_token", "is not a token this API issued")])


def _time(text: Any) -> datetime:
    if not isinstance(text, str):
        raise _bad_token()
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise _bad_token() from None


def _key_position(token: str, filters: Any) -> str | None:
    position = decode_token(token, filters)
    if position is None or isinstance(position, str):
        return position
    raise _bad_token()


def _credit_position(token: str, filters: Any) -> CreditPosition | None:
    position = decode_token(token, filters)
    if position is None:
        return None
    match position:
        case [int(priority), str(expires), str(created), str(credit_id)]:
            return CreditPosition(priority, _time(expires), _time(created), credit_id)
        case [int(priority), None, str(created), str(credit_id)]:
            return CreditPosition(priority, None, _time(created), credit_id)
    raise _bad_token()


def _credit_token(c: Credit, filters: Any) -> str:
    p = CreditPosition.of(c)
    expires = None if p.expires_at is None else p.expires_at.isoformat()
    return encode_token([p.priority, expires, p.create_time.isoformat(), p.id], filters)


def _subscription_position(token: str, filters: Any) -> SubscriptionPosition | None:
    position = decode_token(token, filters)
    if position is None:
        return None
    match position:
        case [str(start), str(subscription_id)]:
            return SubscriptionPosition(_time(start), subscription_id)
    raise _bad_token()


class BillingApi(InvoiceRpcs, billing_pb2_grpc.BillingServiceServicer):
    """gRPC face of the billing service; the invoice and credit note RPCs come from InvoiceRpcs."""

    def __init__(
        self,
        customers: CustomerService,
        credits: CreditService,
        *,
        subscriptions: SubscriptionService,
        invoices: InvoiceService,
        credit_notes: CreditNoteService,
        run: InvoiceRun,
    ) -> None:
        self._run = run
        self._customers = customers
        self._credits = credits
        self._subscriptions = subscriptions
        self._invoices = invoices
        self._credit_notes = credit_notes

    # --- the invoice run: invoices computed from subscriptions and usage ------------------------------

    async def RunInvoices(self, request: pb.RunInvoicesRequest, context: Any) -> pb.RunInvoicesResponse:
        result = await self._run.run(
            namespace(), request.request_id, optional_time(request, "as_of"), list(request.customer_keys)
        )
        return pb.RunInvoicesResponse(
            invoice_ids=list(result.invoice_ids),
            subscription_count=result.subscription_count,
            already_invoiced_count=result.already_invoiced_count,
        )

    async def CreateProgressiveInvoice(
        self, request: pb.CreateProgressiveInvoiceRequest, context: Any
    ) -> pb.CreateProgressiveInvoiceResponse:
        invoice_id = await self._run.progressive(
            namespace(),
            request.request_id,
            request.customer_key,
            list(request.subscription_ids),
            optional_time(request, "as_of"),
        )
        invoice = await self._invoices.get(namespace(), invoice_id)
        return pb.CreateProgressiveInvoiceResponse(invoice=self._invoice(invoice))

    async def PreviewInvoice(
        self, request: pb.PreviewInvoiceRequest, context: Any
    ) -> pb.PreviewInvoiceResponse:
        if bool(request.subscription_id) == bool(request.customer_key):
            raise InvalidArgument.fields(
                [
                    FieldViolation(name, "exactly one of subscription_id and customer_key is required")
                    for name in ("subscription_id", "customer_key")
                ]
            )
        invoice = await self._run.preview(
            namespace(),
            require_id(request.subscription_id, "subscription_id") if request.subscription_id else "",
            request.customer_key,
            optional_time(request, "as_of"),
        )
        return pb.PreviewInvoiceResponse(invoice=self._invoice(invoice))

    async def RecalculateInvoice(
        self, request: pb.RecalculateInvoiceRequest, context: Any
    ) -> pb.RecalculateInvoiceResponse:
        invoice = await self._invoices.recalculate(namespace(), request.invoice_id)
        return pb.RecalculateInvoiceResponse(invoice=self._invoice(invoice))

    # --- customers -----------------------------------------------------------------------------------

    async def CreateCustomer(
        self, request: pb.CreateCustomerRequest, context: Any
    ) -> pb.CreateCustomerResponse:
        new = convert.from_proto_customer_input(request.customer, request.HasField("customer"))
        customer = await self._customers.create(namespace(), new)
        return pb.CreateCustomerResponse(customer=convert.to_proto_customer(customer))

    async def GetCustomer(self, request: pb.GetCustomerRequest, context: Any) -> pb.GetCustomerResponse:
        customer = await self._customers.get(namespace(), request.key)
        return pb.GetCustomerResponse(customer=convert.to_proto_customer(customer))

    async def ListCustomers(self, request: pb.ListCustomersRequest, context: Any) -> pb.ListCustomersResponse:
        filters = {
            "subject": request.subject_key,
            "name": request.name_contains,
            "deleted": request.include_deleted,
        }
        limit = page_size(request.page.page_size)
        customers = await self._customers.list_customers(
            namespace(),
            subject_key=request.subject_key,
            name_contains=request.name_contains,
            include_deleted=request.include_deleted,
            after_key=_key_position(request.page.page_token, filters),
            limit=limit + 1,
        )
        token = encode_token(customers[limit - 1].key, filters) if len(customers) > limit else ""
        return pb.ListCustomersResponse(
            customers=[convert.to_proto_customer(c) for c in customers[:limit]], page=_page(token)
        )

    async def UpdateCustomer(
        self, request: pb.UpdateCustomerRequest, context: Any
    ) -> pb.UpdateCustomerResponse:
        new = convert.from_proto_customer_input(request.customer, request.HasField("customer"))
        customer = await self._customers.update(namespace(), new)
        return pb.UpdateCustomerResponse(customer=convert.to_proto_customer(customer))

    async def DeleteCustomer(
        self, request: pb.DeleteCustomerRequest, context: Any
    ) -> pb.DeleteCustomerResponse:
        customer = await self._customers.delete(namespace(), request.key)
        return pb.DeleteCustomerResponse(customer=convert.to_proto_customer(customer))

    # --- credits -------------------------------------------------------------------------------------

    async def CreateCredit(self, request: pb.CreateCreditRequest, context: Any) -> pb.CreateCreditResponse:
        credit = await self._credits.create(namespace(), convert.from_proto_create_credit(request))
        return pb.CreateCreditResponse(credit=convert.to_proto_credit(credit))

    async def ListCredits(self, request: pb.ListCreditsRequest, context: Any) -> pb.ListCreditsResponse:
        filters = {"customer": request.customer_key, "inactive": request.include_inactive}
        limit = page_size(request.page.page_size)
        credits = await self._credits.list_credits(
            namespace(),
            request.customer_key,
            include_inactive=request.include_inactive,
            after=_credit_position(request.page.page_token, filters),
            limit=limit + 1,
        )
        token = _credit_token(credits[limit - 1], filters) if len(credits) > limit else ""
        return pb.ListCreditsResponse(
            credits=[convert.to_proto_credit(c) for c in credits[:limit]], page=_page(token)
        )

    async def VoidCredit(self, request: pb.VoidCreditRequest, context: Any) -> pb.VoidCreditResponse:
        credit = await self._credits.void(namespace(), request.credit_id)
        return pb.VoidCreditResponse(credit=convert.to_proto_credit(credit))

    # --- subscriptions -------------------------------------------------------------------------------

    async def CreateSubscription(
        self, request: pb.CreateSubscriptionRequest, context: Any
    ) -> pb.CreateSubscriptionResponse:
        view = await self._subscriptions.create(namespace(), convert.from_proto_create_subscription(request))
        return pb.CreateSubscriptionResponse(subscription=convert.to_proto_subscription(view))

    async def GetSubscription(
        self, request: pb.GetSubscriptionRequest, context: Any
    ) -> pb.GetSubscriptionResponse:
        view = await self._subscriptions.get(namespace(), request.id)
        return pb.GetSubscriptionResponse(subscription=convert.to_proto_subscription(view))

    async def ListSubscriptions(
        self, request: pb.ListSubscriptionsRequest, context: Any
    ) -> pb.ListSubscriptionsResponse:
        statuses = convert.from_proto_statuses(request.statuses)
        filters = {
            "customers": sorted(request.customer_keys),
            "plan": request.plan_key,
            "statuses": sorted(s.value for s in statuses),
        }
        limit = page_size(request.page.page_size)
        views = await self._subscriptions.list_subscriptions(
            namespace(),
            customer_keys=list(request.customer_keys),
            plan_key=request.plan_key,
            statuses=statuses,
            after=_subscription_position(request.page.page_token, filters),
            limit=limit + 1,
        )
        token = ""
        if len(views) > limit:
            last = views[limit - 1].stored
            token = encode_token([last.timeline.start.isoformat(), last.id], filters)
        return pb.ListSubscriptionsResponse(
            subscriptions=[convert.to_proto_subscription(v) for v in views[:limit]], page=_page(token)
        )

    async def ChangeSubscriptionPlan(
        self, request: pb.ChangeSubscriptionPlanRequest, context: Any
    ) -> pb.ChangeSubscriptionPlanResponse:
        view = await self._subscriptions.change(namespace(), convert.from_proto_change_plan(request))
        return pb.ChangeSubscriptionPlanResponse(subscription=convert.to_proto_subscription(view))

    async def MigrateSubscription(
        self, request: pb.MigrateSubscriptionRequest, context: Any
    ) -> pb.MigrateSubscriptionResponse:
        view = await self._subscriptions.change(namespace(), convert.from_proto_migrate(request))
        return pb.MigrateSubscriptionResponse(subscription=convert.to_proto_subscription(view))

    async def SetSubscriptionAddOn(
        self, request: pb.SetSubscriptionAddOnRequest, context: Any
    ) -> pb.SetSubscriptionAddOnResponse:
        view = await self._subscriptions.change(namespace(), convert.from_proto_set_add_on(request))
        return pb.SetSubscriptionAddOnResponse(subscription=convert.to_proto_subscription(view))

    async def CancelSubscription(
        self, request: pb.CancelSubscriptionRequest, context: Any
    ) -> pb.CancelSubscriptionResponse:
        view = await self._subscriptions.change(namespace(), convert.from_proto_cancel(request))
        return pb.CancelSubscriptionResponse(subscription=convert.to_proto_subscription(view))

    async def UndoCancelSubscription(
        self, request: pb.UndoCancelSubscriptionRequest, context: Any
    ) -> pb.UndoCancelSubscriptionResponse:
        view = await self._subscriptions.undo_cancel(namespace(), request.subscription_id)
        return pb.UndoCancelSubscriptionResponse(subscription=convert.to_proto_subscription(view))
