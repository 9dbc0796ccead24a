-- Customers, their subject keys, credits and what invoices took from them, and the request ids that
-- make state-changing RPCs idempotent.

-- A customer. Deleting is soft (`delete_time`): its invoices stay readable and keep naming it, and its
-- key is never reused. No address is an address_country of NULL (every other part empty then).
CREATE TABLE customers (
    namespace           text        NOT NULL,
    key                 text        NOT NULL,
    name                text        NOT NULL,
    currency            text        NOT NULL,
    email               text        NOT NULL DEFAULT '',
    address_country     text,
    address_postal_code text        NOT NULL DEFAULT '',
    address_state       text        NOT NULL DEFAULT '',
    address_city        text        NOT NULL DEFAULT '',
    address_line1       text        NOT NULL DEFAULT '',
    address_line2       text        NOT NULL DEFAULT '',
    metadata            jsonb       NOT NULL DEFAULT '{}',
    create_time         timestamptz NOT NULL,
    update_time         timestamptz NOT NULL,
    delete_time         timestamptz,
    PRIMARY KEY (namespace, key),
    CHECK (
        address_country IS NOT NULL
        OR (address_postal_code, address_state, address_city, address_line1, address_line2) = ('', '', '', '', '')
    )
);

-- A customer's subject keys, in the order given. They stay with a deleted customer (GetCustomer still
-- shows them) but are no longer `live`; the partial unique index is the rule that a subject belongs to
-- one customer at most among those not deleted, per namespace.
CREATE TABLE customer_subjects (
    namespace    text    NOT NULL,
    customer_key text    NOT NULL,
    position     integer NOT NULL,
    subject_key  text    NOT NULL,
    live         boolean NOT NULL,
    PRIMARY KEY (namespace, customer_key, position),
    FOREIGN KEY (namespace, customer_key) REFERENCES customers (namespace, key) ON DELETE CASCADE
);

CREATE UNIQUE INDEX customer_subjects_one_owner ON customer_subjects (namespace, subject_key) WHERE live;
CREATE INDEX customer_subjects_by_subject ON customer_subjects (namespace, subject_key);

-- Prepaid credit. `balance` is what remains: lowered when an invoice is issued, raised again when it is
-- voided, set to zero by VoidCredit. The index is the application order (a missing expiry sorts last).
CREATE TABLE credits (
    namespace    text        NOT NULL,
    id           uuid        NOT NULL,
    customer_key text        NOT NULL,
    currency     text        NOT NULL,
    amount       numeric     NOT NULL CHECK (amount > 0),
    balance      numeric     NOT NULL CHECK (balance >= 0 AND balance <= amount),
    priority     integer     NOT NULL CHECK (priority >= 0),
    effective_at timestamptz NOT NULL,
    expires_at   timestamptz,
    description  text        NOT NULL DEFAULT '',
    create_time  timestamptz NOT NULL,
    void_time    timestamptz,
    PRIMARY KEY (namespace, id),
    FOREIGN KEY (namespace, customer_key) REFERENCES customers (namespace, key),
    CHECK (expires_at IS NULL OR expires_at > effective_at)
);

CREATE INDEX credits_application_order ON credits (
    namespace, customer_key, priority, (coalesce(expires_at, 'infinity'::timestamptz)), create_time, id
);

-- What an invoice took from a credit when it was issued; `restore_time` is set when voiding the invoice
-- gave it back. The invoice id has no foreign key yet: the invoices table arrives with invoicing.
CREATE TABLE credit_applications (
    namespace    text        NOT NULL,
    invoice_id   uuid        NOT NULL,
    credit_id    uuid        NOT NULL,
    amount       numeric     NOT NULL CHECK (amount > 0),
    apply_time   timestamptz NOT NULL,
    restore_time timestamptz,
    PRIMARY KEY (namespace, invoice_id, credit_id),
    FOREIGN KEY (namespace, credit_id) REFERENCES credits (namespace, id)
);

CREATE INDEX credit_applications_by_credit ON credit_applications (namespace, credit_id);

-- What a request id did the first time: the method, a digest of the request, and the response as JSON.
-- A retry with the same request answers the same; another request with the same id is ALREADY_EXISTS.
-- Kept indefinitely (the contract asks for 24 hours at least).
CREATE TABLE request_ids (
    namespace   text        NOT NULL,
    request_id  text        NOT NULL,
    method      text        NOT NULL,
    fingerprint text        NOT NULL,
    response    jsonb       NOT NULL,
    create_time timestamptz NOT NULL,
    PRIMARY KEY (namespace, request_id)
);
