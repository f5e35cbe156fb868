INSERT INTO visitors (name, email, phone, notes, external_id, banned, created)
VALUES ('Visitor', 'visitor@example.com', '+65 12345678', 'This visitor is really cool.', NULL, false, date_trunc('second', now()))
RETURNING id, name, email, phone, notes, external_id, banned, created, version;
