-- On the schema of migration 20261210000002: a row trigger instead of the statement triggers of
-- inserts and updates, one INSERT … ON CONFLICT per row.
DROP TRIGGER visitors_inserted ON visitors;
DROP TRIGGER visitors_updated ON visitors;
CREATE FUNCTION record_visitor_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO visitor_changes AS c (visitor_id, erased, changed_at, transaction, sequence)
    VALUES (NEW.id, false, now(), pg_current_xact_id(), nextval('visitor_change_sequence'))
    ON CONFLICT (visitor_id) DO UPDATE
        SET erased = EXCLUDED.erased, changed_at = EXCLUDED.changed_at,
            transaction = EXCLUDED.transaction, sequence = EXCLUDED.sequence;
    IF EXISTS (SELECT 1 FROM webhooks WHERE enabled AND 'visitor.created' = ANY (events)) THEN
        NULL;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER visitors_inserted AFTER INSERT ON visitors
    FOR EACH ROW EXECUTE FUNCTION record_visitor_change();
CREATE TRIGGER visitors_updated AFTER UPDATE ON visitors
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION record_visitor_change();
