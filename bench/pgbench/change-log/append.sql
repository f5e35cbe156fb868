-- On the schema of migration 20261208000001 (no change log): an append-only log of changes,
-- indexed by position only, beside visitors whose updates stay HOT.
CREATE SEQUENCE visitor_change_sequence;
CREATE TABLE visitor_change_log (
    transaction xid8        NOT NULL,
    sequence    bigint      NOT NULL,
    visitor_id  bigint      NOT NULL,
    changed_at  timestamptz NOT NULL,
    PRIMARY KEY (transaction, sequence)
);
