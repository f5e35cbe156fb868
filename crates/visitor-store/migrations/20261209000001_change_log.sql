-- v3 (§10): the change log, written by triggers in the transaction of every change, whatever
-- statement makes it (create, update, erasure, create-or-update, import, restore).
--
-- One entry per visitor: its last change (when, and whether it was an erasure), at a position
-- (transaction, sequence). A later change moves the entry to a later position; an erasure
-- leaves only the visitor's id and its time. No other data of the visitor is kept here.
--
-- `transaction` is the writer's pg_current_xact_id(). The feed hands out only entries whose
-- transaction is older than every transaction still in flight
-- (pg_snapshot_xmin(pg_current_snapshot())), in (transaction, sequence) order: an entry that
-- appears later belongs to a transaction that was in flight or not yet begun at that read, so
-- its transaction id is at least that horizon and its position lies after every position
-- the read handed out. A reader that reads on from the last position it was given never skips
-- one. (A sequence alone would not do: a transaction that drew 100 may commit after one that
-- drew 101 was read.)
CREATE SEQUENCE visitor_change_sequence;

CREATE TABLE visitor_changes (
    visitor_id  bigint      PRIMARY KEY,
    erased      boolean     NOT NULL,
    changed_at  timestamptz NOT NULL,
    transaction xid8        NOT NULL,
    sequence    bigint      NOT NULL
);

-- The feed's keyset: a page deep in the log costs what the first costs.
CREATE UNIQUE INDEX visitor_changes_order ON visitor_changes (transaction, sequence);

-- The position of the last erasure purged after the retention, and how many purges removed
-- something: a cursor handed out before a purge (its count differs) whose position lies before
-- that erasure has expired (its reader would miss the erasure).
CREATE TABLE visitor_change_purges (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    transaction xid8    NOT NULL,
    sequence    bigint  NOT NULL,
    purges      bigint  NOT NULL DEFAULT 0
);
INSERT INTO visitor_change_purges (transaction, sequence) VALUES ('0', 0);

-- Statement triggers with transition tables: one INSERT … ON CONFLICT per statement, so an
-- import of thousands of rows records them in one step.
CREATE FUNCTION record_visitor_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO visitor_changes AS c (visitor_id, erased, changed_at, transaction, sequence)
        SELECT n.id, false, now(), pg_current_xact_id(), nextval('visitor_change_sequence')
        FROM (SELECT id FROM new_rows ORDER BY id) AS n
        ON CONFLICT (visitor_id) DO UPDATE
            SET erased = false, changed_at = EXCLUDED.changed_at,
                transaction = EXCLUDED.transaction, sequence = EXCLUDED.sequence;
    ELSIF TG_OP = 'UPDATE' THEN
        -- Only the rows that changed: an update that changes nothing is no change.
        INSERT INTO visitor_changes AS c (visitor_id, erased, changed_at, transaction, sequence)
        SELECT n.id, false, now(), pg_current_xact_id(), nextval('visitor_change_sequence')
        FROM (SELECT n.id FROM new_rows AS n JOIN old_rows AS o ON o.id = n.id
              WHERE n IS DISTINCT FROM o ORDER BY n.id) AS n
        ON CONFLICT (visitor_id) DO UPDATE
            SET erased = false, changed_at = EXCLUDED.changed_at,
                transaction = EXCLUDED.transaction, sequence = EXCLUDED.sequence;
    ELSE
        INSERT INTO visitor_changes AS c (visitor_id, erased, changed_at, transaction, sequence)
        SELECT o.id, true, now(), pg_current_xact_id(), nextval('visitor_change_sequence')
        FROM (SELECT id FROM old_rows ORDER BY id) AS o
        ON CONFLICT (visitor_id) DO UPDATE
            SET erased = true, changed_at = EXCLUDED.changed_at,
                transaction = EXCLUDED.transaction, sequence = EXCLUDED.sequence;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER visitors_inserted AFTER INSERT ON visitors
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION record_visitor_changes();
CREATE TRIGGER visitors_updated AFTER UPDATE ON visitors
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION record_visitor_changes();
CREATE TRIGGER visitors_deleted AFTER DELETE ON visitors
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION record_visitor_changes();

-- Visitors that exist before this migration are in the log from the start, as created.
INSERT INTO visitor_changes (visitor_id, erased, changed_at, transaction, sequence)
SELECT id, false, created, pg_current_xact_id(), nextval('visitor_change_sequence')
FROM (SELECT id, created FROM visitors ORDER BY id) AS v;
