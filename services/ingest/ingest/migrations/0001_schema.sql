-- The ingest service's schema. The migration runner creates it and its schema_migrations table;
-- this first migration records what the schema is for. Tables arrive with the features that need them.
COMMENT ON SCHEMA ingest IS 'Owned by the ingest service: meters, raw events, usage roll-ups and dedupe keys. No other service reads or writes it.';
