-- The trigger that moves the position for an update that does not move it itself.
CREATE OR REPLACE FUNCTION move_visitor_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_at := now();
    NEW.change_transaction := pg_current_xact_id();
    NEW.change_sequence := nextval('visitor_change_sequence');
    RETURN NEW;
END $$;
CREATE TRIGGER visitors_changed BEFORE UPDATE ON visitors
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.* AND OLD.change_sequence = NEW.change_sequence)
    EXECUTE FUNCTION move_visitor_change();
