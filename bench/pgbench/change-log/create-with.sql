-- The store's Create with its change-log entry written by the statement itself (variant
-- "with" of run.sh).
WITH v AS (
INSERT INTO visitors (name, email, phone, notes, external_id, banned, created)
VALUES ('Visitor', 'visitor@example.com', '+65 12345678', 'This visitor is really cool.', NULL, false, date_trunc('second', now()))
RETURNING id, name, email, phone, notes, external_id, banned, created, version),
c AS (INSERT INTO visitor_changes (visitor_id, erased, changed_at, transaction, sequence)
  SELECT id, false, now(), pg_current_xact_id(), nextval('visitor_change_sequence') FROM v)
SELECT * FROM v;
