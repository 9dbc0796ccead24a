-- The billing service's schema. The migration runner creates it and its schema_migrations table;
-- this first migration records what the schema is for. Tables arrive with the features that need them.
COMMENT ON SCHEMA billing IS 'Owned by the billing service: customers, subscriptions, invoices, invoice lines and credits. No other service reads or writes it.';
