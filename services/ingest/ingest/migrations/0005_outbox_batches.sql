-- The outbox holds one row per ingest statement instead of one per delta: the JSON array of the deltas
-- of the events that statement stored, exactly as one stream message carries them. One row written and
-- one deleted per batch, instead of a thousand, and the publisher copies the text to Redis untouched.

CREATE TABLE usage_outbox_batches (
    seq         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- a JSON array of deltas in the stream's format (meterlib.usagestream)
    deltas      text        NOT NULL,
    delta_count integer     NOT NULL,
    ingest_time timestamptz NOT NULL
);

-- Deltas still waiting in the old outbox move over, a thousand per message.
INSERT INTO usage_outbox_batches (deltas, delta_count, ingest_time)
SELECT jsonb_agg(
           jsonb_build_object(
               'ns', namespace, 'meter', meter, 'subject', subject, 'groups', group_values,
               'time', to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
               'value', value, 'event', event_key,
               'ingested', to_char(ingest_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
           ORDER BY seq)::text,
       count(*),
       max(ingest_time)
FROM usage_outbox
GROUP BY seq / 1000
ORDER BY seq / 1000;

DROP TABLE usage_outbox;
ALTER TABLE usage_outbox_batches RENAME TO usage_outbox;
