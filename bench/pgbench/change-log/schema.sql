-- A scratch schema for run.sh: the visitors table as migrated, the change log of migration
-- 20261209000001 without its triggers, an empty webhooks table; 100,000 visitors, each logged.
DROP TABLE IF EXISTS visitors, visitor_changes, webhooks CASCADE;
DROP SEQUENCE IF EXISTS visitor_change_sequence;
CREATE TABLE visitors (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        CHECK (char_length(name) BETWEEN 1 AND 255),
    email       text        CHECK (char_length(email) BETWEEN 1 AND 254),
    phone       text        CHECK (char_length(phone) BETWEEN 1 AND 32),
    notes       text        CHECK (char_length(notes) <= 10000),
    external_id text        CHECK (char_length(external_id) BETWEEN 1 AND 255),
    banned      boolean     NOT NULL DEFAULT false,
    created     timestamptz NOT NULL,
    version     bigint NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX visitors_external_id_key ON visitors (external_id);
CREATE SEQUENCE visitor_change_sequence;
CREATE TABLE visitor_changes (
    visitor_id  bigint      PRIMARY KEY,
    erased      boolean     NOT NULL,
    changed_at  timestamptz NOT NULL,
    transaction xid8        NOT NULL,
    sequence    bigint      NOT NULL
);
CREATE UNIQUE INDEX visitor_changes_order ON visitor_changes (transaction, sequence);
CREATE TABLE webhooks (id bigint PRIMARY KEY, enabled boolean, events text[]);
INSERT INTO visitors (name, created) SELECT 'x', now() FROM generate_series(1,100000);
INSERT INTO visitor_changes SELECT id, false, now(), pg_current_xact_id(), nextval('visitor_change_sequence') FROM visitors;
VACUUM ANALYZE;
