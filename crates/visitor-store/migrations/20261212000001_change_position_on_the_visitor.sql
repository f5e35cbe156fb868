-- The change log, cheaper to write (issue 19's benchmark): a visitor's last change — when, and
-- its position (transaction, sequence) — is kept on the visitor's own row, set by column
-- defaults on every insert and by every update that changes something, so that a Create or an
-- Update writes one table and no trigger runs. Erasures keep their entries in their own table,
-- `visitor_erasures` (an id, a time and a position: nothing else of the visitor). The view
-- `visitor_changes` is both, with the columns the table of that name had, so the feed's reading
-- (and the horizon argument of 20261209000001) is unchanged: an entry's transaction is the
-- writer's pg_current_xact_id(), and the feed hands out only those below the horizon.
--
-- Webhook deliveries are still written by statement triggers in the change's transaction; the
-- insert and update ones are enabled only while a webhook is registered (a trigger on webhooks
-- switches them), so that writes pay nothing for webhooks when there are none.

DROP TRIGGER visitors_inserted ON visitors;
DROP TRIGGER visitors_updated ON visitors;
DROP TRIGGER visitors_deleted ON visitors;
DROP FUNCTION record_visitor_changes();

ALTER TABLE visitors
    ADD COLUMN changed_at timestamptz,
    ADD COLUMN change_transaction xid8,
    ADD COLUMN change_sequence bigint;
UPDATE visitors AS v
SET changed_at = c.changed_at, change_transaction = c.transaction, change_sequence = c.sequence
FROM visitor_changes AS c
WHERE c.visitor_id = v.id;
-- (Every visitor has an entry; any without one is logged as changed now.)
UPDATE visitors
SET changed_at = now(), change_transaction = pg_current_xact_id(),
    change_sequence = nextval('visitor_change_sequence')
WHERE change_sequence IS NULL;
ALTER TABLE visitors
    ALTER COLUMN changed_at SET DEFAULT now(),
    ALTER COLUMN changed_at SET NOT NULL,
    ALTER COLUMN change_transaction SET DEFAULT pg_current_xact_id(),
    ALTER COLUMN change_transaction SET NOT NULL,
    ALTER COLUMN change_sequence SET DEFAULT nextval('visitor_change_sequence'),
    ALTER COLUMN change_sequence SET NOT NULL;
-- The feed's keyset over the visitors: a page deep in the log costs what the first costs.
CREATE UNIQUE INDEX visitors_change_order ON visitors (change_transaction, change_sequence);

DELETE FROM visitor_changes WHERE NOT erased;
ALTER TABLE visitor_changes RENAME TO visitor_erasures;
ALTER TABLE visitor_erasures DROP COLUMN erased;
ALTER INDEX visitor_changes_pkey RENAME TO visitor_erasures_pkey;
ALTER INDEX visitor_changes_order RENAME TO visitor_erasures_order;

CREATE VIEW visitor_changes AS
    SELECT id AS visitor_id, false AS erased, changed_at, change_transaction AS transaction,
           change_sequence AS sequence
    FROM visitors
    UNION ALL
    SELECT visitor_id, true, changed_at, transaction, sequence
    FROM visitor_erasures;

-- An update that changes a visitor and does not move its position itself (the store's own
-- statements do) moves it here: any other writer's update is logged too.
CREATE FUNCTION move_visitor_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_at := now();
    NEW.change_transaction := pg_current_xact_id();
    NEW.change_sequence := nextval('visitor_change_sequence');
    RETURN NEW;
END
$$;
CREATE TRIGGER visitors_change_moved BEFORE UPDATE ON visitors
    FOR EACH ROW
    WHEN (OLD.* IS DISTINCT FROM NEW.* AND OLD.change_sequence = NEW.change_sequence)
    EXECUTE FUNCTION move_visitor_change();

-- Erasures: an entry each (a later erasure of a restored visitor moves it), and the deliveries.
CREATE FUNCTION record_visitor_erasures() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO visitor_erasures AS e (visitor_id, changed_at, transaction, sequence)
    SELECT o.id, now(), pg_current_xact_id(), nextval('visitor_change_sequence')
    FROM (SELECT id FROM old_rows ORDER BY id) AS o
    ON CONFLICT (visitor_id) DO UPDATE
        SET changed_at = EXCLUDED.changed_at, transaction = EXCLUDED.transaction,
            sequence = EXCLUDED.sequence;
    INSERT INTO webhook_deliveries (webhook_id, event, visitor_id, changed_at, due)
    SELECT w.id, 'visitor.deleted', o.id, now(), now()
    FROM (SELECT id FROM old_rows) AS o
    CROSS JOIN webhooks AS w
    WHERE w.enabled AND 'visitor.deleted' = ANY (w.events)
    ORDER BY o.id, w.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER visitors_erased AFTER DELETE ON visitors
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION record_visitor_erasures();

-- The deliveries of creations and of updates that changed something (moved the position).
CREATE FUNCTION deliver_visitor_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    event text := CASE TG_OP WHEN 'INSERT' THEN 'visitor.created' ELSE 'visitor.updated' END;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO webhook_deliveries (webhook_id, event, visitor_id, changed_at, due)
        SELECT w.id, event, n.id, now(), now()
        FROM new_rows AS n CROSS JOIN webhooks AS w
        WHERE w.enabled AND event = ANY (w.events)
        ORDER BY n.id, w.id;
    ELSE
        INSERT INTO webhook_deliveries (webhook_id, event, visitor_id, changed_at, due)
        SELECT w.id, event, n.id, now(), now()
        FROM new_rows AS n JOIN old_rows AS o ON o.id = n.id
        CROSS JOIN webhooks AS w
        WHERE n.change_sequence <> o.change_sequence
          AND w.enabled AND event = ANY (w.events)
        ORDER BY n.id, w.id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER visitors_created_deliveries AFTER INSERT ON visitors
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deliver_visitor_changes();
CREATE TRIGGER visitors_updated_deliveries AFTER UPDATE ON visitors
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deliver_visitor_changes();

-- Registering the first webhook switches those two triggers on, removing the last one switches
-- them off, whoever does it (the store, the version before during a rolling upgrade, an
-- operator's SQL). The switch first takes a lock on visitors that waits for the writes in flight
-- and holds new ones back until it commits: a write either ended before the webhook was
-- registered (it is not for it) or sees the webhook and the trigger; and of a registration and
-- a removal at once, the second sees what the first left.
CREATE FUNCTION switch_delivery_triggers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE visitors IN SHARE ROW EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM webhooks) THEN
        ALTER TABLE visitors ENABLE TRIGGER visitors_created_deliveries,
                             ENABLE TRIGGER visitors_updated_deliveries;
    ELSE
        ALTER TABLE visitors DISABLE TRIGGER visitors_created_deliveries,
                             DISABLE TRIGGER visitors_updated_deliveries;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER webhooks_switch_delivery_triggers AFTER INSERT OR DELETE ON webhooks
    FOR EACH STATEMENT EXECUTE FUNCTION switch_delivery_triggers();

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhooks) THEN
        ALTER TABLE visitors DISABLE TRIGGER visitors_created_deliveries,
                             DISABLE TRIGGER visitors_updated_deliveries;
    END IF;
END
$$;
