-- The statement trigger of migration 20261210000001 (its webhook check kept, its deliveries not).
CREATE OR REPLACE FUNCTION record_visitor_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed bigint[];
    erased boolean := TG_OP = 'DELETE';
BEGIN
    IF TG_OP = 'INSERT' THEN
        changed := ARRAY(SELECT id FROM new_rows ORDER BY id);
    ELSIF TG_OP = 'UPDATE' THEN
        changed := ARRAY(SELECT n.id FROM new_rows AS n JOIN old_rows AS o ON o.id = n.id
                         WHERE n IS DISTINCT FROM o ORDER BY n.id);
    ELSE
        changed := ARRAY(SELECT id FROM old_rows ORDER BY id);
    END IF;
    IF cardinality(changed) = 0 THEN RETURN NULL; END IF;
    INSERT INTO visitor_changes AS c (visitor_id, erased, changed_at, transaction, sequence)
    SELECT v.id, erased, now(), pg_current_xact_id(), nextval('visitor_change_sequence')
    FROM unnest(changed) WITH ORDINALITY AS v (id, n) ORDER BY v.n
    ON CONFLICT (visitor_id) DO UPDATE
        SET erased = EXCLUDED.erased, changed_at = EXCLUDED.changed_at,
            transaction = EXCLUDED.transaction, sequence = EXCLUDED.sequence;
    IF EXISTS (SELECT 1 FROM webhooks WHERE enabled AND 'x' = ANY (events)) THEN
        NULL;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER visitors_inserted AFTER INSERT ON visitors REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION record_visitor_changes();
CREATE TRIGGER visitors_updated AFTER UPDATE ON visitors REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION record_visitor_changes();
