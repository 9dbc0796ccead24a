-- Roll-ups: per-minute count, sum, min and max of the meters whose windows can be added up
-- (COUNT, SUM, AVG, MIN, MAX), so that a usage query reads minutes, not the events behind them.
--
-- Events are rolled up in the order their transactions became visible, not by seq: every event
-- carries the id of the transaction that stored it, and the roll-up worker takes the events of the
-- transactions below the oldest one still running. No transaction below that mark can commit later,
-- so the events under the watermark are exactly the ones rolled up, and a query adds the events at or
-- above it from the raw table.

ALTER TABLE events ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX events_by_txid ON events (txid);

-- A meter's roll-ups are rebuilt whenever what they group by changes: the generation counts those
-- definitions, and rollup_ready names the generation whose roll-ups are complete (NULL: none yet;
-- queries read raw events meanwhile).
ALTER TABLE meters
    ADD COLUMN rollup_generation integer NOT NULL DEFAULT 1,
    ADD COLUMN rollup_ready integer;

CREATE TABLE usage_minutes (
    namespace    text        NOT NULL,
    meter        text        NOT NULL,
    generation   integer     NOT NULL,
    subject      text        NOT NULL,
    -- every group-by of the meter's generation, name -> value
    group_values jsonb       NOT NULL,
    -- the UTC minute [minute, minute + 1 min) of the events
    minute       timestamptz NOT NULL,
    n            bigint      NOT NULL,
    total        numeric     NOT NULL,
    low          numeric     NOT NULL,
    high         numeric     NOT NULL,
    PRIMARY KEY (namespace, meter, generation, subject, minute, group_values)
);

-- Queries over every subject read a meter's minutes by time.
CREATE INDEX usage_minutes_by_minute ON usage_minutes (namespace, meter, generation, minute);

-- Every event of a transaction below the watermark is in the roll-ups of the meters ready then.
CREATE TABLE rollup_progress (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    watermark xid8    NOT NULL
);
INSERT INTO rollup_progress (watermark) VALUES ('0');
