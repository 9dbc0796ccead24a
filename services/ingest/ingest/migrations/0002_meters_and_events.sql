-- Meters, stored events and the keys that deduplicate them.

CREATE TABLE meters (
    namespace      text        NOT NULL,
    key            text        NOT NULL,
    name           text        NOT NULL,
    description    text        NOT NULL DEFAULT '',
    event_type     text        NOT NULL,
    aggregation    text        NOT NULL,
    value_property text        NOT NULL DEFAULT '',
    group_by       jsonb       NOT NULL DEFAULT '{}',
    create_time    timestamptz NOT NULL,
    update_time    timestamptz NOT NULL,
    archive_time   timestamptz,
    PRIMARY KEY (namespace, key)
);

CREATE INDEX meters_by_event_type ON meters (namespace, event_type);

-- One row per (namespace, source, id) ever accepted. A key older than the dedupe horizon may be
-- taken again (the insert refreshes it), so a re-sent event counts again only past the horizon.
CREATE TABLE dedupe_keys (
    namespace   text        NOT NULL,
    source      text        NOT NULL,
    id          text        NOT NULL,
    ingest_time timestamptz NOT NULL,
    PRIMARY KEY (namespace, source, id)
);

CREATE TABLE events (
    seq         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace   text        NOT NULL,
    source      text        NOT NULL,
    id          text        NOT NULL,
    type        text        NOT NULL,
    subject     text        NOT NULL,
    time        timestamptz NOT NULL,
    -- jsonb keeps numbers as exact decimals, so meters read "0.1" as 0.1, never as a binary float.
    data        jsonb       NOT NULL,
    ingest_time timestamptz NOT NULL
);

CREATE INDEX events_by_type_time ON events (namespace, type, time, seq);
CREATE INDEX events_by_time ON events (namespace, time DESC, seq DESC);
CREATE INDEX events_by_key ON events (namespace, source, id);

-- How meters read JSON values: the same rules as ingest/evaluation.py, which tests hold together.
-- A number counts, and so does a string holding a decimal; neither may have more than 38 significant
-- digits (the precision the API promises to keep exactly).
CREATE FUNCTION meter_number(value jsonb) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN length(ltrim(replace(trim_scale(abs(n))::text, '.', ''), '0')) <= 38 THEN n END
    FROM (SELECT CASE jsonb_typeof(value)
                     WHEN 'number' THEN (value #>> '{}')::numeric
                     WHEN 'string' THEN CASE WHEN (value #>> '{}') ~ '^-?[0-9]+(\.[0-9]+)?$'
                                             THEN (value #>> '{}')::numeric END
                 END AS n) AS parsed
$$;

-- UNIQUE_COUNT compares values as text, numbers in their shortest form so that 1 and 1.0 are one value.
CREATE FUNCTION meter_distinct_key(value jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(value)
               WHEN 'number' THEN trim_scale((value #>> '{}')::numeric)::text
               WHEN 'string' THEN value #>> '{}'
           END
$$;

-- A group value: a scalar as text, '' when missing or null, NULL when it is an object or array.
CREATE FUNCTION meter_group_value(value jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN value IS NULL OR jsonb_typeof(value) = 'null' THEN ''
                WHEN jsonb_typeof(value) IN ('object', 'array') THEN NULL
                ELSE value #>> '{}'
           END
$$;
