"""The invoice run: what subscriptions owe, rated on usage from ingest, stored as invoices.

An invoice bills *sources*: the charges due at a subscription's start (INITIAL), at the end of one of
its billing periods (PERIOD), or up to an instant within a period (PROGRESSIVE) — see
``billing.subscriptions.charges``. Computing a source's part of an invoice is the same for a run, a
progressive invoice, a preview and a recalculation:

1. the charges of the source, less those another invoice already billed for good (a period's charge is
   billed finally once; usage charges billed progressively come back with what was billed);
2. the usage of every usage charge over its service period, read from ingest for all the charges of a
   batch at once (``billing.usage``), less what earlier invoices of the period billed;
3. the rating engine through ``billing.invoicing.draft_invoice``.

Idempotence. An invoice's id is derived from what it bills (customer, currency, source kind and end; or
the request id of a progressive invoice), so a retry or a concurrent run stores the same invoice again
instead of a second one; each subscription's ``invoiced_through`` moves under a row lock in the
transaction that stores the invoice, and a run that finds it already past the period counts the period
as already invoiced. Lines of one customer and currency due at the same instant gather on one invoice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from billing.domain import Customer
from billing.domain.invoices import Invoice, InvoiceStatus, compute_totals, covering_period
from billing.domain.subscriptions import StoredSubscription, next_period_end
from billing.invoicing import ChargeUsage
from billing.invoicing.usage import usage_group_by, usage_is_zero, usage_minus, usage_of
from billing.service.customers import customer_not_found
from billing.service.invoice_drafts import DraftInput, InvoicePart, computed_lines, insert_drafts, save_draft
from billing.service.invoices import InvoiceService
from billing.store import BillingStore, Stores
from billing.store.billed import BilledCharge
from billing.store.invoice_runs import InvoiceSource, RunRecord, SourceKind
from billing.subscriptions import (
    Charge,
    ChargeKind,
    charges_between,
    charges_for_period,
    initial_charges,
    progressive_charges,
)
from billing.usage import UsageQuery, UsageReader
from meterlib.clock import Clock
from meterlib.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from meterlib.logs import get_logger
from meterlib.periods import Period
from meterlib.tasks import stop_task

log = get_logger("billing.invoices")

_INVOICE_IDS: Final = uuid.UUID("0b7f5e52-3c0d-4d8e-a1f6-9e3b2c4d5a60")
_INSTANT: Final = timedelta(microseconds=1)
BATCH_CUSTOMERS: Final = 500
"""Customers whose subscriptions are read, and whose usage is asked of ingest, per batch of a run."""
GROUP_INVOICES: Final = 50
"""Invoices stored by a run in one transaction."""
CONCURRENT_GROUPS: Final = 4
"""Transactions storing invoices at once in a run."""


@dataclass(frozen=True)
class RunResult:
    """What RunInvoices answers."""

    invoice_ids: tuple[str, ...]
    subscription_count: int
    already_invoiced_count: int


@dataclass
class _Part:
    """One subscription's source, computed: its charges and usage, ready to store."""

    subscription: StoredSubscription
    source: InvoiceSource
    part: InvoicePart


@dataclass
class _Pending:
    """A source being computed: its charges (and late charges of earlier periods), what invoices billed
    of the subscription's charges, and the usage read so far."""

    subscription: StoredSubscription
    source: InvoiceSource
    customer: Customer
    charges: list[Charge]
    late: list[Charge]
    billed: Mapping[str, BilledCharge]
    usage: dict[str, ChargeUsage] = field(default_factory=dict)

    def part(self) -> _Part:
        """The computed part; late charges without late usage are left out."""
        late = [c for c in self.late if not usage_is_zero(self.usage[c.id].usage)]
        charges = sorted((*self.charges, *late), key=lambda c: c.sort_key)
        usage = {c.id: self.usage[c.id] for c in charges if c.id in self.usage}
        sub = self.subscription
        return _Part(sub, self.source, InvoicePart.of(sub.id, charges, usage, self.customer.currency))


def _usage_query(charge: Charge, customer: Customer, usage_until: datetime | None) -> UsageQuery:
    """The query of a usage charge's usage over its service period (up to ``usage_until``)."""
    meter = charge.item.rate_card.meter
    if meter is None:
        raise FailedPrecondition(f"rate card {charge.item.key!r} prices usage but reads no meter")
    period = charge.service_period
    end = period.end if usage_until is None else min(period.end, usage_until)
    return UsageQuery(
        meter=meter,
        subjects=customer.subject_keys,
        start=period.start,
        end=max(end, period.start),
        group_by=usage_group_by(charge.item.rate_card.price),
    )


@dataclass
class _Invoice:
    """Parts of one customer and currency due at one instant: one invoice."""

    customer_key: str
    invoice_id: str
    status: InvoiceStatus
    collection_time: datetime
    parts: list[_Part] = field(default_factory=list)


def _sources(sub: StoredSubscription, as_of: datetime) -> list[InvoiceSource]:
    """What a run up to ``as_of`` must invoice of a subscription, in order."""
    timeline = sub.timeline
    sources = []
    if sub.invoiced_through is None and timeline.start <= as_of:
        sources.append(InvoiceSource(sub.id, SourceKind.INITIAL, timeline.start, timeline.start))
    for period in timeline.billing_periods(as_of, after=sub.invoiced_through):
        sources.append(InvoiceSource(sub.id, SourceKind.PERIOD, period.start, period.end))
    return sources


def _charges(sub: StoredSubscription, source: InvoiceSource) -> list[Charge]:
    if source.kind is SourceKind.INITIAL:
        return initial_charges(sub.timeline)
    if source.kind is SourceKind.PERIOD:
        return charges_for_period(sub.timeline, Period(source.start, source.end))
    return progressive_charges(sub.timeline, source.end)


class InvoiceRun:
    """RunInvoices, CreateProgressiveInvoice, PreviewInvoice and RecalculateInvoice."""

    def __init__(
        self,
        store: BillingStore,
        clock: Clock,
        usage: UsageReader,
        *,
        collection_delay: timedelta,
        late_usage: timedelta = timedelta(days=32),
    ) -> None:
        self._store = store
        self._clock = clock
        self._usage = usage
        self._delay = collection_delay
        self._late_usage = late_usage

    # --- computing parts -------------------------------------------------------------------------------

    async def _compute(
        self,
        namespace: str,
        work: Sequence[tuple[StoredSubscription, InvoiceSource, Customer]],
        *,
        usage_until: datetime | None = None,
        exclude_invoice_id: str | None = None,
    ) -> list[_Part]:
        """Each source's part (charges billed for good elsewhere left out, late usage of earlier periods
        added); what was billed read in one query, usage in one batch of queries."""
        if not work:
            return []
        since = min(source.start for _, source, _ in work) - self._late_usage
        billed_of = await self._store.billed.billed_of(
            namespace,
            sorted({sub.id for sub, _, _ in work}),
            since=since,
            exclude_invoice_id=exclude_invoice_id,
        )
        pending: list[_Pending] = []
        queries: list[UsageQuery] = []
        owners: list[tuple[_Pending, Charge]] = []
        for sub, source, customer in work:
            billed = billed_of.get(sub.id, {})
            charges = _charges(sub, source)
            kept = [c for c in charges if not ((b := billed.get(c.id)) is not None and b.final)]
            late = self._late_charges(sub, source, charges, billed)
            item = _Pending(sub, source, customer, kept, late, billed)
            pending.append(item)
            for charge in (*kept, *late):
                if charge.kind is ChargeKind.USAGE:
                    queries.append(_usage_query(charge, customer, usage_until))
                    owners.append((item, charge))
        asked = time.perf_counter()
        rows = await self._usage.read(namespace, queries) if queries else []
        log.debug("invoices.usage_read", queries=len(queries), ms=round((time.perf_counter() - asked) * 1000))
        for (item, charge), answer in zip(owners, rows, strict=True):
            price = charge.item.rate_card.price
            assert price is not None
            record = item.billed.get(charge.id)
            billed_usage = None if record is None else record.usage
            item.usage[charge.id] = ChargeUsage(
                usage=usage_minus(usage_of(price, answer), billed_usage),
                already_billed=billed_usage,
                late=record is not None and record.final,
            )
        return [item.part() for item in pending]

    def _late_charges(
        self,
        sub: StoredSubscription,
        source: InvoiceSource,
        charges: Sequence[Charge],
        billed: Mapping[str, BilledCharge],
    ) -> list[Charge]:
        """The usage charges of earlier periods a period's invoice checks for late usage: those billed
        for good by an invoice that was issued (a draft is recalculated instead), whose service period
        ended at most ``late_usage`` before this period started."""
        if source.kind is not SourceKind.PERIOD:
            return []
        current = {c.id for c in charges}
        horizon = source.start - self._late_usage
        ends = {
            b.charge_id: b.billed_through
            for b in billed.values()
            if b.settled
            and b.usage is not None
            and b.charge_id not in current
            and b.billed_through is not None
            and horizon <= b.billed_through <= source.start
        }
        if not ends:
            return []
        earlier = charges_between(sub.timeline, min(ends.values()) - _INSTANT, source.start)
        return [c for c in earlier if c.kind is ChargeKind.USAGE and c.id in ends]

    async def _customers(self, namespace: str, keys: set[str]) -> dict[str, Customer]:
        return await self._store.customers.get_many(namespace, sorted(keys))

    # --- RunInvoices ----------------------------------------------------------------------------------

    async def run(
        self, namespace: str, request_id: str, as_of: datetime | None, customer_keys: Sequence[str]
    ) -> RunResult:
        """Invoice every billing period (and start) due by ``as_of``; see the module docstring."""
        now = self._clock.now()
        problems = []
        if not request_id:
            problems.append(FieldViolation("request_id", "is required"))
        if as_of is not None and as_of > now:
            problems.append(FieldViolation("as_of", "must not be in the future"))
        if problems:
            raise InvalidArgument.fields(problems)
        until = as_of or now
        record = await self._store.invoice_runs.start_run(namespace, request_id, until, customer_keys, now)
        if record.customer_keys != tuple(sorted(customer_keys)) or (
            as_of is not None and record.as_of != as_of
        ):
            raise AlreadyExists(
                f"request_id {request_id!r} was used for another invoice run",
                reason="ERROR_REASON_IDEMPOTENCY_KEY_REUSED",
            )
        if record.finished:
            return await self._result(namespace, request_id, record)
        until = record.as_of  # a resumed run invoices up to the instant the first attempt chose
        examined = 0
        already = 0
        after: str | None = None
        while True:
            batch = await self._store.subscriptions.due_for_invoicing(
                namespace, until, customer_keys=customer_keys, after_customer=after, customers=BATCH_CUSTOMERS
            )
            if not batch:
                break
            after = batch[-1].customer_key
            examined += len(batch)
            already += await self._run_batch(namespace, request_id, batch, until)
        finished = await self._store.invoice_runs.finish_run(namespace, request_id, examined, already, now)
        result = await self._result(namespace, request_id, finished)
        log.info("invoices.run", subscriptions=examined, invoices=len(result.invoice_ids), as_of=until)
        return result

    async def _result(self, namespace: str, request_id: str, record: RunRecord) -> RunResult:
        invoice_ids = await self._store.invoice_runs.invoices(namespace, request_id)
        return RunResult(tuple(invoice_ids), record.subscription_count, record.already_invoiced_count)

    async def _run_batch(
        self, namespace: str, request_id: str, batch: Sequence[StoredSubscription], until: datetime
    ) -> int:
        begun = time.perf_counter()
        customers = await self._customers(namespace, {s.customer_key for s in batch})
        work = [
            (sub, source, customers[sub.customer_key])
            for sub in batch
            if sub.customer_key in customers
            for source in _sources(sub, until)
        ]
        parts = await self._compute(namespace, work)
        computed = time.perf_counter()
        invoices: dict[tuple[str, str, str, datetime], _Invoice] = {}
        for part in parts:
            customer = customers[part.subscription.customer_key]
            key = (customer.key, customer.currency, part.source.kind.value, part.source.end)
            if key not in invoices:
                name = f"{namespace}/{customer.key}/{customer.currency}/{key[2]}/{key[3].isoformat()}"
                invoices[key] = _Invoice(
                    customer.key,
                    str(uuid.uuid5(_INVOICE_IDS, name)),
                    InvoiceStatus.DRAFT,
                    part.source.end + self._delay,
                )
            invoices[key].parts.append(part)
        gate = asyncio.Semaphore(CONCURRENT_GROUPS)

        async def store(group: list[_Invoice]) -> int:
            async with gate:
                return await self._store_group(namespace, request_id, group)

        already = 0
        for wave in _waves(list(invoices.values())):
            groups = [wave[i : i + GROUP_INVOICES] for i in range(0, len(wave), GROUP_INVOICES)]
            already += sum(await asyncio.gather(*(store(group) for group in groups)))
        log.debug(
            "invoices.batch",
            subscriptions=len(batch),
            invoices=len(invoices),
            compute_ms=round((computed - begun) * 1000),
            store_ms=round((time.perf_counter() - computed) * 1000),
        )
        return already

    async def _store_group(self, namespace: str, request_id: str | None, group: list[_Invoice]) -> int:
        """Store invoices (of distinct subscriptions) in one transaction; returns how many parts were
        already invoiced by another run. When that fails for a reason of one invoice's own (a charge
        billed meanwhile by a concurrent run, a customer deleted), they are stored one at a time, so
        that the others are stored and the failure is that invoice's."""
        try:
            async with self._store.transaction() as tx:
                return await self._store_in(tx, namespace, request_id, group)
        except DomainError:
            if len(group) == 1:
                raise
        already = 0
        for invoice in group:
            async with self._store.transaction() as tx:
                already += await self._store_in(tx, namespace, request_id, [invoice])
        return already

    async def _store_in(
        self, tx: Stores, namespace: str, request_id: str | None, group: list[_Invoice]
    ) -> int:
        """Store invoices and move their subscriptions on, in the caller's transaction, with a few
        statements for them all; parts another run invoiced meanwhile, or whose subscription changed
        since its charges were computed (the next run computes them anew), are left out."""
        at = self._clock.now()
        states = await tx.subscriptions.lock_invoicing(
            namespace, sorted({part.subscription.id for invoice in group for part in invoice.parts})
        )
        already = 0
        fresh: list[tuple[_Invoice, list[_Part]]] = []
        for invoice in group:
            kept = []
            for part in invoice.parts:
                state = states.get(part.subscription.id)
                if state is None or _invoiced(state[0], part.source):
                    already += 1
                elif state[1] == part.subscription.update_time:
                    kept.append(part)
            fresh.append((invoice, kept))
        billed = [(invoice, [p for p in kept if p.part.charges]) for invoice, kept in fresh]
        billed = [(invoice, parts) for invoice, parts in billed if parts]
        taken = await tx.invoices.existing(namespace, [invoice.invoice_id for invoice, _ in billed])
        drafts = [
            DraftInput(
                customer_key=invoice.customer_key,
                parts=[p.part for p in parts],
                status=invoice.status,
                collection_time=invoice.collection_time,
                invoice_id=_invoice_id(invoice, parts, taken),
            )
            for invoice, parts in billed
        ]
        if drafts:
            await insert_drafts(tx, namespace, drafts, at)
            sources = [
                (d.invoice_id or "", p.source)
                for d, (_, parts) in zip(drafts, billed, strict=True)
                for p in parts
            ]
            await tx.invoice_runs.add_sources(namespace, sources)
            if request_id is not None:
                await tx.invoice_runs.add_invoices(
                    namespace, request_id, [d.invoice_id or "" for d in drafts]
                )
        moves = [
            (p.subscription.id, p.source.end, next_period_end(p.subscription.timeline, p.source.end))
            for _, kept in fresh
            for p in kept
            if p.source.kind is not SourceKind.PROGRESSIVE
        ]
        await tx.subscriptions.set_invoiced_through(namespace, moves)
        return already

    # --- progressive invoices, previews and recalculation ---------------------------------------------

    async def progressive(
        self,
        namespace: str,
        request_id: str,
        customer_key: str,
        subscription_ids: Sequence[str],
        as_of: datetime | None,
    ) -> str:
        """A DRAFT invoice of the usage and fees due so far in the current periods; returns its id."""
        now = self._clock.now()
        problems = []
        if not request_id:
            problems.append(FieldViolation("request_id", "is required"))
        if not customer_key:
            problems.append(FieldViolation("customer_key", "is required"))
        if as_of is not None and as_of > now:
            problems.append(FieldViolation("as_of", "must not be in the future"))
        if problems:
            raise InvalidArgument.fields(problems)
        at = as_of or now
        invoice_id = str(uuid.uuid5(_INVOICE_IDS, f"{namespace}/progressive/{request_id}"))
        existing = await self._store.invoices.get(namespace, invoice_id, lines=False)
        if existing is not None:
            if existing.customer_key != customer_key:
                raise AlreadyExists(
                    f"request_id {request_id!r} was used for another invoice",
                    reason="ERROR_REASON_IDEMPOTENCY_KEY_REUSED",
                )
            return invoice_id
        customer = await self._store.customers.get(namespace, customer_key)
        if customer is None:
            raise NotFound(
                f"customer {customer_key!r} not found", resource_type="customer", resource_name=customer_key
            )
        subs = await self._running_subscriptions(namespace, customer_key, subscription_ids, at)
        work = [
            (
                sub,
                InvoiceSource(sub.id, SourceKind.PROGRESSIVE, sub.timeline.billing_period(at).start, at),
                customer,
            )
            for sub in subs
        ]
        parts = [p for p in await self._compute(namespace, work) if p.part.charges]
        if not parts or not any(p.part.draft.lines for p in parts):
            raise FailedPrecondition(
                f"customer {customer_key!r} has nothing to invoice up to {at.isoformat()}"
            )
        invoice = _Invoice(customer_key, invoice_id, InvoiceStatus.DRAFT, at + self._delay, parts)
        async with self._store.transaction() as tx:
            await save_draft(
                tx,
                namespace,
                DraftInput(
                    customer_key=customer_key,
                    parts=[p.part for p in parts],
                    progressive=True,
                    collection_time=invoice.collection_time,
                    invoice_id=invoice_id,
                ),
                now,
            )
            await tx.invoice_runs.add_sources(namespace, [(invoice_id, p.source) for p in parts])
        return invoice_id

    async def _running_subscriptions(
        self, namespace: str, customer_key: str, subscription_ids: Sequence[str], at: datetime
    ) -> list[StoredSubscription]:
        found = []
        if subscription_ids:
            for subscription_id in subscription_ids:
                sub = await self._store.subscriptions.get(namespace, subscription_id)
                if sub is None or sub.customer_key != customer_key:
                    raise NotFound(
                        f"subscription {subscription_id!r} of customer {customer_key!r} not found",
                        resource_type="subscription",
                        resource_name=subscription_id,
                    )
                found.append(sub)
        else:
            found = await self._store.subscriptions.of_customer(namespace, customer_key)
        return [
            s for s in found if s.timeline.start <= at and (s.timeline.end is None or at < s.timeline.end)
        ]

    async def preview(
        self, namespace: str, subscription_id: str, customer_key: str, as_of: datetime | None
    ) -> Invoice:
        """The current period's invoice of a subscription (``subscription_id``), or of all the customer's
        subscriptions running at ``as_of`` (``customer_key``), as if the periods ended at ``as_of``;
        nothing is stored."""
        at = as_of or self._clock.now()
        if subscription_id:
            sub = await self._store.subscriptions.get(namespace, subscription_id)
            if sub is None:
                raise NotFound(
                    f"subscription {subscription_id!r} not found",
                    resource_type="subscription",
                    resource_name=subscription_id,
                )
            timeline = sub.timeline
            if timeline.end is not None and timeline.end <= at:
                raise FailedPrecondition(f"subscription {subscription_id!r} is canceled: nothing to preview")
            subs = [sub]
            customer_key = sub.customer_key
        customer = await self._store.customers.get(namespace, customer_key)
        if customer is None:  # a subscription's customer is never removed, only marked deleted
            raise customer_not_found(customer_key)
        if not subscription_id:
            subs = await self._running_subscriptions(namespace, customer_key, (), at)
            if not subs:
                raise FailedPrecondition(f"customer {customer_key!r} has no subscription running to preview")
        work = []
        for sub in subs:
            period = sub.timeline.billing_period(max(at, sub.timeline.start))
            work.append((sub, InvoiceSource(sub.id, SourceKind.PERIOD, period.start, period.end), customer))
        parts = [p.part for p in await self._compute(namespace, work, usage_until=at)]
        lines = tuple(computed_lines("", parts))
        drafted = [p.draft.period for p in parts if p.draft.period is not None]
        return Invoice(
            id="",
            customer_key=customer.key,
            currency=customer.currency,
            status=InvoiceStatus.GATHERING,
            create_time=at,
            update_time=at,
            lines=lines,
            totals=compute_totals(lines, customer.currency),
            period=covering_period(lines, drafted[0] if drafted else None),
            customer_name=customer.name,
            billing_address=customer.billing_address,
        )

    async def recalculate(self, namespace: str, invoice: Invoice) -> None:
        """Re-rate a GATHERING or DRAFT invoice's sources with the latest usage (the Recalculator)."""
        sources = await self._store.invoice_runs.sources(namespace, invoice.id)
        if not sources:
            return  # not computed by a run (or nothing left of it): nothing to re-rate
        customer = await self._store.customers.get(namespace, invoice.customer_key)
        assert customer is not None
        work = []
        for source in sources:
            sub = await self._store.subscriptions.get(namespace, source.subscription_id)
            assert sub is not None
            work.append((sub, source, customer))
        parts = await self._compute(namespace, work, exclude_invoice_id=invoice.id)
        async with self._store.transaction() as tx:
            await save_draft(
                tx,
                namespace,
                DraftInput(
                    customer_key=invoice.customer_key,
                    parts=[p.part for p in parts],
                    status=invoice.status,
                    progressive=invoice.progressive,
                    invoice_id=invoice.id,
                ),
                self._clock.now(),
            )


def _invoiced(invoiced_through: datetime | None, source: InvoiceSource) -> bool:
    """Whether another run invoiced the source already, given its subscription's ``invoiced_through``."""
    if source.kind is SourceKind.PROGRESSIVE or invoiced_through is None:
        return False
    return source.end <= invoiced_through if source.kind is SourceKind.PERIOD else True


def _waves(invoices: list[_Invoice]) -> Iterator[list[_Invoice]]:
    """The invoices in waves that may be stored in any order and concurrently: a subscription's
    invoices go in time order (``invoiced_through`` only moves on), one per wave. An invoice is in the
    first wave after those of the earlier sources of all its subscriptions; there always is one, since
    the parts of one invoice share their instant and a subscription's sources follow each other in time.
    """
    queues: dict[str, list[_Invoice]] = defaultdict(list)
    for invoice in sorted(invoices, key=lambda i: i.parts[0].source.end):
        for part in invoice.parts:
            queues[part.subscription.id].append(invoice)
    left = {id(invoice) for invoice in invoices}
    while left:
        wave = []
        for invoice in invoices:
            if id(invoice) in left and all(queues[p.subscription.id][0] is invoice for p in invoice.parts):
                wave.append(invoice)
        for invoice in wave:
            left.discard(id(invoice))
            for part in invoice.parts:
                queues[part.subscription.id].pop(0)
        yield wave


def _invoice_id(invoice: _Invoice, parts: Sequence[_Part], taken: set[str]) -> str:
    """The invoice's derived id, or when an earlier run took it (for other parts of the customer's, due
    at the same instant, that were left out then), one derived from the parts as well."""
    if invoice.invoice_id not in taken:
        return invoice.invoice_id
    subscriptions = ",".join(sorted(p.subscription.id for p in parts))
    return str(uuid.uuid5(_INVOICE_IDS, f"{invoice.invoice_id}/{subscriptions}"))


class CollectionLoop:
    """Every interval, issues the DRAFT invoices whose collection time has passed: ``IssueInvoice``
    recalculates each a last time (late usage up to then counts), numbers it and applies credits."""

    def __init__(self, store: BillingStore, invoices: InvoiceService, clock: Clock, interval_seconds: float):
        self._store = store
        self._invoices = invoices
        self._clock = clock
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop."""
        self._task = asyncio.create_task(self._run(), name="invoice-collection")

    async def stop(self) -> None:
        """Stop the loop."""
        await stop_task(self._task)

    async def issue_due(self) -> int:
        """Issue what is due now; returns how many were issued."""
        issued = 0
        for namespace, invoice_id in await self._store.invoice_runs.collectable(self._clock.now(), 100):
            try:
                await self._invoices.issue(namespace, invoice_id)
                issued += 1
            except DomainError as exc:  # e.g. voided meanwhile, or ingest down: the next round retries
                log.warning("invoice.auto_issue_failed", invoice_id=invoice_id, error=exc.message)
        return issued

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.issue_due()
            except Exception:  # a database hiccup must not end the loop; the next round retries
                log.exception("invoice.collection_round_failed")
