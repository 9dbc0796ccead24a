-- Subscriptions and the entitlements their items provisioned in the entitlements service.

-- A subscription. `timeline` is the whole history of decisions (billing.subscriptions.subscription_to_dict:
-- plan segments with their plan snapshots, add-on instances with theirs, the end); everything shown or
-- billed derives from it. The other columns are copies of it kept for filters and indexes, rewritten
-- with it on every change:
--   plan_key / plan_version  the plan of the last segment (what the subscription is, or will be, on);
--   plan_keys                every segment's plan key (ListSubscriptions' plan filter);
--   start_time / end_time    its life [start, end); end NULL while open-ended;
--   next_period_end          the end of the first billing period not yet invoiced (after
--                            invoiced_through), NULL when none is left: "which subscriptions have a
--                            billing period ending at or before T" is `next_period_end <= T`;
--   invoiced_through         written by invoicing: the end of the last billing period invoiced;
--   provision_due_at         when its entitlements must next be brought up to date (an item starts or
--                            ends, or an earlier attempt failed); NULL when nothing is due.
CREATE TABLE subscriptions (
    namespace        text        NOT NULL,
    id               uuid        NOT NULL,
    customer_key     text        NOT NULL,
    plan_key         text        NOT NULL,
    plan_version     integer     NOT NULL,
    plan_keys        text[]      NOT NULL,
    currency         text        NOT NULL,
    start_time       timestamptz NOT NULL,
    end_time         timestamptz,
    billing_anchor   timestamptz NOT NULL,
    timeline         jsonb       NOT NULL,
    metadata         jsonb       NOT NULL DEFAULT '{}',
    next_period_end  timestamptz,
    invoiced_through timestamptz,
    provision_due_at timestamptz,
    create_time      timestamptz NOT NULL,
    update_time      timestamptz NOT NULL,
    PRIMARY KEY (namespace, id),
    FOREIGN KEY (namespace, customer_key) REFERENCES customers (namespace, key),
    CHECK (end_time IS NULL OR end_time >= start_time)
);

-- ListSubscriptions' order (start descending, then id), per customer and overall; the customer index
-- also serves the overlap check and the customer's referrer queries.
CREATE INDEX subscriptions_by_customer ON subscriptions (namespace, customer_key, start_time DESC, id DESC);
CREATE INDEX subscriptions_listing ON subscriptions (namespace, start_time DESC, id DESC);
CREATE INDEX subscriptions_by_plan ON subscriptions USING gin (plan_keys);
-- The invoice run: subscriptions with a billing period ending at or before T.
CREATE INDEX subscriptions_period_due ON subscriptions (namespace, next_period_end)
    WHERE next_period_end IS NOT NULL;
-- The provisioning loop, across namespaces.
CREATE INDEX subscriptions_provision_due ON subscriptions (provision_due_at)
    WHERE provision_due_at IS NOT NULL;

-- The entitlement provisioned for a subscription item. `item_id` is billing.subscriptions'
-- SubscriptionItem.id (stable: owner, phase, key, start). `active_to` is the end the entitlement was
-- made with, `revision` counts its replacements (request ids sent to entitlements derive from
-- subscription, item and revision, so a retry repeats the same call). `delete_time` is set once
-- billing deleted it (the item ended or left the timeline); the row stays to show the id.
CREATE TABLE subscription_entitlements (
    namespace       text        NOT NULL,
    subscription_id uuid        NOT NULL,
    item_id         text        NOT NULL,
    feature_key     text        NOT NULL,
    entitlement_id  uuid        NOT NULL,
    active_to       timestamptz,
    revision        integer     NOT NULL DEFAULT 0,
    create_time     timestamptz NOT NULL,
    update_time     timestamptz NOT NULL,
    delete_time     timestamptz,
    PRIMARY KEY (namespace, subscription_id, item_id),
    FOREIGN KEY (namespace, subscription_id) REFERENCES subscriptions (namespace, id)
);
