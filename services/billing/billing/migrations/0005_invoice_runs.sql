-- Invoice runs and where each computed invoice comes from.
--
-- invoice_runs: one row per RunInvoices request id, so that a retry returns the first run's result
-- (resuming it when it was interrupted): the invoices it made are appended in the transaction that
-- stores each of them.
CREATE TABLE invoice_runs (
    namespace              text        NOT NULL,
    request_id             text        NOT NULL,
    as_of                  timestamptz NOT NULL,
    customer_keys          text[]      NOT NULL,
    invoice_ids            uuid[]      NOT NULL DEFAULT '{}',
    subscription_count     bigint      NOT NULL DEFAULT 0,
    already_invoiced_count bigint      NOT NULL DEFAULT 0,
    create_time            timestamptz NOT NULL,
    finish_time            timestamptz,
    PRIMARY KEY (namespace, request_id)
);

-- invoice_sources: which subscription and which part of its timeline an invoice bills (the charges due
-- at a subscription's start, those of one billing period, or a progressive cut at an instant), so that
-- RecalculateInvoice and the last recalculation before issue compute the same charges again.
CREATE TABLE invoice_sources (
    namespace       text        NOT NULL,
    invoice_id      uuid        NOT NULL,
    subscription_id uuid        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('initial', 'period', 'progressive')),
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    PRIMARY KEY (namespace, invoice_id, subscription_id, kind, period_end),
    FOREIGN KEY (namespace, invoice_id) REFERENCES invoices (namespace, id),
    FOREIGN KEY (namespace, subscription_id) REFERENCES subscriptions (namespace, id)
);

-- The invoice run's question: which subscriptions have something due by an instant (a period ended,
-- or a start not yet invoiced).
CREATE INDEX subscriptions_never_invoiced ON subscriptions (namespace, start_time) WHERE invoiced_through IS NULL;

-- The automatic issue's question: which drafts have passed their collection time.
CREATE INDEX invoices_collectable ON invoices (collection_time) WHERE status = 'draft';
