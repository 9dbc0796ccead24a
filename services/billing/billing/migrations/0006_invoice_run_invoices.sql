-- The invoices a run made, one row each, instead of an array on the run's row: each invoice is stored
-- in a transaction of its own, and appending to one shared row made those transactions wait for each
-- other (and copy the whole array each time).
CREATE TABLE invoice_run_invoices (
    namespace  text NOT NULL,
    request_id text NOT NULL,
    invoice_id uuid NOT NULL,
    PRIMARY KEY (namespace, request_id, invoice_id),
    FOREIGN KEY (namespace, request_id) REFERENCES invoice_runs (namespace, request_id),
    FOREIGN KEY (namespace, invoice_id) REFERENCES invoices (namespace, id)
);

INSERT INTO invoice_run_invoices (namespace, request_id, invoice_id)
SELECT namespace, request_id, unnest(invoice_ids) FROM invoice_runs;

ALTER TABLE invoice_runs DROP COLUMN invoice_ids;
