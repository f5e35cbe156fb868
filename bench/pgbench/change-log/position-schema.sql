-- The change log on the visitor's row (migration 20261212000001): the position columns with
-- their defaults and index, on a fresh table of 100,000 visitors.
DROP TABLE IF EXISTS visitors, visitor_changes, visitor_change_log, webhooks, webhook_deliveries CASCADE;
DROP SEQUENCE IF EXISTS visitor_change_sequence;
CREATE SEQUENCE visitor_change_sequence;
CREATE TABLE visitors (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text, email text, phone text, notes text, external_id text,
    banned      boolean     NOT NULL DEFAULT false,
    created     timestamptz NOT NULL,
    version     bigint NOT NULL DEFAULT 1,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    change_transaction xid8 NOT NULL DEFAULT pg_current_xact_id(),
    change_sequence bigint NOT NULL DEFAULT nextval('visitor_change_sequence')
);
CREATE UNIQUE INDEX visitors_external_id_key ON visitors (external_id);
CREATE UNIQUE INDEX visitors_change_order ON visitors (change_transaction, change_sequence);
INSERT INTO visitors (name, created, external_id) SELECT 'x', now(), 'ext-' || g FROM generate_series(1,100000) g;
VACUUM ANALYZE;
