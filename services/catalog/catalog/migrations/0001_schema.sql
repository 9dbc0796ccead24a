-- The catalog service's schema. The migration runner creates it and its schema_migrations table;
-- this first migration records what the schema is for. Tables arrive with the features that need them.
COMMENT ON SCHEMA catalog IS 'Owned by the catalog service: features, plans and their versions, phases, rate cards, prices and add-ons. No other service reads or writes it.';
