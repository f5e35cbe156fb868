-- An append-only log of updates (no index on the visitor) beside the visitors, on a fresh table
-- of 100,000 visitors.
DROP TABLE IF EXISTS visitors, visitor_changes, visitor_change_log, webhooks, webhook_deliveries CASCADE;
DROP SEQUENCE IF EXISTS visitor_change_sequence;
CREATE SEQUENCE visitor_change_sequence;
CREATE TABLE visitors (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text, email text, phone text, notes text, external_id text,
    banned      boolean     NOT NULL DEFAULT false,
    created     timestamptz NOT NULL,
    version     bigint NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX visitors_external_id_key ON visitors (external_id);
CREATE TABLE visitor_change_log (transaction xid8, sequence bigint, visitor_id bigint, changed_at timestamptz, erased boolean, PRIMARY KEY (transaction, sequence));
INSERT INTO visitors (name, created, external_id) SELECT 'x', now(), 'ext-' || g FROM generate_series(1,100000) g;
VACUUM ANALYZE;
