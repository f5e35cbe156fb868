-- Create Visitor with an Idempotency-Key, as the Postgres store issues it: one call of the
-- function migration 4 defines, a fresh key per call (the owner is a token digest's length).
\set k random(1, 1000000000000)
SELECT claimed, recorded_fingerprint, recorded_answer, recorded_version
FROM create_visitor_idempotent('0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
    'key-' || :k || '-' || :client_id,
    '\x0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef', 86400, 60,
    'Visitor', 'visitor@example.com', '+65 12345678', 'This visitor is really cool.', NULL, false,
    date_trunc('second', now()));
