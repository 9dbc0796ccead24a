-- The definitions of the entitlements service: customer copies and their subject keys, entitlements,
-- manual usage resets, grants, and the request ids that make state-changing RPCs idempotent.

-- The copy of a billing customer, written by UpsertCustomer; DeleteCustomer removes it (its subjects go
-- with it; its entitlements stay, deleted, for their history).
CREATE TABLE customers (
    namespace   text        NOT NULL,
    key         text        NOT NULL,
    update_time timestamptz NOT NULL,
    PRIMARY KEY (namespace, key)
);

-- A customer's subject keys, in the order given. The primary key is the rule that a subject belongs to
-- one customer at most per namespace.
CREATE TABLE customer_subjects (
    namespace    text    NOT NULL,
    subject_key  text    NOT NULL,
    customer_key text    NOT NULL,
    position     integer NOT NULL,
    PRIMARY KEY (namespace, subject_key),
    FOREIGN KEY (namespace, customer_key) REFERENCES customers (namespace, key) ON DELETE CASCADE
);

CREATE INDEX customer_subjects_by_customer ON customer_subjects (namespace, customer_key, position);

-- Entitlements. `static_config` is the JSON text as given (Check returns it as it came). A metered
-- entitlement's usage period is an ISO 8601 duration and an anchor; `meter_key` and
-- `meter_group_filters` are the catalog feature's, copied when the entitlement was made. Deleting or
-- overriding sets `delete_time`; rows are never removed, so history stays readable.
CREATE TABLE entitlements (
    namespace                  text        NOT NULL,
    id                         uuid        NOT NULL,
    customer_key               text        NOT NULL,
    feature_key                text        NOT NULL,
    type                       text        NOT NULL CHECK (type IN ('boolean', 'static', 'metered')),
    static_config              text,
    usage_period               text,
    usage_period_anchor        timestamptz,
    measure_usage_from         timestamptz,
    issue_after_reset          numeric CHECK (issue_after_reset > 0),
    issue_after_reset_priority integer,
    is_soft_limit              boolean     NOT NULL DEFAULT false,
    preserve_overage_at_reset  boolean     NOT NULL DEFAULT false,
    meter_key                  text,
    meter_group_filters        jsonb       NOT NULL DEFAULT '{}',
    active_from                timestamptz NOT NULL,
    active_to                  timestamptz,
    metadata                   jsonb       NOT NULL DEFAULT '{}',
    create_time                timestamptz NOT NULL,
    delete_time                timestamptz,
    PRIMARY KEY (namespace, id),
    CHECK ((type = 'static') = (static_config IS NOT NULL)),
    CHECK (
        (type = 'metered') = (
            usage_period IS NOT NULL AND usage_period_anchor IS NOT NULL AND measure_usage_from IS NOT NULL
            AND meter_key IS NOT NULL AND issue_after_reset_priority IS NOT NULL
        )
    ),
    CHECK (active_to IS NULL OR active_to > active_from)
);

-- At most one active (not deleted) entitlement per customer and feature.
CREATE UNIQUE INDEX entitlements_one_active ON entitlements (namespace, customer_key, feature_key)
    WHERE delete_time IS NULL;
-- ListEntitlements' order.
CREATE INDEX entitlements_listing ON entitlements (namespace, customer_key, feature_key, create_time, id);

-- Manual usage resets (ResetUsage); scheduled resets follow from the usage period and are not stored.
-- `preserve_overage` NULL means the entitlement's setting.
CREATE TABLE usage_resets (
    namespace        text        NOT NULL,
    entitlement_id   uuid        NOT NULL,
    reset_at         timestamptz NOT NULL,
    retain_anchor    boolean     NOT NULL,
    preserve_overage boolean,
    create_time      timestamptz NOT NULL,
    PRIMARY KEY (namespace, entitlement_id, reset_at),
    FOREIGN KEY (namespace, entitlement_id) REFERENCES entitlements (namespace, id)
);

-- Grants of metered entitlements. Voiding sets `void_time`; rows are never removed.
CREATE TABLE grants (
    namespace           text        NOT NULL,
    id                  uuid        NOT NULL,
    entitlement_id      uuid        NOT NULL,
    amount              numeric     NOT NULL CHECK (amount > 0),
    priority            integer     NOT NULL CHECK (priority BETWEEN 1 AND 255),
    effective_at        timestamptz NOT NULL,
    expires_at          timestamptz,
    min_rollover        numeric     NOT NULL DEFAULT 0 CHECK (min_rollover >= 0),
    max_rollover        numeric     NOT NULL DEFAULT 0 CHECK (max_rollover >= min_rollover),
    recurrence_interval text,
    recurrence_anchor   timestamptz,
    metadata            jsonb       NOT NULL DEFAULT '{}',
    create_time         timestamptz NOT NULL,
    void_time           timestamptz,
    PRIMARY KEY (namespace, id),
    FOREIGN KEY (namespace, entitlement_id) REFERENCES entitlements (namespace, id),
    CHECK (expires_at IS NULL OR expires_at > effective_at),
    CHECK ((recurrence_interval IS NULL) = (recurrence_anchor IS NULL))
);

-- ListGrants' order: by entitlement, then the burn-down order (priority, soonest expiry with no expiry
-- last, creation, id), which is also the order the burn-down engine uses.
CREATE INDEX grants_burn_order ON grants (
    namespace, entitlement_id, priority, (expires_at IS NULL), (coalesce(expires_at, effective_at)),
    create_time, id
);

-- What a request id did the first time: the method, a digest of the request, and the response (the
-- entitlement, grant or replaced id, as JSON). A retry with the same request answers the same; another
-- request with the same id is ALREADY_EXISTS. Kept indefinitely (the contract asks for 24 hours at least).
CREATE TABLE request_ids (
    namespace   text        NOT NULL,
    request_id  text        NOT NULL,
    method      text        NOT NULL,
    fingerprint text        NOT NULL,
    response    jsonb       NOT NULL,
    create_time timestamptz NOT NULL,
    PRIMARY KEY (namespace, request_id)
);
