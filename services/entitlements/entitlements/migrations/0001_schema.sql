-- The entitlements service's schema. The migration runner creates it and its schema_migrations table;
-- this first migration records what the schema is for. Tables arrive with the features that need them.
COMMENT ON SCHEMA entitlements IS 'Owned by the entitlements service: entitlements, grants and usage periods (hot balances live in Redis). No other service reads or writes it.';
