-- On the schema of migration 20261210000002: the change log's table without the triggers of
-- inserts and updates, for statements that write their entries themselves.
DROP TRIGGER visitors_inserted ON visitors;
DROP TRIGGER visitors_updated ON visitors;
