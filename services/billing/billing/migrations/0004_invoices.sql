-- Invoices, their lines, what they billed of each subscription charge, gap-free document numbers, and
-- credit notes.

-- An invoice. Totals are copies of sums over its lines (kept so that lists need not read lines):
-- amount, discount_amount, tax_amount, total; credits_applied and credit_notes_amount are what credits
-- and OFFSET credit notes took off it; amount_due = greatest(total - both, 0). The customer's name and
-- address are NULL until issue, when they are copied: before that the customer's current ones show.
-- `number` is set at issue and never reused (the unique constraint guards the counter below).
CREATE TABLE invoices (
    namespace           text        NOT NULL,
    id                  uuid        NOT NULL,
    customer_key        text        NOT NULL,
    currency            text        NOT NULL,
    status              text        NOT NULL
        CHECK (status IN ('gathering', 'draft', 'issued', 'paid', 'void', 'uncollectible')),
    period_start        timestamptz,
    period_end          timestamptz,
    progressive         boolean     NOT NULL DEFAULT false,
    number              text,
    description         text        NOT NULL DEFAULT '',
    collection_time     timestamptz,
    due_time            timestamptz,
    issue_time          timestamptz,
    paid_time           timestamptz,
    void_time           timestamptz,
    payment_reference   text        NOT NULL DEFAULT '',
    status_reason       text        NOT NULL DEFAULT '',
    customer_name       text,
    customer_address    jsonb,
    metadata            jsonb       NOT NULL DEFAULT '{}',
    amount              numeric     NOT NULL DEFAULT 0,
    discount_amount     numeric     NOT NULL DEFAULT 0,
    tax_amount          numeric     NOT NULL DEFAULT 0,
    total               numeric     NOT NULL DEFAULT 0,
    credits_applied     numeric     NOT NULL DEFAULT 0,
    credit_notes_amount numeric     NOT NULL DEFAULT 0,
    amount_due          numeric     NOT NULL DEFAULT 0 CHECK (amount_due >= 0),
    create_time         timestamptz NOT NULL,
    update_time         timestamptz NOT NULL,
    PRIMARY KEY (namespace, id),
    FOREIGN KEY (namespace, customer_key) REFERENCES customers (namespace, key),
    UNIQUE (namespace, number),
    CHECK ((period_start IS NULL) = (period_end IS NULL)),
    CHECK ((number IS NULL) = (issue_time IS NULL))
);

-- ListInvoices' order (creation descending, then id), overall and per customer; the customer index
-- also serves the referrer queries that keep a customer from deletion or a currency change.
CREATE INDEX invoices_listing ON invoices (namespace, create_time DESC, id);
CREATE INDEX invoices_by_customer ON invoices (namespace, customer_key, status);

-- One line of an invoice. Lines computed from subscription charges carry the charge and item they came
-- from; their id is derived from (invoice, subscription, charge, type, group values), so it stays the
-- same when the invoice is recalculated. A removed line stays as a tombstone (`remove_time`): hidden,
-- out of the totals, and never re-added by a recalculation. `sort_key` orders computed lines (their
-- place in the draft) and manual lines (after every computed line, in the order added).
-- `price` is the catalog Price message; `tiers` and `discounts` are JSON lists; group values a map.
CREATE TABLE invoice_lines (
    namespace                  text        NOT NULL,
    invoice_id                 uuid        NOT NULL,
    id                         uuid        NOT NULL,
    type                       text        NOT NULL
        CHECK (type IN ('usage', 'flat_fee', 'minimum_spend', 'proration_credit', 'manual')),
    name                       text        NOT NULL,
    description                text        NOT NULL DEFAULT '',
    subscription_id            uuid,
    charge_id                  text,
    item_id                    text,
    rate_card_key              text        NOT NULL DEFAULT '',
    feature_key                text        NOT NULL DEFAULT '',
    period_start               timestamptz,
    period_end                 timestamptz,
    price                      bytea,
    group_values               jsonb       NOT NULL DEFAULT '{}',
    quantity                   numeric     NOT NULL,
    previously_billed_quantity numeric     NOT NULL DEFAULT 0,
    proration_factor           numeric,
    unit_amount                numeric,
    tiers                      jsonb       NOT NULL DEFAULT '[]',
    amount                     numeric     NOT NULL,
    discounts                  jsonb       NOT NULL DEFAULT '[]',
    total                      numeric     NOT NULL,
    tax_code                   text,
    tax_behavior               text,
    tax_amount                 numeric     NOT NULL DEFAULT 0,
    metadata                   jsonb       NOT NULL DEFAULT '{}',
    sort_key                   integer     NOT NULL,
    create_time                timestamptz NOT NULL,
    remove_time                timestamptz,
    PRIMARY KEY (namespace, invoice_id, id),
    FOREIGN KEY (namespace, invoice_id) REFERENCES invoices (namespace, id),
    CHECK ((type = 'manual') = (charge_id IS NULL)),
    CHECK ((period_start IS NULL) = (period_end IS NULL))
);

-- Credit notes name a line by its id alone; ListInvoices' subscription filter looks lines up by
-- subscription.
CREATE UNIQUE INDEX invoice_lines_by_id ON invoice_lines (namespace, id);
CREATE INDEX invoice_lines_by_subscription ON invoice_lines (namespace, subscription_id)
    WHERE subscription_id IS NOT NULL;

-- What each invoice billed of each subscription charge (billing.subscriptions.Charge.id): so that a
-- charge is billed by one invoice in the end, and so that progressive invoices of a period know the
-- usage earlier ones billed. One row per (charge, invoice): an invoice run writes it in the same
-- transaction as the invoice, and a retry or a recalculation of that invoice rewrites the same row.
-- `final` marks the invoice that billed the charge for good (every fee, and usage at its period's end);
-- the partial unique index makes that one invoice per charge, whichever runs race. `usage` is the usage
-- this invoice billed on top of earlier ones (billing.invoicing.ChargeUsage.usage, as JSON), NULL for
-- fees; `service_end` the end of the part of the service period it billed.
CREATE TABLE billed_charges (
    namespace       text        NOT NULL,
    subscription_id uuid        NOT NULL,
    charge_id       text        NOT NULL,
    invoice_id      uuid        NOT NULL,
    final           boolean     NOT NULL,
    usage           jsonb,
    service_end     timestamptz NOT NULL,
    create_time     timestamptz NOT NULL,
    PRIMARY KEY (namespace, subscription_id, charge_id, invoice_id),
    FOREIGN KEY (namespace, invoice_id) REFERENCES invoices (namespace, id)
);

CREATE UNIQUE INDEX billed_charges_once ON billed_charges (namespace, subscription_id, charge_id)
    WHERE final;
CREATE INDEX billed_charges_by_invoice ON billed_charges (namespace, invoice_id);

-- The last number given to a kind of document per namespace. Not a sequence: a sequence skips the
-- values of rolled-back transactions, and these numbers must have no gaps. The row is incremented in
-- the transaction that issues the document, whose row lock makes issuers of one namespace take turns
-- for that instant only.
CREATE TABLE document_numbers (
    namespace   text   NOT NULL,
    kind        text   NOT NULL CHECK (kind IN ('invoice', 'credit_note')),
    last_number bigint NOT NULL CHECK (last_number > 0),
    PRIMARY KEY (namespace, kind)
);

-- A credit note against an issued invoice. `credit_id` is the customer credit a CREDIT_BALANCE
-- settlement created.
CREATE TABLE credit_notes (
    namespace    text        NOT NULL,
    id           uuid        NOT NULL,
    number       text        NOT NULL,
    invoice_id   uuid        NOT NULL,
    customer_key text        NOT NULL,
    currency     text        NOT NULL,
    reason       text        NOT NULL,
    settlement   text        NOT NULL CHECK (settlement IN ('offset', 'credit_balance', 'refund')),
    total        numeric     NOT NULL CHECK (total > 0),
    memo         text        NOT NULL DEFAULT '',
    credit_id    uuid,
    issue_time   timestamptz NOT NULL,
    PRIMARY KEY (namespace, id),
    UNIQUE (namespace, number),
    FOREIGN KEY (namespace, invoice_id) REFERENCES invoices (namespace, id)
);

CREATE INDEX credit_notes_listing ON credit_notes (namespace, issue_time DESC, id);
CREATE INDEX credit_notes_by_invoice ON credit_notes (namespace, invoice_id);

-- The credited part of one invoice line; what remains creditable on a line is its total plus tax minus
-- the sum of these.
CREATE TABLE credit_note_lines (
    namespace       text    NOT NULL,
    credit_note_id  uuid    NOT NULL,
    position        integer NOT NULL,
    invoice_line_id uuid    NOT NULL,
    amount          numeric NOT NULL CHECK (amount > 0),
    description     text    NOT NULL DEFAULT '',
    PRIMARY KEY (namespace, credit_note_id, position),
    FOREIGN KEY (namespace, credit_note_id) REFERENCES credit_notes (namespace, id)
);

CREATE INDEX credit_note_lines_by_line ON credit_note_lines (namespace, invoice_line_id);
