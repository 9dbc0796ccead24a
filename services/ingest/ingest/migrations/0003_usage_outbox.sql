-- Usage deltas waiting to be published on the Redis Stream. A delta is written in the same statement
-- as its event, so it is durable exactly when the event is; the publisher deletes it once Redis has it.
CREATE TABLE usage_outbox (
    seq         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace   text        NOT NULL,
    meter       text        NOT NULL,
    subject     text        NOT NULL,
    group_values jsonb      NOT NULL,
    time        timestamptz NOT NULL,
    value       text        NOT NULL,
    event_key   text        NOT NULL,
    ingest_time timestamptz NOT NULL
);
