-- Each outbox entry, and so each usage-stream message, names the transaction that stored its events,
-- so that a consumer can tell whether a QueryUsage snapshot already counted them.
ALTER TABLE usage_outbox ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id();
